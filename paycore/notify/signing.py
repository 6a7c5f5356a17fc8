"""Signatures of merchant notifications, and the helper a merchant verifies them with.

``X-Paywatch-Signature`` holds the hex HMAC-SHA256 of ``timestamp + "." + body``
(:func:`paycore.channels.signing.sign`) under each of the merchant's current
notification secrets, comma-separated: one value normally, two while a rotation's
overlap runs (the new secret's first). A merchant accepts the notification when any
value verifies under the secret it holds, and the timestamp
(``X-Paywatch-Timestamp``, Unix seconds) is within the tolerance (5 minutes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..channels.signing import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    header_value,
    sign,
    verify,
)

SEPARATOR = ","
MAX_SIGNATURES = 4  #: values beyond this many are ignored by the verifier


def notification_signature(keys: Sequence[str], timestamp: str, body: bytes) -> str:
    """The ``X-Paywatch-Signature`` value: one signature per key, in the keys' order."""
    if not keys:
        raise ValueError("a notification needs at least one signing key")
    return SEPARATOR.join(sign(key, timestamp, body) for key in keys)


def verify_notification(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """True if one of the notification's signatures is ``secret``'s over ``body`` and the
    timestamp is fresh (see :func:`paycore.channels.signing.verify`); never raises.

    ``headers`` should be case-insensitive (Starlette's, httpx's); a plain dict is looked
    up with the canonical names and their lower-case forms.
    """
    timestamp = header_value(headers, TIMESTAMP_HEADER)
    values = [v.strip() for v in header_value(headers, SIGNATURE_HEADER).split(SEPARATOR)]
    values = values[:MAX_SIGNATURES]
    return any(
        verify(secret, timestamp, body, v, now=now, tolerance=tolerance) for v in values if v
    )
