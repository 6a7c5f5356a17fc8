"""HMAC-SHA256 signing of channel requests and callbacks.

The signature is the hex HMAC-SHA256, keyed with the pay org's secret, of
``timestamp + "." + body`` (the raw body bytes; empty for a ``GET``). The timestamp
is Unix seconds and travels in :data:`TIMESTAMP_HEADER`, the signature in
:data:`SIGNATURE_HEADER`. A verifier rejects timestamps further than ``tolerance``
seconds from its clock, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Paywatch-Timestamp"
SIGNATURE_HEADER = "X-Paywatch-Signature"
DEFAULT_TOLERANCE = 300.0

_TIMESTAMP = re.compile(r"\d{1,12}(\.\d{1,9})?")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp.encode() + b"." + body`` keyed with ``secret``."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """True if ``signature`` signs ``body`` at ``timestamp`` and the timestamp is fresh.

    Rejects (returns False, never raises) a non-numeric timestamp, one more than
    ``tolerance`` seconds away from ``now`` (default: the current time), and any
    signature that does not match; the comparison is constant-time.
    """
    if not secret or not timestamp or not signature:
        return False
    if not _TIMESTAMP.fullmatch(timestamp):
        return False
    ts = float(timestamp)
    current = time.time() if now is None else now
    if not math.isfinite(ts) or abs(current - ts) > tolerance:
        return False
    expected = sign(secret, timestamp, body).encode()
    given = signature.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(expected, given)


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The timestamp and signature headers for sending ``body`` now (or at ``now``)."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def header_value(headers: Mapping[str, str], name: str) -> str:
    """``headers[name]`` from case-insensitive headers (Starlette's, httpx's) or a plain
    dict (canonical or lower-case name); empty when absent."""
    return headers.get(name) or headers.get(name.lower()) or ""


def verify_headers(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """:func:`verify` with the timestamp and signature taken from ``headers``.

    ``headers`` should be case-insensitive (Starlette's and httpx's are); a plain
    dict is looked up with the canonical names and their lower-case forms.
    """
    return verify(
        secret,
        header_value(headers, TIMESTAMP_HEADER),
        body,
        header_value(headers, SIGNATURE_HEADER),
        now=now,
        tolerance=tolerance,
    )
