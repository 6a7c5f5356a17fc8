"""What the live-map tests share: processes whose real guards record through CoreMetrics and
sample into PostgreSQL's metric store (as the API's and the worker's samplers do), and
merchants paying through the real pay core."""

from __future__ import annotations

import contextlib
import time

import pytest

from stability.errors import DependencyFailed

pytest.importorskip("streamlit")


class Process:
    """One platform process: its registry, CoreMetrics, a real Guard over ``dmap`` and the
    sampler writing into ``engine``'s metric store under ``instance``."""

    def __init__(self, engine, dmap, instance: str) -> None:
        from prometheus_client import CollectorRegistry

        from collectors import CoreMetrics, Sampler, TimeSeriesStore
        from stability.breaker import BreakerConfig
        from stability.guard import Guard

        self.registry = CollectorRegistry()
        self.metrics = CoreMetrics(self.registry)
        # a window longer than the test's calls: the breaker stays closed and the map
        # shows the error ratio itself (an open breaker is red for a reason of its own)
        config = BreakerConfig(window_size=1000, min_calls=1000)
        self.guard = Guard(dmap, recorders=[self.metrics], breaker_config=config)
        self.sampler = Sampler(self.registry, TimeSeriesStore(engine), instance=instance)

    def calls(self, resource: str, ok: int, failed: int, caller: str = "link.pay") -> None:
        """``ok`` passing and ``failed`` failing guarded calls, interleaved."""

        def boom() -> None:
            raise ConnectionError("channel says no")

        total = ok + failed
        for i in range(total):
            fail = (i * failed) // total != ((i + 1) * failed) // total
            with contextlib.suppress(DependencyFailed):
                self.guard.call(resource, boom if fail else (lambda: None), caller=caller)

    def sample(self, at: float) -> None:
        self.sampler.sample_once(now=at)


def start(engine, dmap, *instances: str, at: float | None = None) -> list[Process]:
    """Processes with a first (zero) sample a minute before ``at``."""
    t = time.time() if at is None else at
    procs = [Process(engine, dmap, name) for name in instances]
    for proc in procs:
        proc.sample(t - 60)
    return procs


def merchants_paying(db_url: str, plan: dict[str, tuple[list[str], str, int]], metrics=None):
    """Onboard merchants (name -> (granted orgs, paying org, payments)) and let each pay
    through the real pay core; returns name -> merchant id."""
    from paycore import CreateTrade, PayCore, PayRequest, PayTool

    core = PayCore(db_url, metrics=metrics)
    ids = {}
    try:
        for name, (orgs, org, n) in plan.items():
            ob = core.merchants.onboard(name, products=[("goods", "physical")], pay_orgs=orgs)
            mid = ids[name] = ob.merchant.merchant_id
            for k in range(n):
                t = core.trades.create(
                    mid,
                    CreateTrade(
                        trade_type="instant",
                        amount=1000,
                        currency="CNY",
                        user_id="u1",
                        order_type="goods",
                        sub_type="physical",
                        pay_org_no=org,
                        out_trade_no=f"{name}x{k}",
                    ),
                )
                core.payments.pay(mid, PayRequest(t.out_trade_no, (PayTool("channel", 1000),)))
    finally:
        core.lock.close()
        core.db.dispose()
    return ids
