"""Retry a routed pay once at its next pay org, when the first refused it before money.

A routed pay's :class:`~paycore.channels.port.ChannelRequest` carries the orgs still to
try (``alternatives``). When the channel front reports that a ``pay`` send failed in a
way that proves the channel never took it (:func:`not_accepted`: the front refused it,
the connection was never made, or the gateway answered 503), :class:`PayRerouter` moves
the item, in one transaction, to the first alternative the guard admits: compare-and-set
on the item (still *processing*, still at the old org and transaction), a new
``channel_txn_no``, the pay order's ``pay_org_no``, and a ``pay_item_reroutes`` row. Then
it submits the new request with no alternatives: a pay is retried once.

A timeout, a 5xx other than 503, or a connection dropped after sending prove nothing:
the channel may have taken the money, so those are left to the active query as before.

A late answer from the first org is settled by :mod:`paycore.pay_reroute_late`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from urllib3.exceptions import ConnectTimeoutError

from . import status as st
from .channels import ChannelRequest
from .channels.errors import ChannelRefused, ChannelRejected, ChannelUnavailable, UnknownChannel
from .context import BizContext
from .db.schema import PayItem, PayItemReroute, PayOrder
from .db.util import execute_core
from .deps import CoreDeps
from .views import order_context

log = logging.getLogger(__name__)

#: the routing rule label a retry's fallback is recorded under (the first decision's
#: rule is not known to the channel request)
RETRY_RULE = "retry"
#: the fallback reason recorded on the router, as the routing contract names it
FALLBACK_REASON = "system_error"

#: transport errors raised before a connection existed: urllib3's connect timeout (its
#: NewConnectionError and NameResolutionError are ones), aiohttp's connector errors and
#: its connect timeout, and a plain refusal
_NEVER_CONNECTED: tuple[type[BaseException], ...] = (
    ConnectTimeoutError,
    ConnectionRefusedError,
    aiohttp.ClientConnectorError,
    *((aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()),
)


def not_accepted(exc: BaseException) -> str | None:
    """Why ``exc`` proves the channel never took the request, or None when it may have.

    ``refused:<reason>`` (the front or the guard did not send it), ``unknown_channel``,
    ``http_503`` (the gateway said it did not take it) or ``unreachable`` (no connection
    was made: refused, unresolvable, or the connect itself timed out). A 4xx is an answer
    about this request, not an outage: not retried elsewhere.
    """
    if isinstance(exc, ChannelRefused):
        return f"refused:{exc.details.get('reason', 'unknown')}"
    if isinstance(exc, UnknownChannel):
        return "unknown_channel"
    if isinstance(exc, ChannelRejected) or not isinstance(exc, ChannelUnavailable):
        return None
    if exc.details.get("status") == 503:
        return "http_503"
    return "unreachable" if _never_connected(exc) else None


def _never_connected(exc: BaseException) -> bool:
    """Whether the transport error under ``exc`` happened before a connection existed
    (the client wraps it with ``raise ... from``; urllib3's connection refusal is one of
    its timeouts, so the message alone cannot tell)."""
    seen = 0
    cause = exc.__cause__
    while cause is not None and seen < 4:
        if isinstance(cause, _NEVER_CONNECTED):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


class PayRerouter:
    """The channel front's ``on_failure`` hook: retries a routed pay once elsewhere.

    ``deps`` returns the pay core's current dependencies (the core rebuilds them when a
    part changes): ``lambda: core.deps``. On an event loop the work goes to the loop's
    default executor, never blocking the loop on the database.
    """

    def __init__(self, deps: Callable[[], CoreDeps]) -> None:
        self._deps = deps
        self.rerouted = 0  #: pays moved to another org since this hook was built

    def on_failure(self, request: ChannelRequest, exc: Exception) -> None:
        """Retry ``request`` at its next org when ``exc`` proves it was never taken."""
        if request.kind != "pay" or not request.alternatives:
            return
        reason = not_accepted(exc)
        if reason is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._safely(request, reason)
            return
        loop.run_in_executor(None, self._safely, request, reason)

    def _safely(self, request: ChannelRequest, reason: str) -> None:
        try:
            self.reroute(request, reason)
        except Exception:  # noqa: BLE001 - the item stays processing: active query settles it
            log.exception(
                "rerouting item %s from %s failed", request.channel_txn_no, request.pay_org_no
            )

    def reroute(self, request: ChannelRequest, reason: str) -> ChannelRequest | None:
        """Move ``request``'s item to its first admitted alternative and submit it there;
        the new request, or None when nothing moved (settled, moved already, no org)."""
        deps = self._deps()
        with deps.db.reading() as s:
            po = s.get(PayOrder, request.pay_order_id)
            if po is None or po.status != st.PROCESSING:
                return None
            ctx = order_context(po)
        target = _admitted(deps, ctx, request.alternatives)
        if target is None:
            log.warning(
                "item %s refused at %s (%s): no other org admits it",
                request.channel_txn_no,
                request.pay_org_no,
                reason,
            )
            return None
        moved = deps.db.run(lambda s: _move(deps, s, request, target, reason))
        if moved is None:
            return None
        self.rerouted += 1
        log.warning(
            "item %s moved from %s to %s (%s)",
            moved.channel_txn_no,
            request.pay_org_no,
            target,
            reason,
        )
        _record_fallback(deps.router, request.pay_org_no, target)
        deps.channel.submit([moved])
        return moved


def _admitted(deps: CoreDeps, ctx: BizContext, orgs: tuple[str, ...]) -> str | None:
    """The first of ``orgs`` the merchant may use and the guard lets through."""
    for org in orgs:
        there = BizContext(ctx.merchant_id, ctx.order_type, ctx.sub_type, org)
        try:
            deps.merchants.authorize(ctx.merchant_id, there)
            if deps.guard is not None:
                deps.guard.admit(f"channel.{org}", caller="link.pay", labels=there.as_labels())
        except Exception as exc:  # noqa: BLE001 - refused here: try the next one
            log.info("reroute to %s refused: %s", org, type(exc).__name__)
            continue
        return org
    return None


def _move(
    deps: CoreDeps, s: Session, request: ChannelRequest, to_org: str, reason: str
) -> ChannelRequest | None:
    """The reroute's transaction: the item, its order and the reroute row, or nothing."""
    lock = select(PayOrder.id).where(PayOrder.id == request.pay_order_id)
    if deps.db.is_postgres:  # the order's lock first, as settlement takes it
        execute_core(s, lock.with_for_update())
    old_org, old_txn = request.pay_org_no, request.channel_txn_no
    item_id = s.execute(
        select(PayItem.id).where(PayItem.pay_org_no == old_org, PayItem.channel_txn_no == old_txn)
    ).scalar_one_or_none()
    if item_id is None:
        return None
    once = select(PayItemReroute.id).where(PayItemReroute.item_id == item_id)
    if s.execute(once).first() is not None:
        return None  # retried once already (the unique item_id backs this up)
    new_txn = str(deps.ids.next_id())
    moved = execute_core(
        s,
        update(PayItem)
        .where(
            PayItem.id == item_id,
            PayItem.status == st.PROCESSING,
            PayItem.pay_org_no == old_org,
            PayItem.channel_txn_no == old_txn,
        )
        .values(pay_org_no=to_org, channel_txn_no=new_txn),
    )
    if moved.rowcount != 1:
        return None
    execute_core(
        s,
        update(PayOrder)
        .where(PayOrder.id == request.pay_order_id, PayOrder.pay_org_no == old_org)
        .values(pay_org_no=to_org),
    )
    s.add(
        PayItemReroute(
            id=deps.ids.next_id(),
            item_id=item_id,
            pay_order_id=request.pay_order_id,
            merchant_id=request.merchant_id,
            from_org=old_org,
            from_txn=old_txn,
            to_org=to_org,
            to_txn=new_txn,
            reason=reason[:64],
            created_at=deps.clock(),
        )
    )
    s.flush()  # the unique item_id: a second reroute of one item fails here, not later
    return replace(request, pay_org_no=to_org, channel_txn_no=new_txn, alternatives=())


def _record_fallback(router: Any, from_org: str, to_org: str) -> None:
    """Count the retry as a routing fallback, on whichever API the router offers."""
    if router is None:
        return
    try:
        fell_back = getattr(getattr(router, "recorder", None), "fell_back", None)
        if callable(fell_back):
            fell_back(RETRY_RULE, from_org, to_org, FALLBACK_REASON)
            return
        record = getattr(router, "record", None)
        if callable(record):
            record(RETRY_RULE, to_org, [(from_org, FALLBACK_REASON)])
    except Exception:  # noqa: BLE001 - metrics never stop a pay
        log.exception("recording the reroute on the router failed")
