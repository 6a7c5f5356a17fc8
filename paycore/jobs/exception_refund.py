"""The ``exception_refund`` task: refund in full what a pay exception took.

Payload ``{exception_id}``. The money sits in the platform transit account. An instant
part (balance, points, coupon, ...) goes back to where its tool took it from (the tool's
``source``; its reservation, a coupon, is released after commit); a part that settles by
the channel is refunded at the channel as
``x{pay_item_id}`` (queried first, sent only when unknown) and posted once the channel
reports success, retrying while it is processing. Postings are ``("exception_refund",
str(pay_item_id))``: an item's money is refunded once, whichever exception asks. Then
``pay_exceptions.status`` is ``resolved``; a definite failure or too many attempts make
it ``manual``. The channel calls are ``job.compensation``'s (guarded, see
:mod:`.channel_calls`): a refused call leaves the exception open and the task retrying.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import status as st
from ..channels.errors import ChannelRejected
from ..channels.port import ChannelRequest
from ..compensation import post_exception_refund, refund_txn_no
from ..context import BizContext
from ..db.engine import Database
from ..db.schema import PayException, PayItem, PayOrder
from ..ledger import Ledger
from ..pay_reroute_late import rerouted_refund
from ..tools import ToolEnv, ToolRegistry, default_registry
from ..views import order_context
from .channel_calls import ChannelAccess
from .errors import BusinessFailure, RefundPending


@dataclass(frozen=True, slots=True)
class RefundPart:
    item_id: int
    tool: str
    amount: int
    pay_org_no: str | None
    origin_txn_no: str | None
    item: PayItem | None = None  # the paying item (its tool's source and release)


@dataclass(frozen=True, slots=True)
class RefundPlan:
    exception_id: int
    kind: str
    po: PayOrder
    ctx: BizContext
    parts: tuple[RefundPart, ...]


class ExceptionRefunds:
    """Runs ``exception_refund`` tasks against ``db``, ``ledger`` and the channel.

    ``tools``: the pay tools (default :func:`~paycore.tools.default_registry`); ``env``:
    what their ``release`` uses (default: this database and ledger, no coupon client)."""

    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        channel: ChannelAccess,
        *,
        tools: ToolRegistry | None = None,
        env: ToolEnv | None = None,
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.channel = channel
        self.tools = tools if tools is not None else default_registry()
        # no merchant directory nor coupon client in a bare worker: release is weak
        self.env = env if env is not None else ToolEnv(db, ledger, None, None)  # type: ignore[arg-type]

    def run(self, exception_id: int) -> None:
        """Refund what the exception took; :class:`BusinessFailure` when the channel
        refused a part, :class:`RefundPending` while a part is still processing."""
        plan = self.db.run(lambda s: refund_plan(s, exception_id))
        if plan is None:
            return  # already resolved: a repeated run changes nothing
        settled: list[RefundPart] = []
        pending: list[RefundPart] = []
        refused: list[str] = []
        for part in plan.parts:
            if not self.tools.get(part.tool).settles_by_channel:
                settled.append(part)  # instant: its money is in transit, nothing to ask
                continue
            outcome = self._channel_refund(plan, part)
            if outcome == "success":
                settled.append(part)
            elif outcome == "pending":
                pending.append(part)
            else:
                refused.append(outcome)
        resolve = not pending and not refused
        self.db.run(lambda s: self._post_refunds(s, plan, settled, resolve))
        if refused:
            raise BusinessFailure("; ".join(refused))
        if pending:
            raise RefundPending(f"{len(pending)} channel refund(s) still processing")

    def _channel_refund(self, plan: RefundPlan, part: RefundPart) -> str:
        """``success``, ``pending``, or why the channel refused; outages raise (retry)."""
        org, txn, po = str(part.pay_org_no), refund_txn_no(part.item_id), plan.po
        gateway = self.channel.gateway()
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
                    self.channel.notify_url(org),
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
        po = plan.po
        released: list[PayItem] = []
        for part in parts:
            tool = self.tools.get(part.tool)
            item = part.item or PayItem(  # a rerouted part: the org and txn it left
                id=part.item_id,
                merchant_id=po.merchant_id,
                tool=part.tool,
                amount=part.amount,
                pay_org_no=part.pay_org_no,
                channel_txn_no=part.origin_txn_no,
            )
            to = tool.source(po.merchant_id, po.user_id, po.currency, item)
            if part.item is not None and not tool.settles_by_channel:
                released.append(part.item)
            post_exception_refund(
                self.ledger,
                s,
                plan.po,
                plan.ctx,
                item_id=part.item_id,
                to_account=to,
                amount=part.amount,
                memo=f"{plan.kind} exception {plan.exception_id}: full refund",
            )
        self.tools.release_after_commit(s, self.env, released)
        if resolve:
            s.execute(
                update(PayException)
                .where(
                    PayException.id == plan.exception_id,
                    PayException.status.in_(("open", "manual")),
                )
                .values(status="resolved")
            )

    def give_up(self, exception_id: int) -> None:
        """The refund task gave up: the exception waits for a human (console)."""
        self.db.run(
            lambda s: s.execute(
                update(PayException)
                .where(PayException.id == exception_id, PayException.status == "open")
                .values(status="manual")
            )
        )


def refund_plan(s: Session, exception_id: int) -> RefundPlan | None:
    """What refunding exception ``exception_id`` returns, part by part; None when it is
    resolved already. A business failure when it is not resolved by a refund."""
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
    rerouted = rerouted_refund(s, exc)  # the money is at the org the item left
    if rerouted is not None:
        part = RefundPart(
            rerouted.id, "channel", exc.amount_taken, rerouted.from_org, rerouted.from_txn
        )
        return RefundPlan(exc.id, exc.kind, po, order_context(po), (part,))
    if exc.pay_item_id is not None:
        items = [(s.get_one(PayItem, exc.pay_item_id), exc.amount_taken)]
    else:
        items = _order_items(s, exc, po)
    parts = tuple(
        RefundPart(i.id, i.tool, amount, i.pay_org_no, i.channel_txn_no, i) for i, amount in items
    )
    return RefundPlan(exc.id, exc.kind, po, order_context(po), parts)


def _order_items(s: Session, exc: PayException, po: PayOrder) -> list[tuple[PayItem, int]]:
    """The whole order's refund: its successful items, less those with their own
    exception; they must hold what the exception says was taken."""
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
    return items
