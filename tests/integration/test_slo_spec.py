"""The SLO spec is the one source of objectives: the alert engine (on SQLite and PostgreSQL)
and the SLA report both follow a changed spec; the latency SLO burns from histogram buckets;
a broken spec is refused with a readable error; the spec ships inside the package (found
through importlib.resources, and inside a built wheel).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from alert_series import (
    T0,
    FakeQuery,
    db,  # noqa: F401 - fixture
    pay_traffic,
    ramp,
    run,
    transitions,
)

from alerts import AlertEngine, default_rules
from alerts.errors import RuleError
from alerts.slo_latency import LatencyBurnRule
from alerts.slo_spec import (
    RESOURCE_OUTCOMES,
    SLO_WINDOWS,
    SPEC_PACKAGE,
    SPEC_RESOURCE,
    STEP_OUTCOMES,
    Outcomes,
    load_spec,
    parse_spec,
    shipped_spec,
)
from console.reports.sla import sla_report

REQ = "paywatch_link_requests_total"
LAT = "paywatch_link_latency_seconds"


def shipped() -> dict:
    return yaml.safe_load(shipped_spec().read_text(encoding="utf-8"))


def with_objective(tmp_path: Path, name: str, objective: float) -> Path:
    """A copy of the shipped spec with one SLO's objective changed."""
    doc = shipped()
    next(s for s in doc["slos"] if s["name"] == name)["objective"] = objective
    path = tmp_path / "changed.slo.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_the_shipped_spec_has_one_objective_per_step_org_and_latency() -> None:
    spec = load_spec()
    assert spec.service == "paywatch"
    steps = {s.step for s in spec.slos if s.kind == "availability" and s.per is None}
    assert {"pay", "trade_create", "refund", "callback", "notification"} <= steps
    assert any(s.per == "pay_org" for s in spec.slos)
    latency = next(s for s in spec.slos if s.kind == "latency")
    assert latency.step == "pay" and latency.threshold_s == 1.0 and latency.by == ("pay_org",)
    assert all(s.windows == SLO_WINDOWS for s in spec.slos)
    assert [(w.long_s, w.short_s, w.factor, w.severity) for w in SLO_WINDOWS] == [
        (3600, 300, 14.4, "page"),
        (21600, 1800, 6.0, "page"),
        (86400, 7200, 3.0, "ticket"),
        (259200, 21600, 1.0, "ticket"),
    ]
    assert spec.step_objective("pay") == 0.999 and spec.objectives()["link.refund"] == 0.995
    names = {r.name for r in default_rules(["SANDBOX_A"])}
    assert {s.alert.replace("{org}", "sandbox_a") for s in spec.slos} <= names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version="v2"), "prometheus/v1"),
        (lambda d: d["slos"][0].update(objective=100), "between 0 and 100"),
        (lambda d: d["slos"][0].update(objective="lots"), "objective"),
        (lambda d: d["slos"][0]["sli"]["plugin"].update(id="sloth/raw"), "sli.plugin.id"),
        (lambda d: d["slos"][1].update(name=d["slos"][0]["name"]), "duplicate name"),
        (lambda d: d["slos"][0]["sli"]["plugin"]["options"].pop("step"), "step or resource"),
        (lambda d: d["slos"][0]["alerting"].update(name="slo_{org}_x"), "{org}"),
        (
            lambda d: d["slos"][1]["sli"]["plugin"]["options"].update(absent_for="soon"),
            "duration",
        ),
        (lambda d: opts(d, 0).update(bad_outcomes=["error", "lost"]), "unknown outcome lost"),
        (lambda d: opts(d, 0).update(bad_outcomes="error"), "non-empty list"),
        (lambda d: opts(d, 0).update(good_outcomes=[]), "non-empty list"),
        (lambda d: opts(d, 0).update(good_outcomes=["ok", "error"]), "both good and bad"),
        (lambda d: opts(d, -1).update(bad_outcomes=["rejected"]), "unknown outcome rejected"),
        (lambda d: opts(d, 6).update(bad_outcomes=["error"]), "no outcomes"),  # latency
    ],
)
def test_a_broken_spec_is_refused_with_a_readable_error(change, message) -> None:
    doc = shipped()
    change(doc)
    with pytest.raises(RuleError, match="SLO spec") as err:
        parse_spec(doc, "x.yaml")
    assert message in str(err.value)


def opts(doc: dict, i: int) -> dict:
    return doc["slos"][i]["sli"]["plugin"]["options"]


def test_each_slo_says_what_is_bad_and_unsaid_takes_its_kind_default() -> None:
    """The shipped spec: steps count ok/pending good and error/timeout bad (rejected is
    neither); dependencies pass good and error/timeout/breaker_open/bulkhead_full bad."""
    spec = load_spec()
    pay = next(s for s in spec.slos if s.name == "pay-availability")
    risk = next(s for s in spec.slos if s.resource == "risk")
    assert pay.outcomes == STEP_OUTCOMES == Outcomes(("ok", "pending"), ("error", "timeout"))
    assert "rejected" not in pay.outcomes.counted
    assert risk.outcomes == RESOURCE_OUTCOMES
    assert set(RESOURCE_OUTCOMES.bad) == {"error", "timeout", "breaker_open", "bulkhead_full"}
    assert pay.metric == "paywatch_link_requests_total"
    assert risk.metric == "paywatch_guard_calls_total"
    doc = shipped()
    for i in (1, len(doc["slos"]) - 1):
        for key in ("good_outcomes", "bad_outcomes"):
            opts(doc, i).pop(key)
    opts(doc, 0)["bad_outcomes"] = ["error"]  # trade_create: a timeout is not counted
    spec = parse_spec(doc, "x.yaml")
    assert spec.slos[1].outcomes == STEP_OUTCOMES and spec.slos[-1].outcomes == RESOURCE_OUTCOMES
    assert spec.outcomes(step="trade_create") == Outcomes(("ok", "pending"), ("error",))
    # a step whose only SLO is per pay org uses it; a step or resource without one, the default
    assert spec.outcomes(step="channel_call") == spec.slos[5].outcomes
    assert spec.outcomes(step="ledger_posting") == STEP_OUTCOMES
    assert spec.outcomes(resource="database") == RESOURCE_OUTCOMES


def test_the_shipped_spec_is_package_data_found_through_importlib_resources(
    monkeypatch,
) -> None:
    from importlib.resources import files

    monkeypatch.delenv("PAYWATCH_SLO_SPEC", raising=False)
    resource = files(SPEC_PACKAGE).joinpath(SPEC_RESOURCE)
    assert resource.is_file() and str(resource) == str(shipped_spec())
    assert load_spec().path == str(resource)
    assert load_spec().slos == parse_spec(yaml.safe_load(resource.read_text("utf-8"))).slos


def test_a_built_wheel_carries_the_spec_where_the_loader_reads_it(tmp_path) -> None:
    """A non-editable install gets the spec: the wheel holds it at alerts/slo/... and a
    zip import of the wheel (no source tree) loads it through importlib.resources."""
    import shutil
    import subprocess
    import sys
    import tomllib
    import zipfile

    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"  # a copy: building in the shared tree would leave build/ in it
    src.mkdir()
    shutil.copy(root / "pyproject.toml", src)
    conf = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    for pattern in conf["tool"]["setuptools"]["packages"]["find"]["include"]:
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(root / pattern.rstrip("*"), src / pattern.rstrip("*"), ignore=skip)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
    subprocess.run(
        [*build, "-w", str(tmp_path), str(src)], check=True, capture_output=True, timeout=300
    )
    (wheel,) = tmp_path.glob("paywatch-*.whl")
    inside = f"{SPEC_PACKAGE}/{SPEC_RESOURCE}"
    with zipfile.ZipFile(wheel) as z:
        assert inside in z.namelist()
        assert z.read(inside) == shipped_spec().read_bytes()
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from alerts.slo_spec import load_spec; import alerts;"
        "assert alerts.__file__.startswith(sys.argv[1]), alerts.__file__;"
        "s = load_spec(); print(s.path, len(s.slos))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(wheel)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"{wheel}/{inside}", str(len(load_spec().slos))]


def test_a_missing_spec_file_is_a_rule_error(tmp_path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        load_spec(tmp_path / "nope.yaml")


def test_the_engine_follows_the_spec_objective(db, tmp_path, monkeypatch) -> None:
    """5 % pay errors at 10 req/s: the shipped 99.9 % pays (page threshold 1.44 %);
    the same traffic under a 90 % objective (threshold 144 %) never can."""
    q = FakeQuery()
    pay_traffic(q, ramp(T0, 0.5, stop=T0 + 1800))
    eng = AlertEngine(db, q, default_rules(["A"]), group_wait=0)
    run(eng, T0 - 600, T0 + 1800, 60)
    assert transitions(eng, "slo_pay_success", "page")[0][:2] == ("inactive", "firing")

    monkeypatch.setenv("PAYWATCH_SLO_SPEC", str(with_objective(tmp_path, "pay-availability", 90)))
    pay = next(r for r in default_rules(["A"]) if r.name == "slo_pay_success")
    assert pay.slo == 0.9
    eng2 = AlertEngine(db, q, [pay], group_wait=0)
    eng2.evaluate(now=T0 + 1800)
    assert [a for a in eng2.active() if a.rule == "slo_pay_success"] == []


def test_the_sla_report_follows_the_spec_objective(tmp_path, monkeypatch) -> None:
    """The map says 99.99 % for link.pay; the spec (99.9 %, then 99 %) wins."""
    from stability.depmap import DependencyMap, ResourceSpec

    q = FakeQuery()
    pay_traffic(q, ramp(T0, 0.05), rps=10.0)  # 0.5 % errors
    dmap = DependencyMap([ResourceSpec("link.pay", "link", sla_target=0.9999, core_link=True)])

    def pay_row():
        return next(r for r in sla_report(q, dmap, now=T0 + 3600, window_s=3600) if r.name == "pay")

    row = pay_row()
    assert row.slo == 0.999 and row.met is False
    assert row.budget_left == pytest.approx(1 - 0.005 / 0.001)
    monkeypatch.setenv("PAYWATCH_SLO_SPEC", str(with_objective(tmp_path, "pay-availability", 99)))
    row = pay_row()
    assert row.slo == 0.99 and row.met is True
    assert row.budget_left == pytest.approx(0.5)
    deps = {r.name: r.slo for r in sla_report(q, None, now=T0, window_s=60) if r.kind != "link"}
    assert deps["risk"] == 0.999 and "link.pay" not in deps  # spec dependencies, no links


def test_the_latency_slo_burns_on_slow_requests_per_pay_org(db) -> None:
    """SANDBOX_B: 10 pays/s, from T0 a quarter slower than 1 s (25 x the 1 % budget): it
    pages on 1h/5m once the hour holds > 14.4 % slow; SANDBOX_A (all fast) never."""
    q = FakeQuery()
    for org, slow in (("SANDBOX_A", 0.0), ("SANDBOX_B", 2.5)):
        labels = {"step": "pay", "pay_org": org}
        q.counter(f"{LAT}_count", labels, lambda t: 10.0 * t)
        q.counter(
            f"{LAT}_bucket", {**labels, "le": "1.0"}, lambda t, s=slow: 10.0 * t - ramp(T0, s)(t)
        )
    rule = next(r for r in default_rules() if r.name == "slo_pay_latency")
    assert isinstance(rule, LatencyBurnRule)
    eng = AlertEngine(db, q, [rule], group_wait=0)
    run(eng, T0 - 600, T0 + 3000, 60)
    firing = [a for a in eng.active() if a.rule == "slo_pay_latency"]
    assert {a.labels["pay_org"] for a in firing} == {"SANDBOX_B"}
    # 1h: 0.25 x / 3600 > 0.144 <=> x > 2073.6 s -> the 60 s grid's 2100
    assert transitions(eng, "slo_pay_latency", "page") == [("inactive", "firing", 2100.0)]
