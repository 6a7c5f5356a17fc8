"""Demo merchants for the simulator: onboarded once, their tokens kept in ``var_dir``.

The pay core shows a merchant's API token and notification secret once, so the
simulator keeps them in ``<var_dir>/demo_merchants.json`` (mode 0600) and re-uses them
on the next start. If the file is lost while the merchants exist, they are not
recovered here: new demo merchants are onboarded under the next free id
(``DEMO-SHOP-2``, ...). (``paywatch merchant rotate-token`` would issue new ones.)
A kept merchant from before per-merchant notification secrets has none: its
notifications are signed with the platform's shared key.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paycore import PayCore
from paycore.errors import UnknownMerchant

log = logging.getLogger(__name__)
FILE_NAME = "demo_merchants.json"
DEFAULT_USERS = 40
#: points each demo user holds at a demo merchant at least (topped up at start)
POINTS_FLOOR = 200_000


def sim_users(count: int = DEFAULT_USERS) -> list[str]:
    """The simulated payers' user ids (at least two: a transfer needs a payee)."""
    return [f"sim-u{i:03d}" for i in range(max(2, count))]


@dataclass(frozen=True)
class SimMerchant:
    """A merchant the simulator sends traffic as: its grant and its API token."""

    key: str  #: the demo role (``shop``, ``wallet``, ``travel``) or ``custom``
    merchant_id: str
    token: str = field(repr=False)
    products: tuple[tuple[str, str], ...]  #: (order_type, sub_type) pairs it may use
    pay_orgs: tuple[str, ...]
    trade_types: tuple[str, ...]  #: which trade types this merchant's traffic uses
    fee_bps: int = 0
    notify_url: str | None = None
    notify_secret: str | None = field(default=None, repr=False)  #: verifies its notifications

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, token and secret included (only for the 0600 file)."""
        return {
            "key": self.key,
            "merchant_id": self.merchant_id,
            "token": self.token,
            "products": [list(p) for p in self.products],
            "pay_orgs": list(self.pay_orgs),
            "trade_types": list(self.trade_types),
            "fee_bps": self.fee_bps,
            "notify_url": self.notify_url,
            "notify_secret": self.notify_secret,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimMerchant:
        return cls(
            key=str(d["key"]),
            merchant_id=str(d["merchant_id"]),
            token=str(d["token"]),
            products=tuple((str(o), str(s)) for o, s in d["products"]),
            pay_orgs=tuple(str(o) for o in d["pay_orgs"]),
            trade_types=tuple(str(t) for t in d["trade_types"]),
            fee_bps=int(d.get("fee_bps", 0)),
            notify_url=d.get("notify_url"),
            notify_secret=d.get("notify_secret"),
        )


@dataclass(frozen=True)
class DemoSpec:
    """What one demo merchant sells and through which pay orgs (a count or all)."""

    key: str
    name: str
    products: tuple[tuple[str, str], ...]
    trade_types: tuple[str, ...]
    fee_bps: int
    orgs: int  #: how many of the configured pay orgs it may use (0 = all)
    offset: int = 0  #: which pay org it starts from, so merchants differ


DEMO_SPECS: tuple[DemoSpec, ...] = (
    DemoSpec(
        "shop",
        "Demo Shop",
        (("goods", "physical"), ("goods", "virtual")),
        ("instant", "guaranteed"),
        60,
        0,
    ),
    DemoSpec(
        "wallet",
        "Demo Wallet",
        (("wallet", "topup"), ("wallet", "cashout"), ("wallet", "p2p")),
        ("recharge", "withdraw", "transfer"),
        0,
        0,
    ),
    DemoSpec(
        "travel",
        "Demo Travel",
        (("travel", "flight"), ("travel", "hotel")),
        ("guaranteed", "instant"),
        30,
        2,
        1,
    ),
)


def _orgs_for(spec: DemoSpec, pay_orgs: Sequence[str]) -> tuple[str, ...]:
    if spec.orgs <= 0 or spec.orgs >= len(pay_orgs):
        return tuple(pay_orgs)
    start = spec.offset % len(pay_orgs)
    return tuple((list(pay_orgs) * 2)[start : start + spec.orgs])


def load_merchants(path: str | Path) -> list[SimMerchant]:
    """The merchants kept in a ``demo_merchants.json`` (empty if there is none)."""
    p = Path(path)
    if p.is_dir():
        p = p / FILE_NAME
    if not p.exists():
        return []
    data = json.loads(p.read_text())
    return [SimMerchant.from_dict(d) for d in data.get("merchants", [])]


def save_merchants(var_dir: str | Path, merchants: Iterable[SimMerchant]) -> Path:
    """Write the merchants (tokens included) to ``<var_dir>/demo_merchants.json``, 0600."""
    path = Path(var_dir) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"merchants": [m.as_dict() for m in merchants]}, indent=2)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def _exists(core: PayCore, merchant_id: str) -> bool:
    try:
        core.merchants.get(merchant_id)
    except UnknownMerchant:
        return False
    return True


def _onboard(core: PayCore, spec: DemoSpec, orgs: tuple[str, ...], notify_url: str) -> SimMerchant:
    base = f"DEMO-{spec.key.upper()}"
    n, mid = 1, base
    while _exists(core, mid):  # the token of an existing id is lost: take the next id
        n += 1
        mid = f"{base}-{n}"
    ob = core.merchants.onboard(
        spec.name,
        products=spec.products,
        pay_orgs=orgs,
        fee_bps=spec.fee_bps,
        notify_url=notify_url,
        merchant_id=mid,
    )
    log.info("onboarded demo merchant %s (%s)", mid, spec.name)
    return SimMerchant(
        spec.key,
        mid,
        ob.token,
        spec.products,
        orgs,
        spec.trade_types,
        spec.fee_bps,
        notify_url,
        ob.notify_secret,
    )


def ensure_demo_marketing(
    core: PayCore, merchants: Iterable[SimMerchant], users: Sequence[str], floor: int = POINTS_FLOOR
) -> int:
    """Make the demo merchants' instant traffic able to pay with points and coupons: every
    user holds at least ``floor // 2`` points at each of them (topped up to ``floor``) and a
    coupon outage lets a pay go on without the coupon (``pay_without_coupon``). Returns
    how many grants were made."""
    grants = 0
    for m in merchants:
        if "instant" not in m.trade_types:
            continue
        core.merchants.configure(m.merchant_id, pay_without_coupon=True)
        for user in users:
            held = core.points.balance(m.merchant_id, user)
            if held < floor // 2:
                core.points.grant(m.merchant_id, user, floor - held, reason="simulator demo points")
                grants += 1
    return grants


def ensure_demo_merchants(
    core: PayCore,
    var_dir: str,
    notify_base_url: str,
    pay_orgs: Sequence[str],
    users: int = DEFAULT_USERS,
) -> list[SimMerchant]:
    """Onboard the demo merchants once, re-use them (and their kept tokens) afterwards.

    Each merchant's ``notify_url`` is ``<notify_base_url>/notify/<key>``. A kept
    merchant whose grant no longer matches (other pay orgs configured) or that is gone
    from the database is onboarded again; the file is rewritten when anything changed.
    The first ``users`` simulated payers get points (:func:`ensure_demo_marketing`).
    """
    if not pay_orgs:
        raise ValueError("at least one pay org is needed")
    kept = {m.key: m for m in load_merchants(Path(var_dir) / FILE_NAME)}
    base = notify_base_url.rstrip("/")
    out: list[SimMerchant] = []
    changed = False
    for spec in DEMO_SPECS:
        orgs = _orgs_for(spec, pay_orgs)
        url = f"{base}/notify/{spec.key}"
        m = kept.get(spec.key)
        usable = m is not None and _exists(core, m.merchant_id) and set(orgs) <= set(m.pay_orgs)
        if m is not None and usable:
            if m.notify_url != url:
                log.warning(
                    "demo merchant %s notifies %s, not %s (kept)", m.merchant_id, m.notify_url, url
                )
            out.append(m)
            continue
        out.append(_onboard(core, spec, orgs, url))
        changed = True
    if changed or set(kept) != {m.key for m in out}:
        save_merchants(var_dir, out)
    ensure_demo_marketing(core, out, sim_users(users))
    return out
