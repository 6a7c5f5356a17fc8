"""The sandbox channel's in-memory books: transactions, card agreements, statements.

Everything here is plain Python (no web framework): :mod:`.sandbox` serves it over
HTTP. All state lives in a :class:`SandboxState` guarded by one lock, so the
request handlers, the callback tasks and tests may touch it from any thread.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from .errors import SandboxReject
from .sandbox_config import Knobs, SandboxConfig

STATEMENT_HEADER = (
    "channel_txn_no",
    "channel_ref",
    "kind",
    "amount",
    "currency",
    "status",
    "settled_at",
)


@dataclass(slots=True)
class SandboxTxn:
    """One transaction as the channel books it."""

    pay_org_no: str
    channel_txn_no: str
    channel_ref: str
    kind: str
    amount: int
    currency: str
    notify_url: str
    origin_channel_txn_no: str | None
    outcome: str  #: decided at acceptance: success | failed
    settled_amount: int  #: what the channel reports (a mismatch knob may change it)
    callback_delay_ms: float
    callback_copies: int
    status: str = "processing"
    settled_at: float | None = None

    def callback_payload(self) -> dict[str, object]:
        """The JSON body of this transaction's result callback."""
        return {
            "pay_org_no": self.pay_org_no,
            "channel_txn_no": self.channel_txn_no,
            "status": self.status,
            "amount": self.settled_amount,
            "currency": self.currency,
            "channel_ref": self.channel_ref,
            "kind": self.kind,
        }


class SandboxState:
    """The sandbox's books: knobs, transactions and card agreements, thread-safe."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self._knobs = {org: config.knobs.get(org, Knobs()) for org in config.secrets}
        self._txns: dict[tuple[str, str], SandboxTxn] = {}
        self._agreements: dict[tuple[str, str], str] = {}
        self._refs = itertools.count(1)

    # -- knobs -----------------------------------------------------------------------------
    def knobs(self, org: str) -> Knobs:
        """``org``'s current knobs."""
        with self._lock:
            return self._knobs[org]

    def all_knobs(self) -> dict[str, Knobs]:
        """Every org's current knobs."""
        with self._lock:
            return dict(self._knobs)

    def set_knobs(self, org: str, knobs: Knobs) -> None:
        """Replace ``org``'s knobs (KeyError for an unknown org)."""
        with self._lock:
            if org not in self._knobs:
                raise KeyError(org)
            self._knobs[org] = knobs

    def update_knobs(self, org: str, changes: Mapping[str, object]) -> Knobs:
        """Apply a partial update (validated) and return the new knobs."""
        with self._lock:
            new = self._knobs[org].updated(changes)
            self._knobs[org] = new
            return new

    # -- random draws ----------------------------------------------------------------------
    def chance(self, rate: float) -> bool:
        """True with probability ``rate`` (seeded, so a test run is reproducible)."""
        with self._lock:
            return self._rng.random() < rate

    def latency(self, org: str) -> float:
        """Seconds to wait before answering: lognormal around the median."""
        k = self.knobs(org)
        if k.latency_ms <= 0:
            return 0.0
        with self._lock:
            factor = self._rng.lognormvariate(0.0, k.latency_jitter) if k.latency_jitter else 1.0
        return min(k.latency_ms * factor, 60_000.0) / 1000.0

    # -- transactions ----------------------------------------------------------------------
    def accept(
        self,
        org: str,
        kind: str,
        channel_txn_no: str,
        amount: int,
        currency: str,
        notify_url: str,
        origin: str | None = None,
    ) -> tuple[SandboxTxn, bool]:
        """Book a transaction; a repeat of the same one returns it with ``created=False``."""
        with self._lock:
            known = self._txns.get((org, channel_txn_no))
            if known is not None:
                if (known.kind, known.amount, known.currency) != (kind, amount, currency):
                    raise SandboxReject(409, "channel_txn_no was used for another transaction")
                return replace(known), False
            if kind == "refund":
                self._check_refund(org, channel_txn_no, amount, currency, origin)
            k = self._knobs[org]
            failed = self._rng.random() < k.fail_rate
            mismatch = self._rng.random() < k.amount_mismatch_rate and kind != "refund"
            txn = SandboxTxn(
                pay_org_no=org,
                channel_txn_no=channel_txn_no,
                channel_ref=f"{org}-{next(self._refs):010d}",
                kind=kind,
                amount=amount,
                currency=currency,
                notify_url=notify_url,
                origin_channel_txn_no=origin,
                outcome="failed" if failed else "success",
                settled_amount=amount + 1 if mismatch and not failed else amount,
                callback_delay_ms=k.callback_delay_ms,
                callback_copies=1 + k.duplicate_callbacks,
            )
            self._txns[(org, channel_txn_no)] = txn
            return replace(txn), True

    def _check_refund(
        self, org: str, txn_no: str, amount: int, currency: str, origin: str | None
    ) -> None:
        if not origin:
            raise SandboxReject(422, "a refund needs origin_channel_txn_no")
        pay = self._txns.get((org, origin))
        if pay is None or pay.kind != "pay":
            raise SandboxReject(404, "origin transaction not found")
        if pay.status != "success":
            raise SandboxReject(409, f"origin transaction is {pay.status}")
        if pay.currency != currency:
            raise SandboxReject(422, "refund currency differs from the origin")
        refunded = sum(
            t.amount
            for t in self._txns.values()
            if t.pay_org_no == org
            and t.kind == "refund"
            and t.origin_channel_txn_no == origin
            and t.status != "failed"
        )
        if refunded + amount > pay.settled_amount:
            raise SandboxReject(422, "refund exceeds the amount paid")

    def settle(self, org: str, channel_txn_no: str) -> SandboxTxn:
        """Move a transaction to its decided outcome (once) and return it."""
        with self._lock:
            txn = self._txns[(org, channel_txn_no)]
            if txn.status == "processing":
                txn.status = txn.outcome
                txn.settled_at = self.config.clock()
            return replace(txn)

    def get(self, org: str, channel_txn_no: str) -> SandboxTxn | None:
        """A copy of one transaction, or None if the channel never booked it."""
        with self._lock:
            txn = self._txns.get((org, channel_txn_no))
            return None if txn is None else replace(txn)

    def transactions(self, org: str) -> list[SandboxTxn]:
        """Copies of every transaction booked for ``org``."""
        with self._lock:
            return [replace(t) for t in self._txns.values() if t.pay_org_no == org]

    # -- cards -----------------------------------------------------------------------------
    def bind_card(self, org: str, user_id: str, card_no: str) -> str:
        """The agreement number for ``user_id``'s card; the same card gets the same one."""
        secret = self.config.secrets[org].encode()
        digest = hashlib.blake2b(f"{user_id}\0{card_no}".encode(), key=secret[:64]).hexdigest()
        with self._lock:
            return self._agreements.setdefault(
                (org, digest), f"AGR{next(self._refs):010d}{card_no[-4:]}"
            )

    # -- statements ------------------------------------------------------------------------
    def statement_csv(self, org: str, day: date) -> str:
        """The CSV statement of ``org``'s transactions that succeeded on UTC ``day``.

        Discrepancy knobs are drawn from a generator seeded by (seed, org, day), so
        downloading one day's statement twice gives the same file.
        """
        k = self.knobs(org)
        with self._lock:
            settled = sorted(
                (t for t in self._txns.values() if t.pay_org_no == org and t.status == "success"),
                key=lambda t: (t.settled_at or 0.0, t.channel_txn_no),
            )
        rng = random.Random(f"{self.config.seed}:{org}:{day.isoformat()}")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(STATEMENT_HEADER)
        for n, t in enumerate(settled):
            at = datetime.fromtimestamp(t.settled_at or 0.0, UTC)
            if at.date() != day:
                continue
            missing = rng.random() < k.statement_missing_rate
            diff = rng.random() < k.statement_amount_diff_rate
            extra = rng.random() < k.statement_extra_rate
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if not missing:
                amount = t.settled_amount + (1 if diff else 0)
                writer.writerow(
                    (t.channel_txn_no, t.channel_ref, t.kind, amount, t.currency, "success", stamp)
                )
            if extra:
                phantom = f"EXTRA{day:%Y%m%d}{n:06d}"
                amount = rng.randint(1, 100_000)
                writer.writerow(
                    (phantom, f"{org}-X{n:09d}", "pay", amount, t.currency, "success", stamp)
                )
        return out.getvalue()
