"""Handing channel requests to the channel port once their order has committed.

Pays, withdraws and refunds all submit this way: the request goes out after the
transaction that made the order *processing* committed, and a submit that fails is
only logged: the order stays processing and the active query settles it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .port import ChannelPort, ChannelRequest

log = logging.getLogger(__name__)


class ChannelSubmitter:
    """Submits requests through ``port`` (None: no channel wired in, nothing is sent)."""

    __slots__ = ("port",)

    def __init__(self, port: ChannelPort | None) -> None:
        self.port = port

    def submit(self, requests: Sequence[ChannelRequest]) -> None:
        """Hand ``requests`` to the channel after commit; failures wait for active query."""
        if self.port is None:
            return
        for request in requests:
            try:
                self.port.submit(request)
            except Exception:  # noqa: BLE001 - the order stays processing; active query settles it
                log.warning(
                    "channel submit failed for item %s at %s",
                    request.channel_txn_no,
                    request.pay_org_no,
                    exc_info=True,
                )
