"""What each kind of compensation task does, and which failures are definite.

A handler takes a :class:`~paycore.jobs.tasks.Task` and returns (done; True if it
recorded the completion itself in its own transaction), raises :class:`BusinessFailure`
(a definite answer: the task ends ``failed``, never retried), or raises anything else (a
system failure: retried with backoff, then ``manual``). Every handler is idempotent, as
a task runs again when its worker died after the effect and before recording it:
postings are keyed ``(biz_type, biz_key)``, channel numbers are deterministic, states
move by compare-and-set.

The kinds, each in a module of its own: ``exception_refund``
(:mod:`.exception_refund`), ``stuck_channel_call`` (:mod:`.channel_calls`),
``ledger_posting`` (:mod:`.ledger_posting`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import String, cast, exists, select
from sqlalchemy.orm import Session

from stability.guard import calling_as

from ..compensation import refund_txn_no
from ..db.engine import Database
from ..db.schema import CompensationTask, PayException
from ..errors import InsufficientBalance, InvalidContext, UnbalancedEntry
from ..ledger import Ledger
from .channel_calls import ChannelAccess, RefundChannel, channel_request_payload, resend_stuck_call
from .errors import BusinessFailure, RefundPending
from .exception_refund import ExceptionRefunds, RefundPart, RefundPlan
from .ledger_posting import ledger_posting_payload, post_entry
from .tasks import Task, TaskQueue

__all__ = [
    "EXCEPTION_REFUND",
    "LEDGER_POSTING",
    "STUCK_CHANNEL_CALL",
    "BusinessFailure",
    "GiveUp",
    "Handler",
    "Handlers",
    "RefundChannel",
    "RefundPart",
    "RefundPending",
    "RefundPlan",
    "channel_request_payload",
    "ledger_posting_payload",
    "refund_txn_no",
]

EXCEPTION_REFUND, STUCK_CHANNEL_CALL, LEDGER_POSTING = (
    "exception_refund",
    "stuck_channel_call",
    "ledger_posting",
)
Handler = Callable[[Task], "bool | None"]
GiveUp = Callable[[Task, str, str], None]  # (task, final status, error)


class Store(Protocol):
    """What the handlers use of the pay core: its database and its ledger."""

    @property
    def db(self) -> Database: ...

    @property
    def ledger(self) -> Ledger: ...


class Handlers:
    """Kind → handler, plus what to do when a kind's task gives up.

    ``store``: the pay core (or its dependencies): only its database and ledger are kept.
    """

    def __init__(
        self,
        store: Store,
        gateway: RefundChannel | None = None,
        *,
        notify_url_for: Callable[[str], str] | None = None,
        queue: TaskQueue | None = None,
    ) -> None:
        self.db, self.ledger = store.db, store.ledger
        self.channel = ChannelAccess(gateway, notify_url_for)
        deps = getattr(store, "deps", store)  # the pay core's tools, when it has them
        self.refunds = ExceptionRefunds(
            self.db,
            self.ledger,
            self.channel,
            tools=getattr(deps, "tools", None),
            env=getattr(deps, "tool_env", None),
        )
        self.queue = queue
        self._handlers: dict[str, Handler] = {}
        self._give_up: dict[str, GiveUp] = {}
        self.register(EXCEPTION_REFUND, self.exception_refund, on_give_up=self._exception_manual)
        self.register(STUCK_CHANNEL_CALL, self.stuck_channel_call)
        self.register(LEDGER_POSTING, self.ledger_posting)

    def register(self, kind: str, handler: Handler, *, on_give_up: GiveUp | None = None) -> None:
        """Handle tasks of ``kind`` with ``handler`` (replacing any earlier one)."""
        self._handlers[kind] = handler
        if on_give_up is not None:
            self._give_up[kind] = on_give_up

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    def bind(self, queue: TaskQueue) -> None:
        self.queue = queue

    def run(self, task: Task) -> bool | None:
        """Run ``task``'s handler; True if it recorded the completion itself."""
        handler = self._handlers.get(task.kind)
        if handler is None:
            raise BusinessFailure(f"no handler for task kind {task.kind!r}")
        return handler(task)

    def gave_up(self, task: Task, status: str, error: str) -> None:
        """The task ended ``failed`` or ``manual``: let its kind hand the case to a human."""
        hook = self._give_up.get(task.kind)
        if hook is not None:
            hook(task, status, error)

    # -- ledger_posting --------------------------------------------------------------------
    def ledger_posting(self, task: Task) -> bool:
        def work(s: Session) -> None:
            self.post_entry(s, task.payload)
            if self.queue is not None:
                self.queue.complete(task, session=s)

        try:
            with calling_as("ledger.posting"):  # the map's ledger.posting -> database
                self.db.run(work)
        except (UnbalancedEntry, InsufficientBalance, InvalidContext) as e:
            raise BusinessFailure(f"entry cannot be posted: {e.code}: {e.message}") from e
        return self.queue is not None

    def post_entry(self, s: Session, p: dict[str, Any]) -> int | None:
        """Post the entry a ``ledger_posting`` payload describes, in session ``s``."""
        return post_entry(self.ledger, s, p)

    # -- stuck_channel_call ----------------------------------------------------------------
    def stuck_channel_call(self, task: Task) -> None:
        resend_stuck_call(self.db, self.channel, task.payload)

    # -- exception_refund ------------------------------------------------------------------
    def enqueue_open_exceptions(self, limit: int = 500) -> int:
        """Create an ``exception_refund`` task for every open full-refund exception.

        Cheap to call often, from every worker: only exceptions without a task are read,
        and the insert is ignored when another worker got there first.
        """
        queue = self._queue()
        T = CompensationTask
        has_task = exists().where(
            T.kind == EXCEPTION_REFUND, T.biz_key == cast(PayException.id, String)
        )
        stmt = (
            select(PayException.id, PayException.merchant_id)
            .where(
                PayException.status == "open", PayException.resolution == "full_refund", ~has_task
            )
            .order_by(PayException.id)
            .limit(limit)
        )

        def work(s: Session) -> int:
            rows = s.execute(stmt).all()
            return sum(
                queue.enqueue(
                    s,
                    EXCEPTION_REFUND,
                    str(r.id),
                    {"exception_id": r.id},
                    merchant_id=r.merchant_id,
                )
                for r in rows
            )

        return self.db.run(work)

    def exception_refund(self, task: Task) -> None:
        try:
            exception_id = int(task.payload["exception_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise BusinessFailure(f"malformed exception_refund payload: {e!r}") from e
        self.refunds.run(exception_id)

    def _exception_manual(self, task: Task, status: str, error: str) -> None:
        """The refund task gave up: the exception waits for a human (console)."""
        exception_id = task.payload.get("exception_id")
        if exception_id is None:
            return
        self.refunds.give_up(int(exception_id))

    def _queue(self) -> TaskQueue:
        if self.queue is None:
            raise RuntimeError("Handlers.bind(queue) first")
        return self.queue
