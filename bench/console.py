"""Console bench: the overview page's server-side render time over 30 days of metrics.

The data, in a throw-away migrated PostgreSQL schema, as the product leaves it:

* older history from ``bench/metrics.py``'s :func:`fill`: 30 days of 1-hour rollups and
  2 days of 1-minute rollups of 20 link-request series and 98 latency-bucket series;
* the last ``--hours`` (default 6 h, the raw retention) as the running processes write
  them: per instance (``--instances``, default 2: API replicas) a real
  :class:`collectors.CoreMetrics` registry fed with simulated pay traffic (every step,
  three pay orgs, errors, timeouts, guard outcomes with some degraded/fallback calls), read
  by a :class:`collectors.Sampler` every 5 s of simulated time into the
  :class:`collectors.TimeSeriesStore`, then folded with ``store.rollup`` as the sampler's
  thread does;
* a few firing, pending and resolved alerts.

``overview_ms``: ``streamlit.testing.v1.AppTest`` runs ``console/app.py`` signed in as a
viewer, which opens the Overview page (alerts, links, sparklines, channel health, guard
fallbacks, backlogs): the whole server-side script run, median of ``--runs``
after a warm-up. The same render over the empty schema (before seeding) is the
reference: ``data_ratio = overview_ms / empty_overview_ms``. The breakdown times the read
functions of ``console.views.overview`` the page calls, one at a time. Target < 1000 ms.
``metrics_down_overview_ms``: the same seeded page with the metrics source unreachable
(Prometheus at a closed port): alerts and backlogs drawn, the three metrics panels say so.

Progress goes to stderr; the last line of stdout is one JSON object, also written to
``bench/results/console.json``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from collectors.store import RAW_RETENTION

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def _path_without_bench() -> list[str]:
    return [p for p in sys.path if Path(p or ".").resolve() != BENCH]


if __name__ == "console":
    # `python bench/<any>.py` puts bench/ first on sys.path, so `import console` there finds
    # this file before the console package: stand aside for the package.
    _saved = sys.path[:]
    del sys.modules["console"]
    sys.path[:] = _path_without_bench()
    try:
        sys.modules["console"] = importlib.import_module("console")
    finally:
        sys.path[:] = _saved


@cache
def bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` loaded by path (bench/ is off ``sys.path`` while this runs)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metrics_bench() -> ModuleType:
    """``bench/metrics.py`` (its ``fill`` seeds the 30-day history; ``timed_ms``)."""
    return bench_module("metrics")


APP = ROOT / "console" / "app.py"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).resolve().parent / "results" / "console.json"
TARGET_MS = 1000.0


def log(msg: str) -> None:
    print(f"[console] {msg}", file=sys.stderr, flush=True)


@contextmanager
def bench_schema(url: str) -> Iterator[str]:
    """A fresh, migrated schema; yields the URL scoped to it. Dropped afterwards."""
    with bench_module("_schema").scratch_schema(url, "bench_console", log) as (_, scoped):
        yield scoped


# -- timing ------------------------------------------------------------------------------------
def median_ms(fn: Callable[[], object], runs: int) -> float:
    return metrics_bench().timed_ms(fn, runs)


def viewer(url: str) -> None:
    """The viewer the page signs in as (the console reads the user's row on every run)."""
    import secrets

    from console.auth import create_user

    engine = sa.create_engine(url)
    try:
        create_user(engine, "vera", secrets.token_urlsafe(16), "viewer")
    finally:
        engine.dispose()


class OverviewPage:
    """``console/app.py`` under AppTest, signed in as a viewer: the Overview page."""

    def __init__(self) -> None:
        from streamlit.testing.v1 import AppTest

        self.at = AppTest.from_file(str(APP), default_timeout=120)
        self.at.session_state["user"] = {"username": "vera", "role": "viewer"}

    def render(self) -> Any:
        at = self.at.run()
        if at.exception:
            raise RuntimeError(f"overview raised: {at.exception}")
        return at

    def check(self, *, seeded: bool, metrics_down: bool = False) -> None:
        at = self.render()
        subheaders = [s.value for s in at.subheader]
        for part in (
            "Active alerts",
            "Core links",
            "Channel health",
            "Guard fallbacks",
            "Backlogs",
        ):
            if part not in subheaders:
                raise RuntimeError(f"overview lacks {part}: {subheaders}")
        down = [w.value for w in at.warning if "metrics source is unavailable" in w.value]
        if len(down) != (3 if metrics_down else 0):
            raise RuntimeError(f"metrics panels down: {down} (metrics_down={metrics_down})")
        if seeded:
            tables = [d.value for d in at.dataframe]
            if not metrics_down:
                guard = next((t for t in tables if "degraded" in t.columns), None)
                if guard is None or "risk" not in list(guard["resource"]):
                    raise RuntimeError("the seeded degraded risk calls are not on the overview")
            alerts = next((t for t in tables if "rule" in t.columns), None)
            rows = [m for m in at.markdown if "-badge[" in str(m.value)]
            if alerts is None or len(alerts) != 5 or len(rows) != 5:
                raise RuntimeError("expected the 5 seeded firing/pending alerts")


def built_platforms() -> list[Any]:
    """The console platforms the page built (one per metrics source)."""
    from console.pages import platform

    out = [platform()]
    prom = os.environ.pop("PAYWATCH_PROMETHEUS_URL", None)
    out.append(platform())
    if prom is not None:
        os.environ["PAYWATCH_PROMETHEUS_URL"] = prom
    return out


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def breakdown(runs: int) -> dict[str, float]:
    """The page's reads one at a time, on the console's own platform (its store)."""
    from alerts.silences import SilenceStore
    from console.pages import platform
    from console.views import overview as ov

    p = platform()
    q, engine, orgs = p.observability.query, p.db.engine, p.settings.pay_orgs
    now = time.time()

    def sparklines_per_step() -> None:  # before: four range queries per step
        for step in ov.STEPS:
            ov.link_series(q, step, start=now - 1800, end=now, points=30)

    rates = ov.link_rates(q, start=now - 1800, end=now, points=30)
    for step in ov.STEPS:  # the page's one query gives what link_series gave per step
        old = ov.link_series(q, step, start=now - 1800, end=now, points=30)["rate"]
        if not rates[step] or [v for _, v in rates[step]] != [v for _, v in old]:
            raise RuntimeError(f"link_rates and link_series differ for {step}")

    def figures() -> None:
        for step in ov.STEPS:
            ov.sparkline(rates[step]).to_plotly_json()

    parts: dict[str, Callable[[], object]] = {
        "link_stats_ms": lambda: ov.link_stats(q, now),
        "channel_health_ms": lambda: ov.channel_health(q, now, orgs),
        "guard_fallbacks_ms": lambda: ov.guard_fallbacks(q, now),
        "overview_reads_ms": lambda: ov.overview(q, now, pay_orgs=orgs),
        "sparkline_rates_ms": lambda: ov.link_rates(q, start=now - 1800, end=now, points=30),
        "sparkline_series_per_step_ms": sparklines_per_step,
        "sparkline_figures_ms": figures,
        "active_alerts_ms": lambda: ov.active_alerts(engine),
        "silences_ms": lambda: SilenceStore(engine).active(),
        "backlogs_ms": lambda: ov.backlogs(engine),
    }
    return {k: round(median_ms(fn, runs), 2) for k, fn in parts.items()}


def seed(url: str, args: argparse.Namespace) -> dict[str, int]:
    """The seeded data: the recent raw samples and alerts, then 30 days of history; row
    counts."""
    seeding = bench_module("_console_seed")
    now = time.time()
    t0 = time.perf_counter()  # recent first: rollup() folds from the newest rollup
    recent = seeding.seed_recent(url, now, args.hours, args.instances, log)
    seeding.seed_alerts(url, now)
    log(f"recent {args.hours:g} h x {args.instances}: {recent} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    engine = sa.create_engine(url)
    counts = metrics_bench().fill(engine, now)
    engine.dispose()
    log(f"history (bench/metrics.py fill): {counts} in {time.perf_counter() - t0:.1f} s")
    return {**counts, **recent}


def measure(page: OverviewPage, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The page empty, seeded (and its reads one at a time), and with the metrics source
    down."""
    page.check(seeded=False)  # warm-up: builds the console's platform
    empty_ms = median_ms(page.render, args.runs)
    log(f"empty schema: overview {empty_ms:.0f} ms")
    rows = seed(url, args)
    page.check(seeded=True)
    samples = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        page.render()
        samples.append((time.perf_counter() - t0) * 1000)
    overview_ms = statistics.median(samples)
    log(f"overview {overview_ms:.0f} ms (runs {[round(s) for s in samples]})")
    parts = breakdown(args.runs)
    log(f"breakdown {parts}")
    # the metrics source unreachable (a closed port): the page still draws its
    # database panels and says which ones are down, as fast
    os.environ["PAYWATCH_PROMETHEUS_URL"] = f"http://127.0.0.1:{closed_port()}"
    page.check(seeded=True, metrics_down=True)
    outage_ms = median_ms(page.render, args.runs)
    log(f"metrics source down: overview {outage_ms:.0f} ms")
    return {
        "overview_ms": overview_ms,
        "empty_ms": empty_ms,
        "samples": samples,
        "outage_ms": outage_ms,
        "parts": parts,
        "rows": rows,
    }


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` in a scratch schema with the console configured for it."""
    with bench_schema(url) as scoped, tempfile.TemporaryDirectory(prefix="pw-console-") as var:
        os.environ["PAYWATCH_DATABASE_URL"] = scoped
        os.environ["PAYWATCH_VAR_DIR"] = var
        for name in ("PAYWATCH_PROMETHEUS_URL", "PAYWATCH_REDIS_URL"):
            os.environ.pop(name, None)
        viewer(scoped)
        page = OverviewPage()
        try:
            return measure(page, scoped, args)
        finally:
            for built in {id(b): b for b in built_platforms()}.values():
                built.close()
            os.environ.pop("PAYWATCH_PROMETHEUS_URL", None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7, help="timed page renders (after a warm-up)")
    p.add_argument(
        "--hours",
        type=float,
        default=RAW_RETENTION / 3600,
        help="hours of raw 5 s samples (the raw retention)",
    )
    p.add_argument("--instances", type=int, default=2, help="processes sampling")
    args = p.parse_args(argv)
    url = os.environ.get("PAYWATCH_BENCH_DATABASE_URL", DEFAULT_URL)
    sys.path[:] = _path_without_bench()  # `console` is the package, not this file
    m = run(url, args)
    overview_ms, empty_ms = m["overview_ms"], m["empty_ms"]
    result = {
        "overview_ms": round(overview_ms, 1),
        "empty_overview_ms": round(empty_ms, 1),
        "data_ratio": round(overview_ms / empty_ms, 2) if empty_ms else None,
        "overview_runs_ms": [round(s, 1) for s in m["samples"]],
        "metrics_down_overview_ms": round(m["outage_ms"], 1),
        "breakdown": m["parts"],
        "rows": m["rows"],
        "hours_raw": args.hours,
        "instances": args.instances,
        "runs": args.runs,
        "meets_target": overview_ms < TARGET_MS,
        "target": {"overview_ms": f"< {TARGET_MS:.0f}"},
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
