"""What each kind of compensation task does, and which failures are definite.

A handler takes a :class:`~paycore.jobs.tasks.Task` and returns (done; True if it
recorded the completion itself in its own transaction), raises :class:`BusinessFailure`
(a definite answer: the task ends ``failed``, never retried), or raises anything else (a
system failure: retried with backoff, then ``manual``). Every handler is idempotent, as
a task runs again when its worker died after the effect and before recording it:
postings are keyed ``(biz_type, biz_key)``, channel numbers are deterministic, states
move by compare-and-set.

* ``exception_refund`` ``{exception_id}``: refund in full what a pay exception took (it
  sits in the platform transit account). A balance part goes back to the user's balance;
  a channel part is refunded at the channel as ``x{pay_item_id}`` (queried first, sent
  only when unknown) and posted once the channel reports success, retrying while it is
  processing. Postings are ``("exception_refund", str(pay_item_id))``: an item's money is
  refunded once, whichever exception asks. Then ``pay_exceptions.status`` is
  ``resolved``; a definite failure or too many attempts make it ``manual``.
* ``stuck_channel_call`` ``{pay_org_no, channel_txn_no, kind, amount, currency, …}``:
  send a request that never got an answer again (channels are idempotent on
  ``channel_txn_no``), unless its pay item has settled meanwhile.
* ``ledger_posting`` ``{biz_type, biz_key, currency, context, legs, trade_id, memo}``:
  post one journal entry later; one that cannot be posted is a business failure. The
  completion is recorded in the posting's transaction: exactly once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import String, cast, exists, select, update
from sqlalchemy.orm import Session

from .. import status as st
from ..channels.client import ChannelStatus
from ..channels.errors import ChannelRejected, ChannelUnavailable
from ..channels.port import ChannelRequest
from ..compensation import post_exception_refund, refund_txn_no
from ..context import BizContext
from ..db.schema import CompensationTask, PayException, PayItem, PayOrder
from ..errors import InsufficientBalance, InvalidContext, PayCoreError, UnbalancedEntry
from ..ledger import channel_clearing, user_balance
from ..ledger.accounts import AccountRef
from ..ledger.journal import Leg
from ..ledger.subjects import SUBJECTS
from .tasks import Task, TaskQueue

if TYPE_CHECKING:
    from ..core import PayCore

EXCEPTION_REFUND, STUCK_CHANNEL_CALL, LEDGER_POSTING = (
    "exception_refund",
    "stuck_channel_call",
    "ledger_posting",
)
Handler = Callable[[Task], "bool | None"]
GiveUp = Callable[[Task, str, str], None]  # (task, final status, error)


class BusinessFailure(PayCoreError):
    """A definite business answer (refused, invalid): retrying cannot change it."""

    code = "business_failure"
    http_status = 422


class RefundPending(PayCoreError):
    """The channel has not finished a refund yet: a system condition, retried later."""

    code = "refund_pending"
    http_status = 503


class RefundChannel(Protocol):
    """What the handlers need of :class:`~paycore.channels.gateway.ChannelGateway`."""

    def send(self, request: ChannelRequest, notify_url: str) -> Any: ...

    def query_status(self, org: str, channel_txn_no: str) -> ChannelStatus: ...


def ledger_posting_payload(
    *,
    biz_type: str,
    biz_key: str,
    ctx: BizContext,
    currency: str,
    legs: Sequence[Leg],
    trade_id: int | None = None,
    memo: str = "",
) -> dict[str, Any]:
    """The payload of a ``ledger_posting`` task (enqueue it with biz_key ``type:key``)."""
    return {
        "biz_type": biz_type,
        "biz_key": biz_key,
        "currency": currency,
        "trade_id": trade_id,
        "memo": memo,
        "context": ctx.as_labels(),
        "legs": [
            {
                "owner_type": g.account.owner_type,
                "owner_id": g.account.owner_id,
                "subject_code": g.account.subject.code,
                "currency": g.account.currency,
                "amount": g.amount,
            }
            for g in legs
        ],
    }


def channel_request_payload(request: ChannelRequest) -> dict[str, Any]:
    """The payload of a ``stuck_channel_call`` task."""
    return dataclasses.asdict(request)


@dataclass(frozen=True, slots=True)
class RefundPart:
    item_id: int
    tool: str
    amount: int
    pay_org_no: str | None
    origin_txn_no: str | None


@dataclass(frozen=True, slots=True)
class RefundPlan:
    exception_id: int
    kind: str
    po: PayOrder
    ctx: BizContext
    parts: tuple[RefundPart, ...]


class Handlers:
    """Kind → handler, plus what to do when a kind's task gives up."""

    def __init__(
        self,
        core: PayCore,
        gateway: RefundChannel | None = None,
        *,
        notify_url_for: Callable[[str], str] | None = None,
        queue: TaskQueue | None = None,
    ) -> None:
        self.core = core
        self.gateway = gateway
        self.notify_url_for = notify_url_for
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
            self.core.db.run(work)
        except (UnbalancedEntry, InsufficientBalance, InvalidContext) as e:
            raise BusinessFailure(f"entry cannot be posted: {e.code}: {e.message}") from e
        return self.queue is not None

    def post_entry(self, s: Session, p: dict[str, Any]) -> int | None:
        """Post the entry a ``ledger_posting`` payload describes, in session ``s``."""
        try:
            legs = [
                Leg(
                    AccountRef(
                        str(g["owner_type"]),
                        str(g["owner_id"]),
                        SUBJECTS[str(g["subject_code"])],
                        str(g["currency"]),
                    ),
                    int(g["amount"]),
                )
                for g in p["legs"]
            ]
            ctx = BizContext(**{k: str(v) for k, v in p["context"].items()})
            biz_type, biz_key, currency = str(p["biz_type"]), str(p["biz_key"]), str(p["currency"])
            trade_id = None if p.get("trade_id") is None else int(p["trade_id"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BusinessFailure(f"malformed ledger_posting payload: {e!r}") from e
        return self.core.ledger.post(
            s,
            biz_type=biz_type,
            biz_key=biz_key,
            ctx=ctx,
            currency=currency,
            legs=legs,
            trade_id=trade_id,
            memo=str(p.get("memo", "")),
        )

    # -- stuck_channel_call ----------------------------------------------------------------
    def stuck_channel_call(self, task: Task) -> None:
        try:
            req = ChannelRequest(**task.payload)
        except TypeError as e:
            raise BusinessFailure(f"malformed stuck_channel_call payload: {e}") from e
        with self.core.db.session() as s:
            state = s.execute(
                select(PayItem.status).where(
                    PayItem.pay_org_no == req.pay_org_no,
                    PayItem.channel_txn_no == req.channel_txn_no,
                )
            ).scalar_one_or_none()
        if state is not None and state != st.PROCESSING:
            return  # settled meanwhile (callback or active query): nothing to send
        try:
            self._gateway().send(req, self._notify_url(req.pay_org_no))
        except ChannelRejected as e:
            raise BusinessFailure(f"channel refused the request: {e.code}: {e.message}") from e

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

        return self.core.db.run(work)

    def exception_refund(self, task: Task) -> None:
        try:
            exception_id = int(task.payload["exception_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise BusinessFailure(f"malformed exception_refund payload: {e!r}") from e
        plan = self.core.db.run(lambda s: self._refund_plan(s, exception_id))
        if plan is None:
            return  # already resolved: a repeated run changes nothing
        settled: list[RefundPart] = []
        pending: list[RefundPart] = []
        refused: list[str] = []
        for part in plan.parts:
            if part.tool == "balance":
                settled.append(part)
                continue
            outcome = self._channel_refund(plan, part)
            if outcome == "success":
                settled.append(part)
            elif outcome == "pending":
                pending.append(part)
            else:
                refused.append(outcome)
        resolve = not pending and not refused
        self.core.db.run(lambda s: self._post_refunds(s, plan, settled, resolve))
        if refused:
            raise BusinessFailure("; ".join(refused))
        if pending:
            raise RefundPending(f"{len(pending)} channel refund(s) still processing")

    def _refund_plan(self, s: Session, exception_id: int) -> RefundPlan | None:
        exc = s.get(PayException, exception_id)
        if exc is None:
            raise BusinessFailure(f"no pay exception {exception_id}")
        if exc.status == "resolved":
            return None
        if exc.resolution != "full_refund" or exc.amount_taken <= 0 or exc.pay_order_id is None:
            raise BusinessFailure("this exception is not resolved by a refund: a human decides")
        po = s.get_one(PayOrder, exc.pay_order_id)
        if po.pay_type == "withdraw":
            raise BusinessFailure("a withdraw exception is not resolved by a refund")
        if exc.pay_item_id is not None:
            items = [(s.get_one(PayItem, exc.pay_item_id), exc.amount_taken)]
        else:  # the whole order: its successful items, less those with their own exception
            own = set(
                s.execute(
                    select(PayException.pay_item_id).where(
                        PayException.pay_order_id == po.id,
                        PayException.id != exc.id,
                        PayException.resolution == "full_refund",
                    )
                ).scalars()
            )
            rows = s.execute(
                select(PayItem)
                .where(PayItem.pay_order_id == po.id, PayItem.status == st.SUCCESS)
                .order_by(PayItem.seq)
            ).scalars()
            items = [(i, i.settled_amount or i.amount) for i in rows if i.id not in own]
            found = sum(a for _, a in items)
            if found != exc.amount_taken:
                raise BusinessFailure(
                    f"the order's items hold {found}, the exception says "
                    f"{exc.amount_taken}: a human decides"
                )
        parts = tuple(
            RefundPart(i.id, i.tool, amount, i.pay_org_no, i.channel_txn_no) for i, amount in items
        )
        ctx = BizContext(po.merchant_id, po.order_type, po.sub_type, po.pay_org_no)
        return RefundPlan(exc.id, exc.kind, po, ctx, parts)

    def _channel_refund(self, plan: RefundPlan, part: RefundPart) -> str:
        """``success``, ``pending``, or why the channel refused; outages raise (retry)."""
        org, txn, po = str(part.pay_org_no), refund_txn_no(part.item_id), plan.po
        gateway = self._gateway()
        try:
            state = gateway.query_status(org, txn)
            if state.status == "unknown":
                if not part.origin_txn_no:
                    return f"item {part.item_id} has no channel transaction to refund"
                gateway.send(
                    ChannelRequest(
                        "refund",
                        org,
                        txn,
                        part.amount,
                        po.currency,
                        po.merchant_id,
                        po.trade_id,
                        po.id,
                        origin_channel_txn_no=part.origin_txn_no,
                    ),
                    self._notify_url(org),
                )
                state = gateway.query_status(org, txn)
        except ChannelRejected as e:
            return f"channel refused refund {txn}: {e.code}: {e.message}"
        if state.status == "success":
            if state.amount != part.amount:
                return f"channel refunded {state.amount} for {txn}, expected {part.amount}"
            return "success"
        if state.status == "failed":
            return f"channel refund {txn} failed"
        return "pending"

    def _post_refunds(
        self, s: Session, plan: RefundPlan, parts: list[RefundPart], resolve: bool
    ) -> None:
        cur = plan.po.currency
        for part in parts:
            to = (
                user_balance(plan.po.merchant_id, plan.po.user_id, cur)
                if part.tool == "balance"
                else channel_clearing(str(part.pay_org_no), cur)
            )
            post_exception_refund(
                self.core,
                s,
                plan.po,
                plan.ctx,
                item_id=part.item_id,
                to_account=to,
                amount=part.amount,
                memo=f"{plan.kind} exception {plan.exception_id}: full refund",
            )
        if resolve:
            s.execute(
                update(PayException)
                .where(
                    PayException.id == plan.exception_id,
                    PayException.status.in_(("open", "manual")),
                )
                .values(status="resolved")
            )

    def _exception_manual(self, task: Task, status: str, error: str) -> None:
        """The refund task gave up: the exception waits for a human (console)."""
        exception_id = task.payload.get("exception_id")
        if exception_id is None:
            return
        self.core.db.run(
            lambda s: s.execute(
                update(PayException)
                .where(PayException.id == int(exception_id), PayException.status == "open")
                .values(status="manual")
            )
        )

    # -- helpers ---------------------------------------------------------------------------
    def _gateway(self) -> RefundChannel:
        if self.gateway is None:
            raise ChannelUnavailable("this worker has no channel gateway configured")
        return self.gateway

    def _notify_url(self, org: str) -> str:
        if self.notify_url_for is None:
            raise ChannelUnavailable("this worker has no channel callback URL configured")
        return self.notify_url_for(org)

    def _queue(self) -> TaskQueue:
        if self.queue is None:
            raise RuntimeError("Handlers.bind(queue) first")
        return self.queue
