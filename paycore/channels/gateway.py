"""The channel gateway: route requests to pay orgs.

:class:`ChannelGateway` holds one :class:`HttpChannelClient` per pay org. The pay core
sends through :class:`~paycore.channels.front.ChannelFront` (re-exported here), which
returns at once and sends off the request path; the worker's jobs call the gateway
through :class:`~paycore.channels.guarded.GuardedGateway`, as their edge of the map.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from .callbacks import parse_callback
from .client import ChannelAck, ChannelStatus, HttpChannelClient, StatementLine
from .errors import (
    ChannelRefused,
    ChannelRejected,
    ChannelUnavailable,
    InvalidSignature,
    UnknownChannel,
)
from .front import ChannelFront
from .port import ChannelRequest, ChannelResult

__all__ = [
    "ChannelAck",
    "ChannelFront",
    "ChannelGateway",
    "ChannelRefused",
    "ChannelRejected",
    "ChannelStatus",
    "ChannelUnavailable",
    "HttpChannelClient",
    "InvalidSignature",
    "StatementLine",
    "UnknownChannel",
    "build_gateway",
    "parse_callback",
]


class ChannelGateway:
    """Routes channel calls to the client of the request's pay org."""

    def __init__(self, clients: Mapping[str, HttpChannelClient]) -> None:
        self._clients = dict(clients)

    @property
    def orgs(self) -> list[str]:
        """The pay orgs this gateway can reach."""
        return sorted(self._clients)

    def client(self, org: str) -> HttpChannelClient:
        """The client for ``org``; :class:`UnknownChannel` if none is configured."""
        try:
            return self._clients[org]
        except KeyError:
            raise UnknownChannel(
                f"no channel is configured for pay org {org!r}", pay_org_no=org
            ) from None

    def send(
        self, request: ChannelRequest, notify_url: str, *, timeout: float | None = None
    ) -> ChannelAck:
        """Send ``request`` (pay, refund or withdraw) to its pay org, synchronously."""
        return self.client(request.pay_org_no).send(request, notify_url, timeout=timeout)

    def query(self, org: str, channel_txn_no: str) -> ChannelResult | None:
        """The settled result of a transaction at ``org``, or None while pending."""
        return self.client(org).query(channel_txn_no)

    def query_status(self, org: str, channel_txn_no: str) -> ChannelStatus:
        """The raw status of a transaction at ``org`` (including processing/unknown)."""
        return self.client(org).query_status(channel_txn_no)

    def statement(self, org: str, day: date) -> list[StatementLine]:
        """``org``'s statement for UTC ``day``."""
        return self.client(org).statement(day)

    def parse_callback(self, org: str, headers: Mapping[str, str], body: bytes) -> ChannelResult:
        """Verify and read a result callback from ``org``'s channel.

        Raises :class:`UnknownChannel`, :class:`InvalidSignature` (401) or
        :class:`~paycore.errors.InvalidRequest` (422).
        """
        return self.client(org).parse_callback(headers, body)

    def close(self) -> None:
        """Close every client's HTTP connections."""
        for client in self._clients.values():
            client.close()


def build_gateway(
    base_url: str, secrets: Mapping[str, str], *, timeout: float = 3.0
) -> ChannelGateway:
    """A gateway with one :class:`HttpChannelClient` per pay org in ``secrets``;
    ``timeout``: for calls made outside the guard (guarded calls take their edge's)."""
    return ChannelGateway(
        {
            org: HttpChannelClient(base_url, org, secret, timeout=timeout)
            for org, secret in secrets.items()
        }
    )
