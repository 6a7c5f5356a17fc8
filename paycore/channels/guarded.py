"""The channel gateway as one caller of the dependency map sees it.

The worker's jobs (``job.active_query``, ``job.compensation``, ``job.reconciliation``)
call the channels synchronously through :class:`GuardedGateway`: every call is
``guard.call("channel.<org>", ..., caller=<the job>)``, so the job's edge decides:

* **switch, limit, breaker**: a call on a degraded ``channel.<org>``, an open breaker or
  a spent limit is not sent; it raises :class:`~paycore.channels.errors.ChannelRefused`
  (``details``: resource, reason), which the job counts as skipped and retries later;
* **timeout**: the HTTP timeout of the call is the edge's (the client reads
  :func:`stability.guard.call_budget`);
* **retries**: the edge's (queries and statements retried once, sends never).

A 4xx answer (:class:`~paycore.channels.errors.ChannelRejected`) is an answer: the call
counts as a pass (the channel is up), is never retried, and is raised to the job as
before. A failure (:class:`ChannelUnavailable`, a timeout) is raised as the client's own
error, so the jobs handle it as they always did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar, cast

from stability.errors import DependencyFailed, RateLimited, UnknownResource

from ..errors import PayCoreError
from .client import ChannelAck, ChannelStatus, StatementLine
from .errors import ChannelRefused, ChannelRejected, ChannelUnavailable
from .port import ChannelRequest, ChannelResult

T = TypeVar("T")

#: why the guard kept a call from the channel (the call was not made)
REFUSALS = frozenset(
    {"degraded", "breaker_open", "blocked", "limited", "bulkhead_full", "dry_run_blocked"}
)


class GuardedGateway:
    """``gateway``'s calls through ``guard`` as ``caller`` (None: no guard, plain calls)."""

    def __init__(self, gateway: Any, guard: Any, caller: str) -> None:
        self.gateway = gateway
        self.guard = guard
        self.caller = caller

    def __repr__(self) -> str:
        return f"GuardedGateway({self.caller!r})"

    @property
    def orgs(self) -> list[str]:
        """The pay orgs the gateway can reach."""
        return list(self.gateway.orgs)

    def send(self, request: ChannelRequest, notify_url: str) -> ChannelAck:
        """Send ``request`` to its pay org (never retried: a second send is a second
        charge unless the channel deduplicates it)."""
        org = request.pay_org_no
        return self._call(org, lambda: self.gateway.send(request, notify_url))

    def query(self, org: str, channel_txn_no: str) -> ChannelResult | None:
        """The settled result of a transaction at ``org``, or None while pending."""
        return self._call(org, lambda: self.gateway.query(org, channel_txn_no))

    def query_status(self, org: str, channel_txn_no: str) -> ChannelStatus:
        """The raw status of a transaction at ``org``."""
        return self._call(org, lambda: self.gateway.query_status(org, channel_txn_no))

    def statement(self, org: str, day: date) -> list[StatementLine]:
        """``org``'s statement for UTC ``day``."""
        return self._call(org, lambda: self.gateway.statement(org, day))

    def _call(self, org: str, fn: Callable[[], T]) -> T:
        if self.guard is None:
            return fn()
        resource = f"channel.{org}"

        def attempt() -> tuple[T | None, ChannelRejected | None]:
            try:
                return fn(), None
            except ChannelRejected as exc:  # an answer: the channel is up
                return None, exc

        try:
            result, rejected = self.guard.call(resource, attempt, caller=self.caller)
        except RateLimited as exc:
            raise refused(resource, "blocked") from exc
        except UnknownResource as exc:  # the map lost the edge: say so, loudly
            raise ChannelUnavailable(
                f"the dependency map has no edge {self.caller} -> {resource}", resource=resource
            ) from exc
        except DependencyFailed as exc:
            if exc.reason in REFUSALS:
                raise refused(resource, exc.reason) from exc
            cause = exc.__cause__
            if isinstance(cause, PayCoreError):
                raise cause from None  # the client's own error, as without a guard
            raise ChannelUnavailable(
                f"{resource} failed ({exc.reason})", resource=resource, reason=exc.reason
            ) from exc
        if rejected is not None:
            raise rejected
        return cast(T, result)  # None only with a 4xx, raised above


def refused(resource: str, reason: str) -> ChannelRefused:
    """The error of a call the guard kept from ``resource``."""
    return ChannelRefused(
        f"{resource} refused the call ({reason})", resource=resource, reason=reason
    )
