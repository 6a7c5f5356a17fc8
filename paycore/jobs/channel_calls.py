"""The channel as the compensation tasks reach it, and the ``stuck_channel_call`` task.

``stuck_channel_call`` ``{pay_org_no, channel_txn_no, kind, amount, currency, …}``:
send a request that never got an answer again (channels are idempotent on
``channel_txn_no``), unless its pay item has settled meanwhile.

In the worker the gateway is a :class:`~paycore.channels.guarded.GuardedGateway` for
``job.compensation``: a call the guard refuses (``channel.<org>`` degraded, its breaker
open) raises :class:`~paycore.channels.errors.ChannelRefused` before anything is sent. To
the worker that is a system failure: the task is retried with its backoff (5 s doubling,
each try counted; after ``max_attempts`` it waits for a human as ``manual``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select

from .. import status as st
from ..channels.client import ChannelStatus
from ..channels.errors import ChannelRejected, ChannelUnavailable
from ..channels.port import ChannelRequest
from ..db.engine import Database
from ..db.schema import PayItem, PayItemReroute
from .errors import BusinessFailure


class RefundChannel(Protocol):
    """What the handlers need of :class:`~paycore.channels.gateway.ChannelGateway`."""

    def send(self, request: ChannelRequest, notify_url: str) -> Any: ...

    def query_status(self, org: str, channel_txn_no: str) -> ChannelStatus: ...


class ChannelAccess:
    """The worker's gateway and the callback URL it gives the channel, each checked when
    a task first needs it (a worker without them runs the other kinds)."""

    def __init__(
        self, gateway: RefundChannel | None, notify_url_for: Callable[[str], str] | None
    ) -> None:
        self._gateway = gateway
        self._notify_url_for = notify_url_for

    def gateway(self) -> RefundChannel:
        if self._gateway is None:
            raise ChannelUnavailable("this worker has no channel gateway configured")
        return self._gateway

    def notify_url(self, org: str) -> str:
        if self._notify_url_for is None:
            raise ChannelUnavailable("this worker has no channel callback URL configured")
        return self._notify_url_for(org)


def channel_request_payload(request: ChannelRequest) -> dict[str, Any]:
    """The payload of a ``stuck_channel_call`` task."""
    return dataclasses.asdict(request)


def resend_stuck_call(db: Database, channel: ChannelAccess, payload: dict[str, Any]) -> None:
    """Send the request again unless its pay item has settled meanwhile."""
    try:  # a resend goes to the same org: JSON gave the alternatives back as a list
        req = ChannelRequest(**{**payload, "alternatives": ()})
    except TypeError as e:
        raise BusinessFailure(f"malformed stuck_channel_call payload: {e}") from e
    with db.session() as s:
        state = s.execute(
            select(PayItem.status).where(
                PayItem.pay_org_no == req.pay_org_no,
                PayItem.channel_txn_no == req.channel_txn_no,
            )
        ).scalar_one_or_none()
        moved = (
            state is None
            and s.execute(
                select(PayItemReroute.id).where(
                    PayItemReroute.from_org == req.pay_org_no,
                    PayItemReroute.from_txn == req.channel_txn_no,
                )
            ).first()
        )
    if moved or (state is not None and state != st.PROCESSING):
        return  # settled meanwhile, or moved to another org: nothing to send here
    try:
        channel.gateway().send(req, channel.notify_url(req.pay_org_no))
    except ChannelRejected as e:
        raise BusinessFailure(f"channel refused the request: {e.code}: {e.message}") from e
