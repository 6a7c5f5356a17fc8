"""The API runs the pay core's blocking calls on a bounded pool of its own threads
(``ApiConfig.threads``, ``PAYWATCH_API_THREADS``): more only add GIL hand-offs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from paycore.api import ApiConfig, create_app


def _slow_ping(core, seen: dict[str, int]) -> None:
    """Make the core's readiness check take 50 ms and record how many run at once (the
    real ping still runs: the database answers)."""
    lock, ping = threading.Lock(), core.db.ping

    def counted() -> bool:
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
            seen["threads"].add(threading.current_thread())
        time.sleep(0.05)
        try:
            return ping()
        finally:
            with lock:
                seen["now"] -= 1

    core.db.ping = counted


@pytest.mark.parametrize("threads", [2, 5])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_core_calls_run_on_at_most_the_configured_threads(core, threads: int) -> None:
    seen: dict = {"now": 0, "most": 0, "threads": set()}
    _slow_ping(core, seen)
    app = create_app(core, ApiConfig(threads=threads))
    with TestClient(app) as client, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: client.get("/readyz").status_code, range(12)))
    assert answers == [200] * 12
    assert seen["most"] == threads
    assert len(seen["threads"]) == threads
    assert threading.current_thread() not in seen["threads"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_thread_pool_lives_with_the_app(core) -> None:
    """A stopped app's threads are gone, and the app starts again with a new pool."""
    seen: dict = {"now": 0, "most": 0, "threads": set()}
    _slow_ping(core, seen)
    app = create_app(core, ApiConfig(threads=3))
    runs = []
    for _ in range(2):
        with TestClient(app) as client:
            assert client.get("/readyz").status_code == 200
        runs.append(set(seen["threads"]))
        seen["threads"].clear()
    assert all(len(threads) == 1 for threads in runs)
    assert not any(t.is_alive() for threads in runs for t in threads)
    assert runs[0] != runs[1]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_core_calls_work_when_the_host_skips_the_lifespan(core) -> None:
    """A host that never runs the app's lifespan (a TestClient outside ``with``) still
    gets the bounded pool."""
    seen: dict = {"now": 0, "most": 0, "threads": set()}
    _slow_ping(core, seen)
    client = TestClient(create_app(core, ApiConfig(threads=2)))
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.get("/readyz").status_code, range(6)))
    assert answers == [200] * 6
    assert seen["most"] <= 2 and len(seen["threads"]) <= 2
