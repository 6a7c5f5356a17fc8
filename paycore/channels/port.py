"""What the pay core asks of a channel, and what a channel answers (by callback).

Channel calls are asynchronous: the pay core commits the order as *processing*,
then hands a :class:`ChannelRequest` to the :class:`ChannelPort`; the channel's
answer arrives later as a :class:`ChannelResult` (a signed callback, or an active
query) and settles the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChannelRequest:
    kind: str  # pay | refund | withdraw
    pay_org_no: str
    channel_txn_no: str  # our number at the channel: the pay item id
    amount: int
    currency: str
    merchant_id: str
    trade_id: int
    pay_order_id: int
    origin_channel_txn_no: str | None = None  # refunds: the pay being refunded
    #: a routed pay's orgs still to try, in order, when this one refuses before taking money
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChannelResult:
    pay_org_no: str
    channel_txn_no: str
    status: str  # success | failed
    amount: int
    currency: str
    channel_ref: str = ""  # the channel's own transaction number


class ChannelPort(Protocol):
    def submit(self, request: ChannelRequest) -> None:
        """Send ``request`` to its channel; the outcome comes back as a result later."""
