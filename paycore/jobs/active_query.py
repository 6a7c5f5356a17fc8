"""Active query: ask the channel about pay items stuck in *processing*.

A channel item whose callback has not come ``first_after_s`` after it was created is
queried at its channel; while the channel still says *processing* (or does not know
the transaction) it is asked again every ``interval_s``. A final answer settles the
item through :meth:`PayService.on_channel_result`, exactly as a callback would (and
idempotently: a callback that wins the race makes the query's answer a duplicate).
When ``max_attempts`` queries brought no final answer the item is flagged
``manual`` and is not queried again.

A channel that does not know the transaction at all (``unknown``) never received it:
the send failed, or the process died between committing the order and sending. Asking
again cannot change that, so the item's request is handed to compensation once as a
``stuck_channel_call`` task, which sends it again (channels are idempotent on
``channel_txn_no``) unless the item has settled meanwhile.

Each item is claimed with one conditional UPDATE that also counts the attempt and
moves ``next_query_at`` on, so two workers never query the same item at once and a
crash between claim and query costs one interval, not a duplicate settlement. A
channel error (:class:`ChannelUnavailable`, a 4xx, ...) counts as an attempt without
a result.

Guarded (``job.active_query -> channel.<org>``, through
:class:`~paycore.channels.guarded.GuardedGateway` in the worker): a query the guard
refuses (``channel.<org>`` degraded, its breaker open, a limit) was never made. It is
counted in ``skipped``, its attempt is given back (a long outage sends nothing to manual
handling), it is asked again one ``interval_s`` later, and the rest of that org's items
are left alone for this run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from .. import status as st
from ..channels.client import ChannelStatus
from ..channels.errors import ChannelRefused
from ..channels.port import ChannelRequest, ChannelResult
from ..db.schema import PayItem, PayOrder
from ..errors import PayCoreError
from .handlers import STUCK_CHANNEL_CALL, channel_request_payload
from .tasks import TaskQueue

if TYPE_CHECKING:
    from ..core import PayCore

log = logging.getLogger(__name__)


class QueryGateway(Protocol):
    """What the job needs of :class:`paycore.channels.ChannelGateway`."""

    def query_status(self, org: str, channel_txn_no: str) -> ChannelStatus: ...


@dataclass
class ActiveQueryStats:
    """Totals since the job was built (for logs and metrics)."""

    queried: int = 0
    settled: int = 0  #: final answers handed to the pay core
    pending: int = 0  #: the channel still had no final answer
    errors: int = 0  #: the query itself failed
    manual: int = 0  #: items handed over to manual handling
    resent: int = 0  #: unknown to the channel: handed to compensation to send again
    skipped: int = 0  #: refused by the guard (not sent): asked again later


class ActiveQuery:
    """Queries stuck channel items; :meth:`run_once` is the scheduled job."""

    def __init__(
        self,
        core: PayCore,
        gateway: QueryGateway,
        *,
        first_after_s: float = 60,
        interval_s: float = 300,
        max_attempts: int = 5,
        clock: Callable[[], datetime] | None = None,
        batch: int = 100,
        queue: TaskQueue | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.core = core
        self.gateway = gateway
        self.first_after = timedelta(seconds=first_after_s)
        self.interval = timedelta(seconds=interval_s)
        self.max_attempts = max_attempts
        self.clock = clock or core.clock
        self.batch = batch
        self.queue = queue or TaskQueue(core.db, core.ids, clock=self.clock)
        self.stats = ActiveQueryStats()

    def due(self, now: datetime) -> list[tuple[int, str, str]]:
        """(item id, pay org, channel txn no) of the items to query at ``now``."""
        with self.core.db.session() as s:
            rows = s.execute(
                select(PayItem.id, PayItem.pay_org_no, PayItem.channel_txn_no)
                .where(*self._due_clause(now))
                .order_by(PayItem.created_at)
                .limit(self.batch)
            ).all()
        return [(r.id, str(r.pay_org_no), str(r.channel_txn_no)) for r in rows]

    def run_once(self, now: datetime | None = None) -> int:
        """Query every due item (one batch); returns how many were queried (items the
        guard refused are counted in ``stats.skipped`` instead)."""
        now = now or self.clock()
        queried = 0
        refused: set[str] = set()  # orgs the guard refused this run: not asked again
        for item_id, org, txn in self.due(now):
            if org in refused:
                self.stats.skipped += 1
                continue
            attempt = self.core.db.run(partial(self._claim, item_id=item_id, now=now))
            if attempt is None:  # settled, or claimed by another worker, since we looked
                continue
            if self._query(item_id, org, txn, attempt):
                queried += 1
                self.stats.queried += 1
            else:
                refused.add(org)
        return queried

    def _due_clause(self, now: datetime) -> tuple[ColumnElement[bool], ...]:
        return (
            PayItem.status == st.PROCESSING,
            PayItem.manual.is_(False),
            PayItem.channel_txn_no.is_not(None),  # a part a channel settles, whatever its tool
            PayItem.created_at <= now - self.first_after,
            or_(PayItem.next_query_at.is_(None), PayItem.next_query_at <= now),
        )

    def _claim(self, s: Session, item_id: int, now: datetime) -> int | None:
        """Count the attempt and push the next query out; the attempt number, or None."""
        claimed = s.execute(
            update(PayItem)
            .where(PayItem.id == item_id, *self._due_clause(now))
            .values(
                query_attempts=PayItem.query_attempts + 1,
                next_query_at=now + self.interval,
            )
            .returning(PayItem.query_attempts)
            .execution_options(synchronize_session=False)
        ).first()
        return None if claimed is None else int(claimed[0])

    def _query(self, item_id: int, org: str, txn: str, attempt: int) -> bool:
        """Ask and settle; False when the guard refused the query (it was not made)."""
        result = None
        try:
            state = self.gateway.query_status(org, txn)
        except ChannelRefused as exc:
            self.stats.skipped += 1
            self.core.db.run(partial(self._give_back, item_id=item_id))
            log.info("active query %s/%s skipped: %s", org, txn, exc.message)
            return False
        except PayCoreError as exc:
            self.stats.errors += 1
            log.warning("active query %s/%s attempt %d failed: %s", org, txn, attempt, exc.code)
        else:
            if state.status in (st.SUCCESS, st.FAILED) and state.amount is not None:
                result = ChannelResult(
                    org, txn, state.status, state.amount, state.currency or "", state.channel_ref
                )
            else:
                self.stats.pending += 1
                if state.status == "unknown":
                    self._resend(item_id)
        if result is not None:
            try:
                outcome = self.core.payments.on_channel_result(result)
            except PayCoreError as exc:
                self.stats.errors += 1
                log.error("active query %s/%s: settling failed: %s", org, txn, exc.code)
            else:
                self.stats.settled += 1
                log.info("active query %s/%s settled: %s", org, txn, outcome)
                return True
        if attempt >= self.max_attempts:
            self._to_manual(item_id, org, txn, attempt)
        return True

    @staticmethod
    def _give_back(s: Session, item_id: int) -> None:
        """Uncount a claimed attempt whose query was never made."""
        s.execute(
            update(PayItem)
            .where(PayItem.id == item_id, PayItem.query_attempts > 0)
            .values(query_attempts=PayItem.query_attempts - 1)
            .execution_options(synchronize_session=False)
        )

    def _resend(self, item_id: int) -> None:
        """Enqueue (once) a ``stuck_channel_call`` that sends the item's request again."""

        def work(s: Session) -> bool:
            item = s.get_one(PayItem, item_id)
            if item.status != st.PROCESSING or item.channel_txn_no is None:
                return False
            po = s.get_one(PayOrder, item.pay_order_id)
            origin = (
                s.get_one(PayItem, item.origin_item_id).channel_txn_no
                if item.origin_item_id is not None
                else None
            )
            kind = po.pay_type if po.pay_type in ("refund", "withdraw") else "pay"
            org = str(item.pay_org_no)
            req = ChannelRequest(
                kind,
                org,
                item.channel_txn_no,
                item.amount,
                po.currency,
                po.merchant_id,
                po.trade_id,
                po.id,
                origin,
            )
            return self.queue.enqueue(
                s,
                STUCK_CHANNEL_CALL,
                f"{org}:{item.channel_txn_no}",
                channel_request_payload(req),
                merchant_id=po.merchant_id,
            )

        if self.core.db.run(work):
            self.stats.resent += 1
            log.warning("pay item %s is unknown to its channel: sending it again", item_id)

    def _to_manual(self, item_id: int, org: str, txn: str, attempt: int) -> None:
        def work(s: Session) -> bool:
            done = s.execute(
                update(PayItem)
                .where(PayItem.id == item_id, PayItem.status == st.PROCESSING)
                .values(manual=True, next_query_at=None)
                .execution_options(synchronize_session=False)
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

        if self.core.db.run(work):
            self.stats.manual += 1
            log.warning(
                "pay item %s (%s/%s) still processing after %d queries: manual handling",
                item_id,
                org,
                txn,
                attempt,
            )
