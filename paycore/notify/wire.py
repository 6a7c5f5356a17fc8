"""What one notification looks like on the wire: its body and its event id header, and
the bounded reason a failed POST is counted under."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ..tracing import split_kept

EVENT_ID_HEADER = "X-Paywatch-Event-Id"


def envelope(event_id: str, event_type: str, created_at: datetime, payload: str) -> bytes:
    """The POST body of one notification (``payload`` is the stored JSON text)."""
    body = {
        "event_id": event_id,
        "event_type": event_type,
        "created_at": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": split_kept(json.loads(payload))[0],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def failure_reason(error: str) -> str:
    """A bounded metric reason: ``http_5xx``/``http_4xx``, ``timeout`` or the error class."""
    if error.startswith("HTTP "):
        return f"http_{error[5]}xx"
    return error[:32] or "error"
