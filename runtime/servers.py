"""HTTP servers on threads (uvicorn), for the processes that run several parts."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """A uvicorn server on a thread: ``start`` returns once it listens, ``stop`` joins it."""

    def __init__(self, app: Any, host: str, port: int, name: str) -> None:
        import uvicorn  # only the processes that serve pay for it

        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, log_config=None
        )
        self.name, self.server = name, uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start (is the port in use?)")
            time.sleep(0.05)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
