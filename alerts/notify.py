"""Notifiers: a signed generic JSON webhook, with retries (Alertmanager: :mod:`.alertmanager`).

Each notifier turns a :class:`~alerts.model.Notification` (one group of alerts) into
:class:`~alerts.model.Delivery` records: the engine stores them in
``alert_notifications`` (status, attempts, last error, payload). Transient failures
(connection errors, timeouts, 408/429/5xx) are retried with exponential backoff and
jitter; other 4xx answers are final. Secrets (the HMAC key, auth headers, URL
credentials or query strings) never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from backends.errors import HttpUnavailable
from backends.http import JsonHttp, Response

from .errors import NotifyError
from .model import Alert, Delivery, Notification

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Paywatch-Timestamp"
SIGNATURE_HEADER = "X-Paywatch-Signature"
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "." + body`` keyed with ``secret`` (as paycore)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time check of :func:`sign` (for receivers and tests)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower())


def redact_url(url: str) -> str:
    """``scheme://host:port/path``: no credentials, no query string (it may hold a token)."""
    try:
        u = urlsplit(url)
        port = f":{u.port}" if u.port else ""
    except ValueError:  # an unparsable URL (a bad port, say) is shown as nothing
        return "<url>"
    return f"{u.scheme}://{u.hostname or ''}{port}{u.path}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class Notifier(ABC):
    """Hands a notification to one or more receivers."""

    @abstractmethod
    def notify(self, notification: Notification) -> list[Delivery]:
        """Deliver ``notification``; one :class:`Delivery` per receiver. Never raises."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients the notifier owns."""


class HttpNotifier(Notifier):
    """POSTs a JSON body with retries; subclasses choose the body and headers."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 3.0,
        client: JsonHttp | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        headers: Mapping[str, str] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("retries and backoff must be >= 0, timeout > 0")
        self.url = url
        self.name = name
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._client = client
        self._owns_client = client is None
        self.sleep = sleep
        self.clock = clock
        self._headers = dict(headers or {})
        self.jitter = jitter

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={redact_url(self.url)!r})"

    @property
    def client(self) -> JsonHttp:
        if self._client is None:
            self._client = JsonHttp(timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    @abstractmethod
    def body(self, notification: Notification) -> bytes: ...

    def headers(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", **self._headers}

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with "equal jitter": between half and all of the step."""
        step = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        wait = step / 2 + self.jitter() * step / 2
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_backoff))
        return wait

    def notify(self, notification: Notification) -> list[Delivery]:
        return [self.send(notification)]

    def send(self, notification: Notification) -> Delivery:
        try:
            body = self.body(notification)
        except Exception as exc:  # noqa: BLE001 - a bad alert must not stop the engine
            return Delivery(self.name, "failed", 0, f"cannot build payload: {exc!r}"[:500])
        last_error = ""
        attempt = 0
        for attempt in range(1, self.retries + 2):
            retry_after: float | None = None
            try:
                resp = self.client.post(
                    self.url, content=body, headers=self.headers(body), timeout=self.timeout
                )
            except HttpUnavailable as exc:
                last_error = self._error(exc)
            else:
                if resp.ok:
                    return Delivery(self.name, "sent", attempt, last_error, body.decode())
                last_error = f"HTTP {resp.status}"
                if resp.status not in RETRYABLE:
                    log.warning("notify %s: %s, not retried", self.name, last_error)
                    break
                retry_after = _retry_after(resp)
            log.warning(
                "notify %s attempt %d/%d failed: %s",
                self.name,
                attempt,
                self.retries + 1,
                last_error,
            )
            if attempt <= self.retries:
                self.sleep(self.delay(attempt, retry_after))
        return Delivery(self.name, "failed", attempt, last_error, body.decode())

    def deliver(self, notification: Notification) -> Delivery:
        """:meth:`send`, raising :class:`NotifyError` if it was not delivered."""
        d = self.send(notification)
        if d.status != "sent":
            raise NotifyError(
                f"{self.name}: not delivered after {d.attempts} attempt(s): {d.last_error}"
            )
        return d

    def _error(self, exc: HttpUnavailable) -> str:
        """``no answer: <urllib3 error class>`` or ``timed out after <n>s`` (no URL)."""
        return str(exc).replace(self.url, redact_url(self.url))[:500]


def _retry_after(resp: Response) -> float | None:
    try:
        return float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _alert_json(a: Alert) -> dict[str, Any]:
    return {
        "fingerprint": a.fingerprint,
        "rule": a.rule,
        "status": a.state,
        "severity": a.severity,
        "labels": a.labels,
        "annotations": a.annotations,
        "value": a.value,
        "starts_at": a.fired_at if a.fired_at is not None else a.active_since,
        "ends_at": a.resolved_at if a.state == "resolved" else None,
    }


class WebhookNotifier(HttpNotifier):
    """Generic JSON webhook, signed like paycore's channel traffic.

    Body: ``{"version": "1", "status", "group_key", "group_labels", "alerts": [...]}``.
    Headers: ``X-Paywatch-Timestamp`` (Unix seconds) and ``X-Paywatch-Signature``, the
    hex HMAC-SHA256 of ``timestamp + "." + body`` keyed with ``secret``; a fresh
    timestamp and signature on every attempt.
    """

    def __init__(self, url: str, secret: str, *, name: str = "webhook", **kw: Any) -> None:
        if not secret:
            raise ValueError("a webhook needs a signing secret")
        super().__init__(url, name=name, **kw)
        self._secret = secret

    def body(self, notification: Notification) -> bytes:
        doc = {
            "version": "1",
            "status": notification.status,
            "group_key": notification.group_key,
            "group_labels": notification.group_labels,
            "receiver": self.name,
            "at": notification.at,
            "alerts": [_alert_json(a) for a in notification.alerts],
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    def headers(self, body: bytes) -> dict[str, str]:
        ts = str(int(self.clock()))
        sig = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(self._secret, ts, body)}
        return {**super().headers(body), **sig}


class MultiNotifier(Notifier):
    """Sends every notification to each of several notifiers."""

    def __init__(self, notifiers: Iterable[Notifier]) -> None:
        self.notifiers = list(notifiers)

    def notify(self, notification: Notification) -> list[Delivery]:
        out: list[Delivery] = []
        for n in self.notifiers:
            try:
                out.extend(n.notify(notification))
            except Exception as exc:  # noqa: BLE001 - one broken receiver must not stop others
                out.append(
                    Delivery(
                        getattr(n, "name", type(n).__name__), "failed", 0, f"{type(exc).__name__}"
                    )
                )
        return out

    def close(self) -> None:
        for n in self.notifiers:
            n.close()
