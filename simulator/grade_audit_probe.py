"""Link probes: a few merchant calls of the audit's own on every link in every window.

The simulated traffic reaches a link only through the one before it (no pay after a
failed create, no refund without a paid trade on that pay org), so a fault that breaks
the first step hides what it does to the next. A probe creates a trade, pays it, and
refunds one minor unit of a trade it paid before the audit, through the pay org under
test; its failed answers are counted like the traffic's (``pay:storage_unavailable``).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .client import MerchantClient
from .merchants import SimMerchant

AMOUNT = 100_000  #: minor units of a probe trade (refunds take one unit at a time)


class LinkProbe:
    """Calls create, pay and refund as one demo merchant, counting failed answers."""

    def __init__(self, api_url: str, merchants: Sequence[SimMerchant]) -> None:
        self.merchant = next(m for m in merchants if "instant" in m.trade_types)
        self.client = MerchantClient(api_url, self.merchant.token)
        self.answers: Counter[str] = Counter()
        self.paid: dict[str, str] = {}  #: pay org → a trade paid before the audit
        self.unpaid: dict[str, list[str]] = {}  #: pay org → trades created, not yet paid
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._prefix = f"ga{os.getpid()}x{int(time.time())}"

    def close(self) -> None:
        self.client.close()

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.answers)

    def _failed(self, op: str, got: Any) -> bool:
        if got.ok:
            return False
        with self._lock:
            self.answers[f"{op}:{got.code}"] += 1
        return True

    def _trade(self, org: str) -> str | None:
        no = f"{self._prefix}-{next(self._ids)}"
        order_type, sub_type = self.merchant.products[0]
        got = self.client.create_trade(
            out_trade_no=no,
            trade_type="instant",
            amount=AMOUNT,
            currency="CNY",
            user_id="grade-audit",
            order_type=order_type,
            sub_type=sub_type,
            pay_org_no=org,
            subject="grade audit probe",
        )
        return None if self._failed("create", got) else no

    def _pay(self, no: str, org: str) -> bool:
        tools = [{"tool": "channel", "amount": AMOUNT}]
        return not self._failed("pay", self.client.pay(no, tools, pay_org_no=org))

    def pay(self, org: str) -> None:
        """Pay the oldest trade created earlier through ``org`` (a pay needs no create
        in the same window: a fault that fails creates still meets the pay)."""
        with self._lock:
            stock = self.unpaid.get(org) or []
            no = stock.pop(0) if stock else None
        if no is not None:
            self._pay(no, org)

    def prepare(self, orgs: Sequence[str], timeout_s: float = 15.0) -> None:
        """A paid trade per pay org (what the refund probes refund from)."""
        pending = {}
        for org in orgs:
            no = self._trade(org) if org in self.merchant.pay_orgs else None
            if no is not None and self._pay(no, org):
                pending[org] = no
            self._stock(org)
            self._stock(org)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for org, no in list(pending.items()):
                trade = self.client.detail(no).body.get("trade") or {}
                if trade.get("status") in ("paid", "confirmed"):
                    self.paid[org] = pending.pop(org)
            time.sleep(0.2)
        with self._lock:
            self.answers.clear()  # the preparation is not evidence

    def _stock(self, org: str) -> None:
        no = self._trade(org) if org in self.merchant.pay_orgs else None
        if no is not None:
            with self._lock:
                self.unpaid.setdefault(org, []).append(no)

    def fire(self, org: str) -> None:
        """One create (kept for a later pay), one pay of an earlier trade and (when
        prepared) one refund of a unit, through ``org``."""
        if org not in self.merchant.pay_orgs:
            return
        self._stock(org)
        self.pay(org)
        paid = self.paid.get(org)
        if paid is not None:
            refund_no = f"{self._prefix}-r{next(self._ids)}"
            self._failed("refund", self.client.refund(paid, refund_no, 1))
