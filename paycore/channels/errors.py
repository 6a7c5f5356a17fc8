"""Errors of the channel gateway.

They derive from the pay core's tree (:mod:`paycore.errors`), so an API maps them
like every other error. Messages name the pay org and the operation, never a
secret, a signature or a card number.
"""

from __future__ import annotations

from ..errors import AuthenticationFailed, DependencyUnavailable, PayCoreError


class ChannelUnavailable(DependencyUnavailable):
    """The channel did not answer in time, answered 5xx, or answered garbage.

    The outcome of the call is unknown: the channel may still have processed it,
    so the order stays *processing* until a callback or an active query settles it.
    """

    code = "channel_unavailable"


class ChannelRefused(ChannelUnavailable):
    """The call was not sent: the guard refused it (``channel.<org>`` degraded, its breaker
    open, a limit) or the channel front's per-org cap was full (``bulkhead_full``).

    ``details``: ``resource`` (``channel.<org>``) and ``reason``. Nothing reached the
    channel, so the item stays as it was and a later run asks again."""

    code = "channel_refused"


class ChannelRejected(PayCoreError):
    """The channel refused the request (a 4xx answer): it was not processed."""

    code = "channel_rejected"
    http_status = 502


class UnknownChannel(ChannelRejected):
    """No channel is configured for this pay org."""

    code = "unknown_channel"
    http_status = 422


class InvalidSignature(AuthenticationFailed):
    """A callback's signature is missing, wrong, or its timestamp is stale."""

    code = "invalid_signature"
