"""Double-entry posting: one business event, one journal entry, legs summing to zero.

Legs are signed: debit positive, credit negative. Balances are kept on each
subject's normal side, so a credit raises a liability's balance. Balance rows are
changed with conditional UPDATEs, all at once just before the transaction commits, in
account id order (on PostgreSQL in one statement that locks them in that order first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from ..context import BizContext
from ..db.engine import before_commit
from ..db.guarded import edge_caller, through
from ..db.schema import Account, JournalEntry, JournalLeg, PendingPosting, Ts
from ..db.util import execute_core, insert_ignore
from ..errors import InsufficientBalance, UnbalancedEntry
from ..ids import IdGenerator
from ..instrument import NULL_METRICS, Metrics
from .accounts import BUFFERED, SUB_ACCOUNTS, AccountDirectory, AccountRef, HotPolicy
from .guarded import POSTING, buffer_hot, posting_failure, timed_hot_apply

_DELTAS = "paywatch_balance_deltas"
_INSERT_LEGS = insert(JournalLeg)
_INSERT_PENDING = insert(PendingPosting)


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of an entry: ``amount`` > 0 debits the account, < 0 credits it."""

    account: AccountRef
    amount: int


def debit(account: AccountRef, amount: int) -> Leg:
    return Leg(account, amount)


def credit(account: AccountRef, amount: int) -> Leg:
    return Leg(account, -amount)


class Ledger:
    """Posts journal entries inside the caller's transaction."""

    def __init__(
        self,
        ids: IdGenerator,
        clock: Callable[[], datetime],
        policy: HotPolicy | None = None,
    ) -> None:
        self.ids = ids
        self.clock = clock
        self.accounts = AccountDirectory(ids, policy)
        self.metrics: Metrics = NULL_METRICS  # PayCore hands its metrics in
        self.guard: Any = None  # and its guard: postings of the map's callers go through it

    def post(
        self,
        session: Session,
        *,
        biz_type: str,
        biz_key: str,
        ctx: BizContext,
        currency: str,
        legs: Sequence[Leg],
        trade_id: int | None = None,
        memo: str = "",
    ) -> int | None:
        """Post one entry; returns its id, or None if ``(biz_type, biz_key)`` was posted before.

        Raises :class:`UnbalancedEntry` if the legs do not sum to zero, and
        :class:`InsufficientBalance` if a non-negative account would go below zero. A
        caller with a ``ledger.posting`` edge posts through the guard
        (:mod:`paycore.ledger.guarded`).
        """
        caller = edge_caller(self.guard, POSTING)
        if caller is None:
            return self._timed(session, biz_type, biz_key, ctx, currency, legs, trade_id, memo)

        def body() -> int | None:
            return self._timed(session, biz_type, biz_key, ctx, currency, legs, trade_id, memo)

        return through(self.guard, POSTING, body, caller=caller, failure=posting_failure)

    def _timed(
        self,
        session: Session,
        biz_type: str,
        biz_key: str,
        ctx: BizContext,
        currency: str,
        legs: Sequence[Leg],
        trade_id: int | None,
        memo: str,
    ) -> int | None:
        started = time.perf_counter()
        try:
            return self._post(session, biz_type, biz_key, ctx, currency, legs, trade_id, memo)
        finally:
            self.metrics.observe(
                "ledger_posting",
                "ok",
                pay_org=ctx.pay_org_no,
                seconds=time.perf_counter() - started,
            )

    def move(
        self,
        session: Session,
        *,
        biz_type: str,
        biz_key: str,
        ctx: BizContext,
        currency: str,
        source: AccountRef,
        target: AccountRef,
        amount: int,
        trade_id: int | None = None,
        memo: str = "",
    ) -> int | None:
        """Post the two-leg entry that moves ``amount`` out of ``source`` (debited) into
        ``target`` (credited); idempotent per ``(biz_type, biz_key)`` like :meth:`post`."""
        return self.post(
            session,
            biz_type=biz_type,
            biz_key=biz_key,
            ctx=ctx,
            currency=currency,
            trade_id=trade_id,
            memo=memo,
            legs=[debit(source, amount), credit(target, amount)],
        )

    def _post(
        self,
        session: Session,
        biz_type: str,
        biz_key: str,
        ctx: BizContext,
        currency: str,
        legs: Sequence[Leg],
        trade_id: int | None,
        memo: str,
    ) -> int | None:
        legs = [leg for leg in legs if leg.amount != 0]
        if len(legs) < 2 or sum(leg.amount for leg in legs) != 0:
            raise UnbalancedEntry("journal entry legs must sum to zero", biz_type=biz_type)
        if any(leg.account.currency != currency for leg in legs):
            raise UnbalancedEntry("every leg must be in the entry's currency", biz_type=biz_type)
        now = self.clock()
        entry_id = self.ids.next_id()
        entry = {
            "id": entry_id,
            "biz_type": biz_type,
            "biz_key": biz_key,
            "currency": currency,
            "merchant_id": ctx.merchant_id,
            "order_type": ctx.order_type,
            "sub_type": ctx.sub_type,
            "pay_org_no": ctx.pay_org_no,
            "trade_id": trade_id,
            "memo": memo[:256],
            "created_at": now,
        }
        rows, pending, changes = self._legs(session, legs, entry_id, currency, now)
        if not _insert_entry(session, entry, rows, pending):
            return None  # the same business event was already posted: posting is idempotent
        _defer(session, changes)
        return entry_id

    def _legs(
        self,
        session: Session,
        legs: Sequence[Leg],
        entry_id: int,
        currency: str,
        now: datetime,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[int, int]]:
        """The entry's leg rows, the buffered postings of hot accounts, and the balance
        change of every other account (on its normal side)."""
        rows: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        changes: dict[int, int] = {}
        buffer: bool | None = None  # hot sub-account legs buffered? asked once, if any
        for leg in legs:
            acct = self.accounts.resolve(session, leg.account, now)
            target = acct.pick()
            leg_id = self.ids.next_id()
            rows.append(
                {
                    "id": leg_id,
                    "entry_id": entry_id,
                    "account_id": target,
                    "amount": leg.amount,
                    "currency": currency,
                }
            )
            delta = leg.amount * acct.sign
            mode = acct.hot_mode
            if mode == SUB_ACCOUNTS and buffer is None:
                buffer = buffer_hot(self.guard, session)
            if mode == BUFFERED or (mode == SUB_ACCOUNTS and buffer):
                pending.append(
                    {
                        "id": self.ids.next_id(),
                        "account_id": target,
                        "leg_id": leg_id,
                        "delta": delta,
                        "summary_id": None,
                        "created_at": now,
                    }
                )
            else:
                changes[target] = changes.get(target, 0) + delta
        return rows, pending, changes


def _defer(session: Session, changes: dict[int, int]) -> None:
    """Add ``changes`` to the balance changes applied just before the transaction commits."""
    deferred = session.info.get(_DELTAS)
    if deferred is None:
        deferred = session.info[_DELTAS] = {}
        before_commit(session, _apply_deferred)
    for account_id, delta in changes.items():
        deferred[account_id] = deferred.get(account_id, 0) + delta


def _insert_entry(
    session: Session,
    entry: dict[str, Any],
    legs: list[dict[str, Any]],
    pending: list[dict[str, Any]],
) -> bool:
    """Insert an entry with its legs and buffered postings unless its business key is
    taken; True when inserted. One round trip on PostgreSQL, three on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        if not insert_ignore(session, JournalEntry.__table__, entry):
            return False
        execute_core(session, _INSERT_LEGS, legs)
        if pending:
            execute_core(session, _INSERT_PENDING, pending)
        return True
    params = {
        **entry,
        "leg_ids": [r["id"] for r in legs],
        "leg_accounts": [r["account_id"] for r in legs],
        "leg_amounts": [r["amount"] for r in legs],
        "p_ids": [r["id"] for r in pending],
        "p_accounts": [r["account_id"] for r in pending],
        "p_legs": [r["leg_id"] for r in pending],
        "p_deltas": [r["delta"] for r in pending],
    }
    return execute_core(session, _POST_PG, params).first() is not None


# The entry, its legs and its buffered postings in one statement: the legs and postings
# are inserted only when the entry is (its business key was free). A clash on a
# generated id still raises, as in insert_ignore.
_POST_PG = text(
    "WITH e AS (INSERT INTO journal_entries (id, biz_type, biz_key, currency, merchant_id,"
    " order_type, sub_type, pay_org_no, trade_id, memo, created_at) VALUES (:id, :biz_type,"
    " :biz_key, :currency, :merchant_id, :order_type, :sub_type, :pay_org_no, :trade_id,"
    " :memo, :created_at) ON CONFLICT (biz_type, biz_key) DO NOTHING RETURNING id),"
    " l AS (INSERT INTO journal_legs (id, entry_id, account_id, amount, currency)"
    " SELECT x.id, e.id, x.account_id, x.amount, :currency FROM e, unnest("
    "CAST(:leg_ids AS bigint[]), CAST(:leg_accounts AS bigint[]),"
    " CAST(:leg_amounts AS bigint[])) AS x(id, account_id, amount)),"
    " p AS (INSERT INTO pending_postings (id, account_id, leg_id, delta, created_at)"
    " SELECT x.id, x.account_id, x.leg_id, x.delta, :created_at FROM e, unnest("
    "CAST(:p_ids AS bigint[]), CAST(:p_accounts AS bigint[]), CAST(:p_legs AS bigint[]),"
    " CAST(:p_deltas AS bigint[])) AS x(id, account_id, leg_id, delta))"
    " SELECT id FROM e"
).bindparams(bindparam("created_at", type_=Ts))


def _apply_deferred(session: Session) -> None:
    """Apply every balance change of the transaction at once, in account id order.

    Locking balance rows only at the end, and always in one global order, means two
    transactions can never hold balance rows in opposite orders: no deadlocks between
    postings, and the rows are held for the shortest time.
    """
    deltas: dict[int, int] = session.info.pop(_DELTAS, {})
    changes = sorted((a, d) for a, d in deltas.items() if d)

    def apply() -> None:
        if len(changes) > 1 and session.get_bind().dialect.name == "postgresql":
            _apply_all_pg(session, changes)
            return
        for account_id, delta in changes:
            apply_delta(session, account_id, delta)

    timed_hot_apply(session, apply)


# One round trip for any number of accounts: the CTE locks the rows in id order, the
# UPDATE then changes them; a row it skips would go below zero. NO KEY UPDATE is the
# lock an UPDATE of the balance takes: FOR UPDATE would also wait for the key-share
# locks of legs being inserted against the account, and deadlock with them.
_APPLY_ALL_PG = text(
    "WITH v AS (SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:deltas AS bigint[]))"
    " AS v(id, delta)), locked AS (SELECT a.id FROM accounts a JOIN v ON v.id = a.id"
    " ORDER BY a.id FOR NO KEY UPDATE OF a)"
    " UPDATE accounts a SET balance = a.balance + v.delta FROM v, locked l"
    " WHERE a.id = v.id AND l.id = a.id AND (a.allow_negative OR a.balance + v.delta >= 0)"
    " RETURNING a.id"
)


def _apply_all_pg(session: Session, changes: list[tuple[int, int]]) -> None:
    """:func:`apply_delta` for several accounts in one statement (PostgreSQL)."""
    ids = [a for a, _ in changes]
    params = {"ids": ids, "deltas": [d for _, d in changes]}
    done = execute_core(session, _APPLY_ALL_PG, params).all()
    if len(done) != len(ids):
        raise InsufficientBalance("insufficient balance")


_APPLY_ONE = (
    update(Account)
    .where(
        Account.id == bindparam("aid"),
        Account.allow_negative | (Account.balance + bindparam("delta") >= 0),
    )
    .values(balance=Account.balance + bindparam("delta"))
)


def apply_delta(session: Session, account_id: int, delta: int) -> None:
    """Change a balance by ``delta`` unless that would take a non-negative account below 0."""
    if delta == 0:
        return
    if execute_core(session, _APPLY_ONE, {"aid": account_id, "delta": delta}).rowcount == 0:
        raise InsufficientBalance("insufficient balance")


def account_balance(session: Session, ref_id: int) -> int:
    """Balance of an account including its sub-accounts (buffered postings excluded)."""
    rows = session.execute(
        select(Account.balance).where((Account.id == ref_id) | (Account.parent_id == ref_id))
    ).scalars()
    return sum(rows)
