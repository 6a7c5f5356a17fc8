"""Merchant notification receivers: verify paywatch's signed notifications, fail some.

:class:`ReceiverServer` is a small threaded HTTP server standing in for the merchants'
``notify_url`` endpoints (any path, e.g. ``/notify/shop``). Each POST must carry a
valid ``X-Paywatch-Signature`` (see :mod:`paycore.notify.delivery`) under the secret of
the merchant behind the path (``path_secrets``; the platform's shared key for a merchant
without one): a bad one is answered 401. Of the good ones a configurable fraction is
failed on purpose, with a 500 or by answering only after the sender's timeout, so
delivery retries and the outbox backlog get exercised. Accepted events are recorded
once per event id (a merchant must dedupe: delivery is at least once); the
``on_event`` hook sees each event id once, which is the merchant's exactly-once effect.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from paycore.notify.signing import verify_notification
from paycore.notify.wire import EVENT_ID_HEADER

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class ReceivedEvent:
    """One notification as the merchant accepted it (the first delivery of its id)."""

    event_id: str
    event_type: str
    path: str
    data: dict[str, Any]
    received_at: float


@dataclass
class ReceiverStats:
    """Counters since start."""

    accepted: int = 0  #: distinct event ids answered 200
    duplicates: int = 0  #: deliveries of an event id already accepted (answered 200 again)
    failed_500: int = 0  #: failed on purpose with a 500
    failed_timeout: int = 0  #: failed on purpose by answering after the sender gave up
    bad_signature: int = 0  #: answered 401
    malformed: int = 0  #: answered 400


class ReceiverServer:
    """A threaded HTTP server that verifies and records merchant notifications.

    ``failure_ratio`` of the correctly signed requests fail: ``timeout_share`` of
    those by holding the answer ``timeout_s`` seconds (longer than the sender's 3 s
    timeout), the rest with a 500. ``port=0`` picks a free port (see :attr:`port`).
    """

    def __init__(
        self,
        secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        failure_ratio: float = 0.0,
        timeout_share: float = 0.25,
        timeout_s: float = 4.0,
        seed: int | None = None,
        on_event: Callable[[ReceivedEvent], None] | None = None,
        path_secrets: Mapping[str, str] | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the notification secret is required to verify signatures")
        if not 0.0 <= failure_ratio <= 1.0 or not 0.0 <= timeout_share <= 1.0:
            raise ValueError("failure_ratio and timeout_share must be in [0, 1]")
        self.secret = secret
        self.path_secrets = dict(path_secrets or {})  #: notify path -> merchant's own secret
        self.failure_ratio, self.timeout_share, self.timeout_s = (
            failure_ratio,
            timeout_share,
            timeout_s,
        )
        self.on_event = on_event
        self.stats = ReceiverStats()
        self.events: dict[str, ReceivedEvent] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _QuietServer((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL (``http://host:port``)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> ReceiverServer:
        """Serve on a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="sim-receiver", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (held answers are released) and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()

    def received(self, event_type: str | None = None) -> list[ReceivedEvent]:
        """The accepted events (one per event id), optionally of one type."""
        with self._lock:
            events = list(self.events.values())
        return [e for e in events if event_type is None or e.event_type == event_type]

    # -- one request (called from the handler's thread) ---------------------------------
    def handle(self, path: str, headers: Any, body: bytes) -> int:
        """Decide the answer to one POST; returns the HTTP status to send."""
        secret = self.path_secrets.get(path.split("?", 1)[0], self.secret)
        if not verify_notification(secret, headers, body):
            with self._lock:
                self.stats.bad_signature += 1
            return 401
        try:
            doc = json.loads(body)
            event_id = str(doc["event_id"])
            event_type = str(doc["event_type"])
            data = dict(doc.get("data") or {})
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.stats.malformed += 1
            return 400
        if headers.get(EVENT_ID_HEADER) not in (None, event_id):
            with self._lock:
                self.stats.malformed += 1
            return 400
        with self._lock:
            fail = self._rng.random() < self.failure_ratio
            hold = fail and self._rng.random() < self.timeout_share
        if hold:
            with self._lock:
                self.stats.failed_timeout += 1
            self._stop.wait(self.timeout_s)  # the sender gives up first: not delivered
            return 500
        if fail:
            with self._lock:
                self.stats.failed_500 += 1
            return 500
        event = ReceivedEvent(event_id, event_type, path, data, time.time())
        with self._lock:
            first = event_id not in self.events
            if first:
                self.events[event_id] = event
                self.stats.accepted += 1
            else:
                self.stats.duplicates += 1
        if first and self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a broken hook must not fail the delivery
                log.exception("receiver on_event hook failed")
        return 200


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a sender that gave up on a held answer resets the connection: expected, not news
        log.debug("receiver connection from %s ended abruptly", client_address)


def _handler_for(receiver: ReceiverServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def do_POST(self) -> None:  # noqa: N802 - the http.server naming
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(413)
                return
            body = self.rfile.read(length) if length else b""
            self._answer(receiver.handle(self.path, self.headers, body))

        def _answer(self, status: int) -> None:
            payload = b'{"ok":true}' if status == 200 else b'{"ok":false}'
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the sender gave up (a held answer): nothing to tell it
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return None  # quiet: the stats say what happened

    return Handler
