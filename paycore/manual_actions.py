"""Four-eyes actions on manual pay items: settle as success, or fail and refund.

A channel item the active query could not settle (``pay_items.manual``), or one a
``manual`` pay exception names, waits for a person. One person **proposes** an action
with a reason; a **different** person **approves** it, which applies it exactly once:

``settle_success``
    the channel's success for the item's full amount (``channel_ref`` ``manual:<id>``),
    settled by :meth:`paycore.payments.PayService.on_channel_result` as a callback would.
``fail_refund``
    the channel's failure: settlement fails the pay order and records what other tools
    took as a ``partial_payment`` exception, which compensation refunds in full.

Anyone may **reject** a proposal (the proposer withdrawing it, or the second person
refusing it). Rows live in ``manual_actions``; the console writes each step to its
audit log. The approval is a compare-and-set ``proposed -> applied``, so two approvers
racing apply it once; should settling fail, the row goes back to ``proposed`` (settling
is idempotent, a later approval applies it then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.orm import Session

from . import status as st
from .channels import ChannelResult
from .db.schema import ManualAction, PayException, PayItem, PayOrder
from .deps import CoreDeps
from .errors import (
    DuplicateKey,
    FourEyesRequired,
    InvalidRequest,
    ManualActionNotFound,
    PayCoreError,
    WrongState,
)
from .models import check_text

SETTLE_SUCCESS, FAIL_REFUND = "settle_success", "fail_refund"
ACTIONS = (SETTLE_SUCCESS, FAIL_REFUND)
PROPOSED, APPLIED, REJECTED = "proposed", "applied", "rejected"

#: settles one channel result (``PayService.on_channel_result``); returns its outcome
Settle = Callable[[ChannelResult], str]


@dataclass(frozen=True, slots=True)
class ManualActionView:
    id: int
    item_id: int
    action: str
    reason: str
    proposed_by: str
    proposed_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    outcome: str | None


class ManualActions:
    """Proposes, approves (four eyes) and rejects actions on manual pay items."""

    def __init__(self, deps: CoreDeps, settle: Settle) -> None:
        self.deps = deps
        self.settle = settle

    def propose(self, item_id: int, action: str, by: str, reason: str) -> int:
        """Propose ``action`` for the manual item ``item_id``; the proposal's id.

        :class:`InvalidRequest` for an unknown action, a missing actor or reason;
        :class:`WrongState` if the item is not a processing manual channel item, or a
        proposal for it is already waiting."""
        if action not in ACTIONS:
            raise InvalidRequest(f"action must be one of {', '.join(ACTIONS)}")
        by = _actor(by)
        reason = check_text(reason, "reason", 512).strip()
        if not reason:
            raise InvalidRequest("a reason is required")

        def work(s: Session) -> int:
            if not _is_manual(s, item_id):
                raise WrongState(f"pay item {item_id} is not a processing manual channel item")
            row = ManualAction(
                item_id=item_id,
                action=action,
                reason=reason,
                proposed_by=by,
                proposed_at=self.deps.clock(),
                status=PROPOSED,
            )
            s.add(row)
            s.flush()
            return int(row.id)

        try:
            return self.deps.db.run(work)
        except DuplicateKey:
            raise WrongState(f"a proposal for pay item {item_id} is already waiting") from None

    def approve(self, action_id: int, by: str) -> str:
        """Approve and apply a proposal; the settlement's outcome (``settled``,
        ``failed``, ``duplicate``, ``exception``).

        :class:`FourEyesRequired` when ``by`` proposed it; :class:`WrongState` when it
        was decided already (approved by someone else meanwhile, or rejected)."""
        by = _actor(by)
        row = self.get(action_id)
        if row.status != PROPOSED:
            raise WrongState(f"manual action {action_id} is {row.status}")
        if row.proposed_by == by:
            raise FourEyesRequired("the approver must be someone other than the proposer")
        result = self.deps.db.run(lambda s: self._claim(s, row, by))
        try:
            outcome = self.settle(result)
        except PayCoreError:
            self.deps.db.run(lambda s: self._unclaim(s, action_id))
            raise
        self.deps.db.run(lambda s: self._record(s, action_id, outcome))
        return outcome

    def reject(self, action_id: int, by: str) -> ManualActionView:
        """Reject (or, by its proposer, withdraw) a waiting proposal."""
        by = _actor(by)

        def work(s: Session) -> None:
            done = s.execute(
                update(ManualAction)
                .where(ManualAction.id == action_id, ManualAction.status == PROPOSED)
                .values(status=REJECTED, decided_by=by, decided_at=self.deps.clock())
                .execution_options(synchronize_session=False)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                row = s.get(ManualAction, action_id)  # this transaction: no second connection
                if row is None:
                    raise ManualActionNotFound(f"no manual action {action_id}")
                raise WrongState(f"manual action {action_id} is {row.status}")

        self.deps.db.run(work)
        return self.get(action_id)

    def get(self, action_id: int) -> ManualActionView:
        with self.deps.db.session() as s:
            row = s.get(ManualAction, action_id)
            if row is None:
                raise ManualActionNotFound(f"no manual action {action_id}")
            return _view(row)

    def pending(self) -> list[ManualActionView]:
        """Waiting proposals, oldest first."""
        return self._list(ManualAction.status == PROPOSED, limit=500)

    def recent(self, limit: int = 50) -> list[ManualActionView]:
        """Decided actions, newest first."""
        return self._list(ManualAction.status != PROPOSED, limit=limit, newest=True)

    def _list(
        self, where: ColumnElement[bool], *, limit: int, newest: bool = False
    ) -> list[ManualActionView]:
        order = ManualAction.id.desc() if newest else ManualAction.id
        with self.deps.db.session() as s:
            rows = s.execute(select(ManualAction).where(where).order_by(order).limit(limit))
            return [_view(r) for r in rows.scalars()]

    # -- the approval's steps ----------------------------------------------------------------
    def _claim(self, s: Session, row: ManualActionView, by: str) -> ChannelResult:
        """``proposed -> applied`` (one approver wins) and the result to settle."""
        done = s.execute(
            update(ManualAction)
            .where(ManualAction.id == row.id, ManualAction.status == PROPOSED)
            .values(status=APPLIED, decided_by=by, decided_at=self.deps.clock())
            .execution_options(synchronize_session=False)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            raise WrongState(f"manual action {row.id} was decided meanwhile")
        item = s.get_one(PayItem, row.item_id)
        currency = s.execute(
            select(PayOrder.currency).where(PayOrder.id == item.pay_order_id)
        ).scalar_one()
        status = st.SUCCESS if row.action == SETTLE_SUCCESS else st.FAILED
        return ChannelResult(
            str(item.pay_org_no),
            str(item.channel_txn_no),
            status,
            item.amount,
            currency,
            channel_ref=f"manual:{row.id}",
        )

    @staticmethod
    def _unclaim(s: Session, action_id: int) -> None:
        s.execute(
            update(ManualAction)
            .where(ManualAction.id == action_id, ManualAction.status == APPLIED)
            .values(status=PROPOSED, decided_by=None, decided_at=None)
            .execution_options(synchronize_session=False)
        )

    @staticmethod
    def _record(s: Session, action_id: int, outcome: str) -> None:
        s.execute(
            update(ManualAction)
            .where(ManualAction.id == action_id)
            .values(outcome=outcome[:64])
            .execution_options(synchronize_session=False)
        )


def _is_manual(s: Session, item_id: int) -> bool:
    """A processing channel item handed to a person: flagged ``manual`` by the active
    query, or named by an open ``manual`` pay exception."""
    manual_exception = exists().where(
        PayException.pay_item_id == PayItem.id,
        PayException.resolution == "manual",
        PayException.status.in_(("open", "manual")),
    )
    found = s.execute(
        select(PayItem.id).where(
            PayItem.id == item_id,
            PayItem.status == st.PROCESSING,
            PayItem.channel_txn_no.is_not(None),
            PayItem.manual.is_(True) | manual_exception,
        )
    ).first()
    return found is not None


def _actor(by: object) -> str:
    if not isinstance(by, str) or not by.strip() or len(by) > 64:
        raise InvalidRequest("the acting user must be named (1-64 characters)")
    return by.strip()


def _view(r: ManualAction) -> ManualActionView:
    return ManualActionView(
        int(r.id),
        int(r.item_id),
        r.action,
        r.reason,
        r.proposed_by,
        r.proposed_at,
        r.status,
        r.decided_by,
        r.decided_at,
        r.outcome,
    )
