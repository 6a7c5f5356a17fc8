"""Detection bench: from a hard channel outage to the page in Alertmanager, for
paywatch's alert engine and for a real Prometheus loading the exported rules, in one run.

One embedded platform (sandbox, API, worker on threads over a throw-away PostgreSQL
schema) under steady simulated traffic (``--rate`` arrivals/s, Poisson); one real
Alertmanager; one real Prometheus (``prometheus``, 2.42 in Debian) scraping the API's
``/metrics`` and evaluating every ``--prom-interval`` s (15), posting to the same
Alertmanager (its alerts carry the external label ``evaluator="prometheus"``).

Both engines run **the shipped rules, unscaled** (``--factor 1``, the default):
paywatch's is the worker's own alert job as shipped (every 10 s over the embedded store
sampled every 5 s, notifying ``PAYWATCH_ALERTMANAGER_URL``), Prometheus loads
``paywatch rules export``'s text (``shipped_rules_file`` says whether it equals
``deploy/prometheus/paywatch-rules.yml``). The figure: per engine, the seconds from the
flip to the first active page-severity alert of the shipped rules naming SANDBOX_A
(label ``pay_org`` or ``resource=channel.SANDBOX_A``; in practice ``channel_down``), and
which alert it was. Their SLO burn rates are listed (``alerts_s``) but not the figure: on
the bench's fresh history a 1 h window holds minutes, so they page on the empty history.

Second figure (``burn_rate``): the SLO burn-rate page ``slo_channel_call_success_sandbox_a``
with windows x ``--burn-factor`` (0.1: the 1h/5m page pair becomes 6m/30s;
``runtime.drill_speed.scaled_rule``, renamed ``_fast``), loaded into both engines next
to the shipped rules at the same cadences, in the first round. At full windows it pages only
once the 1 h error ratio passes 14.4 % (~8.6 min after an hour of healthy traffic), for
either engine. ``--burn-factor 0`` leaves it out.

Each round: healthy traffic for ``--warmup`` s plus a random ``--jitter`` (so the flip
meets the engines' ticks at random phases), then the sandbox knob fails every call
to ``SANDBOX_A`` (``error_rate 1.0``); Alertmanager's ``/api/v2/alerts`` is polled every
0.25 s; then the knob is reset and the shipped pages naming SANDBOX_A (the SLO burn
rates aside) must resolve.

Prints one JSON object as the last line of stdout (also ``bench/results/detect.json``):
``paywatch_s`` and ``prometheus_s`` (median over rounds), their ``ratio`` (paywatch /
Prometheus), ``meets_target`` (paywatch pages in under 60 s and no later than
Prometheus), ``rules`` (what was loaded) and ``burn_rate`` (the same keys). Usage:
``python bench/detect.py [--rounds 1] [--factor 1] [--rate 6] [--warmup 30]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from _detect_procs import process, start_alertmanager, start_prometheus  # bench/
from _schema import scratch_schema  # bench/_schema.py

from alerts import AlertEngine, AlertmanagerNotifier, to_prometheus_rules
from alerts import default_rules as alert_rules
from alerts.burnrate import BurnRateRule
from runtime.drill_speed import scaled_rule
from runtime.embedded import EmbeddedOptions, EmbeddedPlatform
from runtime.rules_cli import SHIPPED_RULES, export_text
from runtime.servers import free_port
from runtime.settings import Settings
from simulator import SimConfig, Simulator, ensure_demo_merchants

ORG = "SANDBOX_A"
RESULTS = Path(__file__).resolve().parent / "results" / "detect.json"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_S = 60.0
TARGET_RATIO = 1.0
#: the worker's alert job and the embedded sampler as shipped (runtime/worker.py,
#: collectors.sampler.Sampler)
PAYWATCH_EVAL_S, PAYWATCH_SAMPLE_S = 10.0, 5.0
BURN_PAGE = f"slo_channel_call_success_{ORG.lower()}"


def log(msg: str) -> None:
    print(f"[detect] {msg}", file=sys.stderr, flush=True)


def burn_rules(pay_orgs: tuple[str, ...], factor: float) -> list[Any]:
    """The SLO burn-rate rules with windows x ``factor`` (renamed ``<rule>_fast``)."""
    if not factor:
        return []
    rules = alert_rules(pay_orgs)
    return [scaled_rule(r, factor) for r in rules if isinstance(r, BurnRateRule)]


def burn_jobs(am_url: str, factor: float) -> Callable[[Any], list[tuple[Any, float, str]]]:
    """An extra engine for the scaled burn rates, at the shipped alert job's cadence."""

    def build(platform: Any) -> list[tuple[Any, float, str]]:
        rules = burn_rules(platform.settings.pay_orgs, factor)
        if not rules:
            return []
        notifier = AlertmanagerNotifier(am_url, env="bench", resend_interval=60.0)
        engine = AlertEngine(
            platform.paycore.db.engine, platform.observability.query, rules, notifier=notifier
        )
        return [(engine.evaluate, PAYWATCH_EVAL_S, "alerts_burn_scaled")]

    return build


def names_org(labels: dict[str, str]) -> bool:
    return labels.get("pay_org") == ORG or labels.get("resource") == f"channel.{ORG}"


def pages(am_url: str) -> dict[str, dict[str, list[str]]]:
    """Per figure and engine, the active page alerts' names in Alertmanager: ``shipped``,
    the shipped rules' pages naming ORG but their SLO burn rates (on the bench's fresh
    history their 1 h windows hold minutes, so they page on that, not on the rules);
    ``slo``, those burn rates (listed, not a figure); ``burn``, the scaled burn-rate page."""
    resp = httpx.get(am_url + "/api/v2/alerts", params={"active": "true"}, timeout=5)
    resp.raise_for_status()
    out: dict[str, dict[str, list[str]]] = {
        "shipped": {"paywatch": [], "prometheus": []},
        "slo": {"paywatch": [], "prometheus": []},
        "burn": {"paywatch": [], "prometheus": []},
    }
    for a in resp.json():
        labels = a["labels"]
        name = labels.get("alertname", "")
        if labels.get("severity") != "page" or not names_org(labels):
            continue
        engine = "prometheus" if labels.get("evaluator") == "prometheus" else "paywatch"
        if not name.endswith("_fast"):
            out["slo" if name.startswith("slo_") else "shipped"][engine].append(name)
        elif name == f"{BURN_PAGE}_fast":
            out["burn"][engine].append(name)
    return out


def one_round(sandbox: Any, am_url: str, figures: list[str], timeout: float) -> dict[str, Any]:
    """Flip the knob, time each figure's page per engine, reset, wait until all resolve."""
    before = pages(am_url)
    if any(before[f][e] for f in figures for e in ("paywatch", "prometheus")):
        raise SystemExit(f"a page is active before the outage: {before}")
    sandbox.put(ORG, {"error_rate": 1.0})
    flipped = time.monotonic()
    seen: dict[str, dict[str, float | None]] = {
        f: {"paywatch": None, "prometheus": None} for f in figures
    }
    first: dict[str, str] = {}
    each: dict[str, dict[str, float]] = {"paywatch": {}, "prometheus": {}}
    try:
        while time.monotonic() - flipped < timeout and any(
            None in v.values() for v in seen.values()
        ):
            now = pages(am_url)
            t = round(time.monotonic() - flipped, 2)
            for key in ("shipped", "slo"):
                for engine, names in now[key].items():
                    for name in names:
                        each[engine].setdefault(name, t)
            for f in figures:
                for engine, names in now[f].items():
                    if names and seen[f][engine] is None:
                        seen[f][engine] = round(time.monotonic() - flipped, 2)
                        if f == "shipped":
                            first[engine] = sorted(names)[0]
                        log(f"{f}: {engine} paged after {seen[f][engine]} s ({names})")
            time.sleep(0.25)
    finally:
        sandbox.put(ORG, {"error_rate": 0.0})
    reset = time.monotonic()
    deadline = reset + timeout * 2
    while any(pages(am_url)["shipped"].values()):
        if time.monotonic() > deadline:
            raise SystemExit("the pages did not resolve after the knob was reset")
        time.sleep(1.0)
    log(f"resolved {time.monotonic() - reset:.1f} s after the reset")
    resolved = round(time.monotonic() - reset, 2)
    return {**seen, "first_alert": first, "alerts_s": each, "resolved_s": resolved}


def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    figures = ["shipped"] + (["burn"] if args.burn_factor else [])
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="detect-") as tmp_dir:
        tmp = Path(tmp_dir)
        _, scoped = stack.enter_context(scratch_schema(url, "bench_detect", log))
        am_args, am_url = start_alertmanager(tmp)
        stack.enter_context(process(am_args, am_url + "/-/ready", tmp / "am.log"))
        settings = Settings(
            database_url=scoped,
            var_dir=str(tmp / "var"),
            notify_secret_value="detect",
            alertmanager_url=am_url,  # the worker's own alert job notifies it, as shipped
            env="bench",
        )
        options = EmbeddedOptions(proxies=False, jobs=burn_jobs(am_url, args.burn_factor))
        platform = EmbeddedPlatform(settings, options).start()
        stack.callback(platform.stop)
        assert platform.platform is not None
        obs = platform.platform.observability
        assert obs is not None and obs.sampler.interval == PAYWATCH_SAMPLE_S
        orgs = tuple(settings.pay_orgs)
        shipped = export_text(orgs)
        rules = [shipped]
        scaled = burn_rules(orgs, args.burn_factor)
        if scaled:
            rules.append(to_prometheus_rules(scaled, prefix="scaled-"))
        prom_args, prom_url = start_prometheus(
            tmp, rules, platform.settings.api_url, am_url, args.prom_interval
        )
        stack.enter_context(process(prom_args, prom_url + "/-/ready", tmp / "prometheus.log"))
        port = free_port()
        merchants = ensure_demo_merchants(
            platform.platform.paycore,
            settings.var_dir,
            f"http://127.0.0.1:{port}",
            settings.pay_orgs,
        )
        config = SimConfig(
            api_url=platform.settings.api_url,
            rate=args.rate,
            seed=22,
            receiver_port=port,
            notify_secret=settings.notify_secret(),
        )
        sim = Simulator(config, merchants).start()
        stack.callback(sim.stop)
        sandbox = platform.targets(settings).sandbox
        rounds = []
        # a random extra wait: a round ends on a resolve the engines post at their own
        # ticks, so a fixed warm-up would flip at the same phase of paywatch's 10 s job
        jitter = random.Random(22)
        for n in range(args.rounds):
            warmup = args.warmup + jitter.uniform(0, args.jitter)
            log(f"round {n + 1}: {warmup:.1f} s of healthy traffic")
            time.sleep(warmup)
            # the scaled burn rate in the first round only: its 36m/3m pair holds for minutes
            rounds.append(one_round(sandbox, am_url, figures[: 1 if n else 2], args.timeout))
    rules_info = {
        "shipped_rules_file": shipped == SHIPPED_RULES.read_text(encoding="utf-8"),
        "rules_sha256": hashlib.sha256(shipped.encode()).hexdigest(),
        "factor": 1,
        "pay_orgs": list(orgs),
        "paywatch": "default_rules(pay_orgs), the worker's alert job",
        "prometheus": "paywatch rules export (runtime.rules_cli.export_text)",
    }
    return summarize(rounds, args, rules_info)


def median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.median(got), 2) if len(got) == len(values) and got else None


def figure(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    rounds = [r for r in rounds if key in r]
    pw = median([r[key]["paywatch"] for r in rounds])
    prom = median([r[key]["prometheus"] for r in rounds])
    ratio = round(pw / prom, 3) if pw is not None and prom else None
    return {
        "paywatch_s": pw,
        "prometheus_s": prom,
        "ratio": ratio,
        "rounds": [r[key] for r in rounds],
        "meets_target": pw is not None
        and pw < TARGET_S
        and ratio is not None
        and ratio <= TARGET_RATIO,
    }


def summarize(
    rounds: list[dict[str, Any]], args: argparse.Namespace, rules: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "detect",
        "alert": (
            "first page-severity alert naming SANDBOX_A (pay_org or resource label) of the "
            "shipped rules, their SLO burn rates aside (alerts_s lists those too)"
        ),
        **figure(rounds, "shipped"),
        "first_alert": [r["first_alert"] for r in rounds],
        "alerts_s": [r["alerts_s"] for r in rounds],  # each shipped page naming ORG, first seen
        "resolved_after_reset_s": [r["resolved_s"] for r in rounds],
        "rules": rules,
        "paywatch_eval_every_s": PAYWATCH_EVAL_S,
        "paywatch_sample_every_s": PAYWATCH_SAMPLE_S,
        "prometheus_scrape_and_eval_every_s": args.prom_interval,
        "rate_per_s": args.rate,
        "target_s": TARGET_S,
        "target_ratio": TARGET_RATIO,
    }
    if args.burn_factor:
        out["burn_rate"] = {
            "alert": f"{BURN_PAGE}_fast",
            "window_factor": args.burn_factor,
            "page_windows_s": [
                [3600 * args.burn_factor, 300 * args.burn_factor],
                [21600 * args.burn_factor, 1800 * args.burn_factor],
            ],
            **figure(rounds, "burn"),
            "measured_in": "the first round only (its 36m/3m pair holds the page for minutes)",
            "full_windows": (
                "not measured: with the shipped 1h/5m page pair a total outage after an hour "
                "of healthy traffic pages once the 1 h error ratio passes 14.4 % (~8.6 min)"
            ),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1, help="outages (flip, page, reset, resolve)")
    p.add_argument(
        "--factor",
        type=float,
        default=1.0,
        choices=[1.0],
        help="the main figure's rule windows: 1, the shipped rules unscaled (the scaled "
        "burn-rate figure is --burn-factor)",
    )
    p.add_argument(
        "--burn-factor",
        type=float,
        default=0.1,
        help="second figure: the SLO burn-rate page with windows x this (0: leave it out)",
    )
    p.add_argument(
        "--prom-interval", type=float, default=15.0, help="Prometheus scrape and eval, s"
    )
    p.add_argument("--rate", type=float, default=6.0, help="arrivals per second")
    p.add_argument("--warmup", type=float, default=30.0, help="healthy seconds before a flip")
    p.add_argument(
        "--jitter", type=float, default=30.0, help="plus up to this many seconds (random)"
    )
    p.add_argument("--timeout", type=float, default=180.0, help="give up on a page after")
    args = p.parse_args(argv)
    url = os.environ.get("PAYWATCH_BENCH_DATABASE_URL", DEFAULT_URL)
    load = os.getloadavg()[0]
    result = measure(args, url)
    result.update({"loadavg_1m_before": round(load, 2), "cpus": os.cpu_count()})
    log(
        f"paywatch {result['paywatch_s']} s, Prometheus {result['prometheus_s']} s "
        f"(ratio {result['ratio']})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
