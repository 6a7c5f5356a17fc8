"""The API runs its sync endpoints on a bounded number of threads (``ApiConfig.threads``,
``PAYWATCH_API_THREADS``): more only add GIL hand-offs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from paycore.api import ApiConfig, create_app


def _probe(seen: dict[str, int]) -> Callable[[FastAPI], None]:
    """An extra sync route that records how many of its calls run at once."""
    lock = threading.Lock()

    def install(app: FastAPI) -> None:
        @app.get("/probe")
        def probe() -> dict[str, int]:
            with lock:
                seen["now"] += 1
                seen["most"] = max(seen["most"], seen["now"])
            time.sleep(0.05)
            with lock:
                seen["now"] -= 1
            return {"ok": 1}

    return install


@pytest.mark.parametrize("threads", [2, 5])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sync_endpoints_run_on_at_most_the_configured_threads(core, threads: int) -> None:
    seen = {"now": 0, "most": 0}
    app = create_app(core, ApiConfig(threads=threads, extra_routes=[_probe(seen)]))
    with TestClient(app) as client, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: client.get("/probe").status_code, range(12)))
    assert answers == [200] * 12
    assert seen["most"] == threads
