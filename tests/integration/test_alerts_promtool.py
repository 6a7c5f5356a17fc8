"""The exported Prometheus rules pass ``promtool check rules``, and behave in Prometheus'
own rule engine (``promtool test rules``) as they do in ours.

Locally a missing promtool skips; under CI (where ``.ci/run`` installs it) it fails.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import IN_CI

from alerts import DEFAULT_WINDOWS, BurnRateRule, ThresholdRule, default_rules, to_prometheus_rules
from alerts.export import emit_yaml, rule_groups


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if IN_CI:
            pytest.fail("promtool is missing under CI (apt-get install prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def check(promtool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_default_rules_pass_promtool_check_rules(promtool, tmp_path) -> None:
    rules = default_rules(["SANDBOX_A", "SANDBOX_B"])
    path = tmp_path / "paywatch.rules.yml"
    path.write_text(to_prometheus_rules(rules), encoding="utf-8")
    proc = check(promtool, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = sum(len(g["rules"]) for g in rule_groups(rules)["groups"])  # with recordings
    assert f"SUCCESS: {expected} rules found" in proc.stdout


def test_builtin_yaml_emitter_output_passes_too(promtool, tmp_path) -> None:
    path = tmp_path / "emitted.rules.yml"
    doc = rule_groups(default_rules(["SANDBOX_A"]))
    path.write_text(emit_yaml(doc), encoding="utf-8")
    proc = check(promtool, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_rejects_a_broken_expression(promtool, tmp_path) -> None:
    """The check is real: an invalid PromQL expression fails it."""
    bad = ThresholdRule("broken", lambda q, at: [], ">", 1, promql="sum(rate(x[5m])")
    path = tmp_path / "bad.rules.yml"
    path.write_text(to_prometheus_rules([bad]), encoding="utf-8")
    assert check(promtool, path).returncode != 0


# -- the same burn-rate scenario in Prometheus' engine ----------------------------------------


def series(values: list[float]) -> str:
    """Prometheus test notation, runs of equal steps compressed to ``a+bxn``."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        step = values[i + 1] - values[i] if i + 1 < len(values) else 0.0
        while j + 1 < len(values) and values[j + 1] - values[j] == step:
            j += 1
        out.append(f"{values[i]:g}{step:+g}x{j - i}")
        i = j + 1
    return " ".join(out)


S = 400  # minutes of history before errors start (more than the 6-hour window)
PAGES = DEFAULT_WINDOWS[:2]  # 3 days of 1m samples would make promtool slow


def run_promtool_test(promtool: str, tmp_path: Path, rules, tests: list[dict]) -> None:
    (tmp_path / "rules.yml").write_text(to_prometheus_rules(rules), encoding="utf-8")
    doc = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    proc = subprocess.run(
        [promtool, "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_burn_rate_fires_and_resolves_in_prometheus_as_in_the_engine(promtool, tmp_path) -> None:
    """10 req/s with 5% errors for 30 minutes (the engine test's scenario at 1m resolution):
    not yet at +15m, paging at +20m and +30m (engine: from +18m), resolved at +45m
    (engine: +34m). The page pairs only: a 3-day history at 1m steps takes promtool ~30 s."""
    minutes = S + 60
    errors = [30.0 * max(0, min(m - S, 30)) for m in range(minutes)]
    ok = [600.0 * m - errors[m] for m in range(minutes)]
    rule = BurnRateRule(
        "slo_pay_success",
        0.999,
        step="pay",
        min_traffic_rps=0.05,
        windows=PAGES,
        annotations={"summary": "pay burns its error budget"},
    )
    page = [
        {
            "exp_labels": {"severity": "page", "step": "pay"},
            "exp_annotations": {"slo": "0.999", "summary": "pay burns its error budget"},
        }
    ]
    m = "paywatch_link_requests_total"
    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": f'{m}{{step="pay",outcome="ok",pay_org="A"}}', "values": series(ok)},
                {
                    "series": f'{m}{{step="pay",outcome="error",pay_org="A"}}',
                    "values": series(errors),
                },
            ],
            "alert_rule_test": [
                {"eval_time": f"{S + 15}m", "alertname": "slo_pay_success", "exp_alerts": []},
                {"eval_time": f"{S + 20}m", "alertname": "slo_pay_success", "exp_alerts": page},
                {"eval_time": f"{S + 30}m", "alertname": "slo_pay_success", "exp_alerts": page},
                {"eval_time": f"{S + 45}m", "alertname": "slo_pay_success", "exp_alerts": []},
            ],
        }
    ]
    run_promtool_test(promtool, tmp_path, [rule], tests)


def test_min_traffic_guard_holds_in_prometheus(promtool, tmp_path) -> None:
    """1 request a minute and one error: the unguarded rule pages, the guarded one not."""
    start, minutes = 120, 130
    errors = [1.0 if m > start else 0.0 for m in range(minutes)]
    ok = [m - errors[m] for m in range(minutes)]
    rules = [
        BurnRateRule("guarded", 0.999, step="pay", windows=PAGES, min_traffic_rps=0.1),
        BurnRateRule("unguarded", 0.999, step="pay", windows=PAGES),
    ]
    m = "paywatch_link_requests_total"
    fired = [
        {"exp_labels": {"severity": "page", "step": "pay"}, "exp_annotations": {"slo": "0.999"}}
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": f'{m}{{step="pay",outcome="ok"}}', "values": series(ok)},
                {"series": f'{m}{{step="pay",outcome="error"}}', "values": series(errors)},
            ],
            "alert_rule_test": [
                {"eval_time": f"{start + 3}m", "alertname": "unguarded", "exp_alerts": fired},
                {"eval_time": f"{start + 3}m", "alertname": "guarded", "exp_alerts": []},
            ],
        }
    ]
    run_promtool_test(promtool, tmp_path, rules, tests)
