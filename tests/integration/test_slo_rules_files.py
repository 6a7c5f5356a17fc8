"""The shipped Prometheus rules (``deploy/prometheus/paywatch-rules.yml``): equal to a fresh
``paywatch rules export`` (stale means fail), accepted by ``promtool check rules``, their
unit tests (``paywatch-rules.test.yml``) pass in ``promtool test rules``, and a real
Prometheus scraping live paywatch metrics evaluates every rule without an error. One
definition of bad: the same recorded traffic gives the same bad and total counts, error
ratio and budget spent in the SLA report, in paywatch's engine (both over the database
store) and in Prometheus evaluating the shipped recording rules.

Locally a missing promtool or prometheus skips; under CI=true it fails.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import IN_CI, LiveServer, free_port
from prometheus_client import CollectorRegistry

from alerts import default_rules
from alerts.burnrate import BurnRateRule, outcome_selector
from collectors import CoreMetrics, Sampler, TimeSeriesStore, make_metrics_app
from console.reports.sla import sla_report
from runtime.cli import main
from runtime.rules_cli import SHIPPED_RULES, export_text

RULES_TEST = SHIPPED_RULES.with_name("paywatch-rules.test.yml")
FRESH = "paywatch rules export --out deploy/prometheus/paywatch-rules.yml"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is missing under CI (apt-get install prometheus)")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return path


def shipped_rules() -> list[dict]:
    doc = yaml.safe_load(SHIPPED_RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def test_the_committed_rules_are_a_fresh_export() -> None:
    assert SHIPPED_RULES.read_text(encoding="utf-8") == export_text(), f"stale: run {FRESH}"


def test_the_cli_writes_the_same_file(tmp_path, capsys) -> None:
    out = tmp_path / "rules.yml"
    assert main(["rules", "export", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == SHIPPED_RULES.read_text(encoding="utf-8")
    assert main(["rules", "export", "--pay-org", "ACME"]) == 0
    printed = capsys.readouterr().out
    assert "slo_channel_call_success_acme" in printed and "sandbox_a" not in printed


def test_the_cli_refuses_a_broken_spec(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: prometheus/v1\nslos: []\n", encoding="utf-8")
    assert main(["rules", "export", "--spec", str(bad)]) == 2
    assert "SLO spec" in capsys.readouterr().err


def test_the_rules_record_and_alerts_read_the_recordings() -> None:
    rules = shipped_rules()
    records = {r["record"] for r in rules if "record" in r}
    assert {"slo:sli_error:ratio_rate5m", "slo:error_budget:remaining"} <= records
    for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"):
        assert f"slo:sli_error:ratio_rate{w}" in records
    burn = [r for r in rules if r.get("alert") == "slo_pay_success"]
    assert {r["labels"]["severity"] for r in burn} == {"page", "ticket"}
    for r in burn:  # only recorded series: no raw rate over days per evaluation
        assert "rate(" not in r["expr"] and "slo:sli_requests:rate" in r["expr"]
    page = next(r for r in burn if r["labels"]["severity"] == "page")["expr"]
    assert "(14.4 * 0.001)" in page and "(6 * 0.001)" in page


def test_promtool_checks_the_shipped_rules(tmp_path) -> None:
    proc = subprocess.run(
        [binary("promtool"), "check", "rules", str(SHIPPED_RULES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(shipped_rules())} rules found" in proc.stdout


def test_promtool_runs_the_shipped_rule_tests() -> None:
    proc = subprocess.run(
        [binary("promtool"), "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


# -- a real Prometheus evaluates every rule ------------------------------------------------------


def traffic(m: CoreMetrics, stop: threading.Event) -> None:
    """Pays (some failing, some slow) through two orgs, channel calls, callbacks."""
    i = 0
    while not stop.wait(0.05):
        i += 1
        for org in ("SANDBOX_A", "SANDBOX_B"):
            m.observe("pay", "ok", "", org, seconds=0.05)
            m.observe("pay", "ok", "", org, seconds=1.5 if i % 3 == 0 else 0.2)
            m.observe("channel_call", "ok" if i % 4 else "error", "", org, seconds=0.1)
        m.observe("pay", "error", "channel_timeout", "SANDBOX_A", seconds=3.0)
        m.observe("callback", "ok", "", "SANDBOX_A", seconds=0.01)


@pytest.fixture
def prometheus(tmp_path) -> Iterator[str]:
    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    stop = threading.Event()
    thread = threading.Thread(target=traffic, args=(m, stop), daemon=True)
    with running_prometheus(tmp_path, reg) as url:
        try:
            thread.start()
            yield url
        finally:
            stop.set()


@contextmanager
def running_prometheus(tmp_path: Path, reg: CollectorRegistry) -> Iterator[str]:
    """A real Prometheus with the shipped rules, scraping ``reg`` every second: its URL."""
    exe = binary("prometheus")
    port = free_port()
    with LiveServer(make_metrics_app(reg)) as server:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {SHIPPED_RULES}\n"
            "scrape_configs:\n  - job_name: paywatch\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{server.port}']\n"
        )
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"prometheus exited {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("prometheus did not become ready")


def query(url: str, expr: str, at: float | None = None) -> list[dict]:
    form = {"query": expr} if at is None else {"query": expr, "time": repr(at)}
    body = httpx.post(f"{url}/api/v1/query", data=form, timeout=30).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def test_a_real_prometheus_evaluates_every_shipped_rule(prometheus) -> None:
    url = prometheus
    expected = len(shipped_rules())
    deadline = time.monotonic() + 180  # the machine may be loaded: poll, generously
    while True:
        groups = httpx.get(f"{url}/api/v1/rules", timeout=30).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        pending = [r["name"] for r in rules if r["health"] == "unknown"]
        recorded = {  # per pay org; a zero-initialised series without traffic is NaN
            r["metric"].get("pay_org", "")
            for r in query(url, 'slo:sli_error:ratio_rate1h{slo="slo_pay_latency"} >= 0')
        }
        if len(rules) == expected and not pending and {"SANDBOX_A", "SANDBOX_B"} <= recorded:
            break
        assert time.monotonic() < deadline, (len(rules), expected, pending[:5], recorded)
        time.sleep(1)
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert bad == []
    for rule in shipped_rules():  # and each expression on its own, through the query API
        query(url, rule["expr"])
    # the recordings carry data: the SLI per org, the budget, the objective
    by_org = {
        r["metric"]["pay_org"]: float(r["value"][1])
        for r in query(url, 'slo:sli_error:ratio_rate5m{slo="slo_pay_latency"} >= 0')
    }
    assert set(by_org) == {"SANDBOX_A", "SANDBOX_B"} and all(v > 0.1 for v in by_org.values())
    pay = query(url, 'slo:sli_error:ratio_rate5m{slo="slo_pay_success"}')
    assert pay and 0.1 < float(pay[0]["value"][1]) < 0.5  # 1 error in 5 pays
    budget = query(url, 'slo:error_budget:remaining{slo="slo_pay_success"}')
    assert budget and float(budget[0]["value"][1]) < 0  # 20 % errors overspend 0.1 %
    assert float(query(url, 'slo:objective:ratio{slo="slo_pay_success"}')[0]["value"][1]) == 0.999


# -- one definition of bad: the SLA report, the engine and Prometheus agree -----------------------

#: what one burst of traffic recorded, per outcome: every outcome the counters carry, the
#: ones the spec counts good, bad and neither
PAY = {"ok": 900, "pending": 60, "error": 25, "timeout": 15, "rejected": 300}
RISK = {
    "pass": 950,
    "error": 20,
    "timeout": 10,
    "breaker_open": 15,
    "bulkhead_full": 5,
    "fallback": 45,
    "blocked": 30,
    "degraded": 12,
    "dry_run_blocked": 7,
}
CHECKED = {
    "slo_pay_success": ("link", "pay", PAY),
    "slo_dependency_success_risk": ("dependency", "risk", RISK),
}


def record_burst(m: CoreMetrics) -> None:
    for outcome, n in PAY.items():
        for _ in range(n):
            m.observe("pay", outcome, "", "", seconds=0.01)
    for outcome, n in RISK.items():
        for _ in range(n):
            m.guard_outcome("risk", "link.pay", outcome, 0.001)


def zero_series(m: CoreMetrics) -> None:
    """Every series of the burst at 0 before Prometheus' first scrape (as a process that
    has run a while has them): increase() then counts from 0, exactly."""
    for outcome in PAY:
        m.link_requests.labels("pay", outcome, "", "")
    for outcome in RISK:
        m.edges.calls.labels("link.pay", "risk", outcome)


def value(url: str, expr: str, at: float | None = None) -> tuple[float, float]:
    """(sample time, value) of a one-series query."""
    (row,) = query(url, expr, at)
    return float(row["value"][0]), float(row["value"][1])


def test_the_sla_report_the_engine_and_prometheus_count_the_same_bad_events(
    tmp_path, migrated_db
) -> None:
    """Pays: 40 bad (error, timeout) of 1000 counted (ok, pending), 300 refusals neither;
    risk: 50 bad (error, timeout, breaker_open, bulkhead_full) of 1000, 94 neither
    (fallback, blocked, degraded, dry-run). All three: the same counts, ratio, budget."""
    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    zero_series(m)
    rules = {r.name: r for r in default_rules(("SANDBOX_A",)) if r.name in CHECKED}
    store = TimeSeriesStore(migrated_db.engine)
    sampler = Sampler(reg, store, instance="api-1", include=("paywatch_link", "paywatch_guard"))
    t0 = time.time()
    sampler.sample_once(t0)
    with running_prometheus(tmp_path, reg) as url:
        pay_ok = 'paywatch_link_requests_total{step="pay",outcome="ok"}'
        deadline = time.monotonic() + 120
        while not query(url, pay_ok):  # scraped at 0
            assert time.monotonic() < deadline, "prometheus never scraped"
            time.sleep(0.5)
        record_burst(m)
        done = time.time()
        now = t0 + 10
        sampler.sample_once(now)
        recording = 'timestamp(slo:sli_error:ratio_rate5m{slo="slo_dependency_success_risk"})'
        scraped = 0.0  # the first scrape begun after the burst; then a rule evaluation
        while True:
            if not scraped:
                (seen,) = query(url, f"timestamp({pay_ok})")
                scraped = float(seen["value"][1]) if float(seen["value"][1]) > done else 0.0
            evaluated = [float(r["value"][1]) for r in query(url, recording)]
            if scraped and evaluated and evaluated[0] > scraped:
                break
            assert time.monotonic() < deadline, "prometheus never recorded the burst"
            time.sleep(0.5)
        for name, (kind, row_name, counts) in CHECKED.items():
            rule = rules[name]
            assert isinstance(rule, BurnRateRule)
            bad = sum(v for o, v in counts.items() if o in rule.outcomes.bad)
            total = sum(v for o, v in counts.items() if o in rule.outcomes.counted)
            # the SLA report (30 days) and the engine (its 1 h window), over the store
            (row,) = [
                r for r in sla_report(store, None, now=now) if (r.kind, r.name) == (kind, row_name)
            ]
            assert (row.bad, row.total, row.excluded) == (bad, total, sum(counts.values()) - total)
            assert rule.counts(store, 3600, now) == {(): (bad, total)}
            (page,) = [i for i in rule.evaluate(store, now) if i.severity == "page"]
            assert page.value == pytest.approx(row.burn_rate)
            # Prometheus: the rule's own selectors, at the scrape (increase() exact), and the
            # recorded ratio and budget
            counted = []
            for outcomes in (rule.outcomes.bad, rule.outcomes.counted):
                sel = outcome_selector(rule.metric, rule.match, outcomes)
                counted.append(value(url, f"sum(increase({sel}[1h]))", scraped)[1])
            assert counted == [bad, total], name
            recorded = f'{{slo="{name}"}}'
            assert value(url, f"slo:sli_error:ratio_rate5m{recorded}")[1] == pytest.approx(
                bad / total
            )
            budget_left = value(url, f"slo:error_budget:remaining{recorded}")[1]
            assert budget_left == pytest.approx(row.budget_left), name
            print(f"{name}: {bad}/{total} bad; budget left {budget_left:.3f} everywhere")
