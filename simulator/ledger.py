"""The simulator's own books: what it believes happened to every trade it sent.

Every trade the API accepted must end *paid* (or confirmed), or *closed*/unpaid with
nothing taken, and never be paid twice. :func:`audit` compares these beliefs with the
pay core's answers at the end of a run: ``lost`` counts trades still hanging (a pay or
refund order still processing), trades the merchant was told were paid that are not,
and refunds accepted that never completed; ``doubled`` counts trades with two
successful pay orders, or more paid/refunded than their amount.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

PAID = ("paid", "confirmed")


@dataclass
class TradeRecord:
    """One trade as the simulator sent it and what it learned since."""

    merchant_id: str
    out_trade_no: str
    trade_type: str
    amount: int
    pay_org: str
    user_id: str
    payee_user_id: str | None = None
    balance_part: int = 0  #: reserved from the user's believed balance
    #: what other tools paid of the last pay sent (``coupon``, ``points``): the pay core
    #: keeps those books, the trade's amounts stay the whole of it
    parts: dict[str, int] = field(default_factory=dict)
    state: str = "new"  #: new | created | paying | paid | confirmed | closed | refused
    told_paid: bool = False  #: the API or a notification said it was paid
    pay_nos: list[str] = field(default_factory=list)
    refunds: dict[str, tuple[int, str]] = field(default_factory=dict)  #: no -> (amount, state)
    since: float = field(default_factory=time.monotonic)  #: when the state last changed

    @property
    def key(self) -> tuple[str, str]:
        return (self.merchant_id, self.out_trade_no)

    def move(self, state: str) -> None:
        self.state = state
        self.since = time.monotonic()

    @property
    def refundable(self) -> int:
        done = sum(a for a, s in self.refunds.values() if s in ("pending", "succeeded"))
        return self.amount - done if self.state in PAID else 0


class ClientLedger:
    """Thread-safe trade records and believed user balances."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trades: dict[tuple[str, str], TradeRecord] = {}
        self._balances: dict[str, int] = {}

    def add(self, record: TradeRecord) -> TradeRecord:
        with self._lock:
            self._trades[record.key] = record
        return record

    def get(self, merchant_id: str, out_trade_no: str) -> TradeRecord | None:
        with self._lock:
            return self._trades.get((merchant_id, out_trade_no))

    def records(self, pred: Callable[[TradeRecord], bool] | None = None) -> list[TradeRecord]:
        with self._lock:
            return [r for r in self._trades.values() if pred is None or pred(r)]

    def __iter__(self) -> Iterator[TradeRecord]:
        return iter(self.records())

    def __len__(self) -> int:
        with self._lock:
            return len(self._trades)

    # -- balances: conservative (credit when known paid, reserve before spending) ------
    def balance(self, user_id: str) -> int:
        with self._lock:
            return self._balances.get(user_id, 0)

    def credit(self, user_id: str, amount: int) -> None:
        with self._lock:
            self._balances[user_id] = self._balances.get(user_id, 0) + amount

    def reserve(self, user_id: str, amount: int) -> bool:
        """Take ``amount`` from the believed balance if there is enough."""
        with self._lock:
            have = self._balances.get(user_id, 0)
            if have < amount:
                return False
            self._balances[user_id] = have - amount
            return True


@dataclass
class AuditResult:
    """The end-of-run comparison of beliefs with the pay core."""

    checked: int = 0
    paid: int = 0
    unpaid: int = 0  #: created/closed with nothing kept
    lost: int = 0
    doubled: int = 0
    unresolved: int = 0  #: part of ``lost``: a pay or refund order still processing
    unnotified: int = 0  #: paid, but the merchant never learned it (not a loss)
    errors: int = 0  #: trades the API could not show
    examples: list[str] = field(default_factory=list)

    def note(self, what: str, record: TradeRecord) -> None:
        if len(self.examples) < 20:
            self.examples.append(f"{what}: {record.merchant_id}/{record.out_trade_no}")

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def audit(
    ledger: ClientLedger, fetch: Callable[[TradeRecord], dict[str, Any] | None]
) -> AuditResult:
    """Check every accepted trade against ``fetch(record)`` (the API's trade detail)."""
    out = AuditResult()
    for rec in ledger.records(lambda r: r.state not in ("new", "refused")):
        detail = fetch(rec)
        out.checked += 1
        if detail is None:
            out.errors += 1
            out.note("unreadable", rec)
            continue
        _check(out, rec, detail)
    return out


def _check(out: AuditResult, rec: TradeRecord, detail: dict[str, Any]) -> None:
    trade = detail["trade"]
    orders = detail.get("pay_orders", [])
    successes = [o for o in orders if o["status"] == "success"]
    refunds = detail.get("refunds", [])
    refunded_ok = sum(r["trade"]["amount"] for r in refunds if r["trade"]["status"] in PAID)
    if (
        len(successes) > 1
        or trade["paid_amount"] > trade["amount"]
        or refunded_ok > trade["paid_amount"]
        or trade["refunded_amount"] > trade["paid_amount"]
    ):
        out.doubled += 1
        out.note("doubled", rec)
    hanging = any(o["status"] == "processing" for o in orders) or any(
        r["trade"]["status"] == "paying" for r in refunds
    )
    told_refunds = {no for no, (_, s) in rec.refunds.items() if s in ("pending", "succeeded")}
    known_refunds = {r["trade"]["out_trade_no"] for r in refunds}
    if hanging:
        out.lost += 1
        out.unresolved += 1
        out.note("unresolved", rec)
    elif rec.told_paid and trade["status"] not in PAID:
        out.lost += 1
        out.note("told paid, not paid", rec)
    elif told_refunds - known_refunds:
        out.lost += 1
        out.note("accepted refund missing", rec)
    elif trade["status"] in PAID:
        out.paid += 1
        if not rec.told_paid:
            out.unnotified += 1
    else:
        out.unpaid += 1
