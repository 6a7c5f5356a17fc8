"""A small in-process TCP fault proxy for drills on Redis and the database.

The platform's ``PAYWATCH_REDIS_URL`` / database URL is pointed at the proxy (see
:func:`proxied_url`); the proxy forwards bytes to the real server and applies its
knobs: ``latency_ms`` added before each chunk sent towards the server (each query or
command pays it once), and ``down`` (every open connection is cut and new ones are
closed at once, as when the server dies). Threads, no asyncio: it runs beside
uvicorn's loop and APScheduler without sharing either.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)
CHUNK = 64 * 1024


@dataclass
class ProxyKnobs:
    """The faults a :class:`FaultProxy` applies now."""

    latency_ms: float = 0.0
    down: bool = False


class FaultProxy:
    """Forwards TCP connections from ``(host, port)`` to ``upstream``, with faults."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        name: str = "proxy",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.name = name
        self.upstream = upstream
        self.knobs = ProxyKnobs()
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        host, port = self._listener.getsockname()[:2]
        self.address: tuple[str, int] = (str(host), int(port))
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = self.refused = 0

    def start(self) -> FaultProxy:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._accept_loop, name=f"fault-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and cut every connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._listener.close()
        self._cut_all()

    # -- knobs -----------------------------------------------------------------------------
    def set(self, *, latency_ms: float | None = None, down: bool | None = None) -> ProxyKnobs:
        """Change the knobs; going down cuts the open connections at once."""
        if latency_ms is not None:
            if not 0 <= latency_ms <= 60_000:
                raise ValueError("latency_ms must be in [0, 60000]")
            self.knobs.latency_ms = float(latency_ms)
        if down is not None:
            self.knobs.down = bool(down)
            if down:
                self._cut_all()
        log.info("fault proxy %s: %s", self.name, self.knobs)
        return self.knobs

    def reset(self) -> None:
        """Back to a transparent proxy."""
        self.set(latency_ms=0.0, down=False)

    # -- forwarding ------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.knobs.down:
                self.refused += 1
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            self.accepted += 1
            with self._lock:
                self._conns.update((client, server))
            for src, dst, slow in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump,
                    args=(src, dst, slow),
                    daemon=True,
                    name=f"fault-{self.name}-pump",
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, towards_server: bool) -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(CHUNK)
                if not data or self.knobs.down:
                    break
                if towards_server and self.knobs.latency_ms > 0:
                    self._stop.wait(self.knobs.latency_ms / 1000.0)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                _close(s)
                with self._lock:
                    self._conns.discard(s)

    def _cut_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for s in conns:
            _close(s)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


def upstream_of(url: str, default_port: int) -> tuple[str, int] | None:
    """The (host, port) a network URL connects to; None for file/embedded URLs."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite") or not parts.hostname:
        return None
    return parts.hostname, parts.port or default_port


def proxied_url(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host and port replaced by the proxy's (credentials kept)."""
    parts = urlsplit(url)
    host, port = proxy.address
    creds = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{creds}{host}:{port}"))
