"""Checking and reading a channel's signed result callback.

A callback is a JSON object ``{"pay_org_no", "channel_txn_no", "status", "amount",
"currency", "channel_ref", "kind"}`` signed like every channel message
(:mod:`.signing`). :func:`parse_callback` verifies the signature first and only then
reads the body, so an unsigned body is never even parsed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..errors import InvalidRequest
from .errors import InvalidSignature
from .port import ChannelResult
from .signing import DEFAULT_TOLERANCE, verify_headers


def parse_callback(
    pay_org_no: str,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ChannelResult:
    """The :class:`ChannelResult` in a callback from ``pay_org_no``'s channel.

    Raises :class:`InvalidSignature` (401) if the signature is missing, wrong or
    stale, and :class:`~paycore.errors.InvalidRequest` (422) if the signed body is
    malformed or names another pay org.
    """
    if not verify_headers(secret, headers, body, now=now, tolerance=tolerance):
        raise InvalidSignature("callback signature is missing, wrong or stale")
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidRequest("callback body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("callback body is not a JSON object")
    txn, status, amount = data.get("channel_txn_no"), data.get("status"), data.get("amount")
    currency, ref = data.get("currency"), data.get("channel_ref", "")
    if data.get("pay_org_no") != pay_org_no:
        raise InvalidRequest("callback names another pay org")
    if (
        not isinstance(txn, str)
        or not txn
        or status not in ("success", "failed")
        or isinstance(amount, bool)
        or not isinstance(amount, int)
        or amount < 0
        or not isinstance(currency, str)
        or not isinstance(ref, str)
    ):
        raise InvalidRequest("callback body is malformed")
    return ChannelResult(pay_org_no, txn, str(status), amount, currency, ref)
