"""The shipped Grafana dashboards (``deploy/grafana``): equal to a fresh
``paywatch dashboards export`` (stale means fail), in Grafana's JSON model shape, pointing
at the provisioned datasource, and every panel's every query evaluates in a real
Prometheus that loads the shipped rules and scrapes live paywatch metrics.

Locally a missing prometheus skips; under CI=true it fails (the helpers of
test_slo_rules_files.py).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import yaml
from test_slo_rules_files import prometheus, query  # noqa: F401 - fixture

from runtime.cli import main
from runtime.dashboards_cli import SHIPPED_GRAFANA, export_files

FRESH = "paywatch dashboards export --out deploy/grafana"
METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def shipped() -> dict[str, dict]:
    return {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((SHIPPED_GRAFANA / "dashboards").glob("*.json"))
    }


def targets() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) of every target of every shipped dashboard."""
    return [
        (d["uid"], p["title"], t["expr"])
        for d in shipped().values()
        for p in d["panels"]
        for t in p["targets"]
    ]


def test_the_committed_files_are_a_fresh_export() -> None:
    files = export_files()
    on_disk = {
        str(p.relative_to(SHIPPED_GRAFANA)): p.read_text(encoding="utf-8")
        for p in SHIPPED_GRAFANA.rglob("*")
        if p.is_file()
    }
    assert set(on_disk) == set(files), f"stale: run {FRESH}"
    for rel, text in files.items():
        assert on_disk[rel] == text, f"{rel} is stale: run {FRESH}"


def test_the_cli_writes_the_same_files(tmp_path) -> None:
    assert main(["dashboards", "export", "--out", str(tmp_path)]) == 0
    for rel, text in export_files().items():
        assert (tmp_path / rel).read_text(encoding="utf-8") == text


def test_the_cli_refuses_a_broken_spec(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: prometheus/v1\nslos: []\n", encoding="utf-8")
    assert main(["dashboards", "export", "--spec", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "SLO spec" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_dashboards_have_grafanas_shape_and_the_provisioned_datasource() -> None:
    prov = SHIPPED_GRAFANA / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "paywatch.yml").read_text(encoding="utf-8"))
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    providers = yaml.safe_load((prov / "dashboards" / "paywatch.yml").read_text(encoding="utf-8"))
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    boards = shipped()
    assert set(boards) == {
        "paywatch-core-links",
        "paywatch-channels",
        "paywatch-stability",
        "paywatch-slos",
    }
    assert len({d["uid"] for d in boards.values()}) == len(boards)
    for stem, d in boards.items():
        assert d["uid"] == stem and d["title"] and isinstance(d["schemaVersion"], int)
        assert d["panels"], stem
        assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
        for p in d["panels"]:
            where = (stem, p["title"])
            assert p["type"] in ("timeseries", "stat") and p["title"], where
            assert p["datasource"] == {"type": "prometheus", "uid": source["uid"]}, where
            grid = p["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
            assert p["targets"], where
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), where
            for t in p["targets"]:
                assert t["expr"].strip() and t["datasource"] == p["datasource"], where


def test_every_slo_of_the_spec_has_its_panels() -> None:
    from alerts.slo_spec import load_spec

    slo_board = shipped()["paywatch-slos"]
    exprs = " ".join(t["expr"] for p in slo_board["panels"] for t in p["targets"])
    for slo in load_spec().slos:
        name = slo.alert.replace("{org}", ".+")
        assert f'"{name}"' in exprs, slo.name
    titles = {p["title"] for p in slo_board["panels"]}
    assert "pay-availability: budget left (30d)" in titles


def test_every_paywatch_metric_a_panel_reads_is_documented() -> None:
    """A misspelt metric evaluates to nothing in Prometheus: names must be real ones."""
    doc = METRICS_DOC.read_text(encoding="utf-8")
    names = {n for _, _, e in targets() for n in re.findall(r"\bpaywatch_[a-z_]+", e)}
    assert names
    missing = sorted(
        n for n in names if f"`{n}`" not in doc and f"`{n.removesuffix('_bucket')}`" not in doc
    )
    assert missing == []


def test_a_real_prometheus_evaluates_every_panel_query(prometheus) -> None:  # noqa: F811
    url = prometheus
    deadline = time.monotonic() + 180  # the machine may be loaded: poll, generously
    while True:  # until the scrapes and the recording rules carry data
        ready = query(url, 'slo:sli_error:ratio_rate5m{slo="slo_pay_success"}') and query(
            url, 'slo:error_budget:remaining{slo="slo_pay_latency"}'
        )
        if ready:
            break
        assert time.monotonic() < deadline, "no recorded SLO series"
        time.sleep(1)
    with_data: set[tuple[str, str]] = set()
    for uid, title, expr in targets():
        if query(url, expr):  # query() asserts Prometheus parsed and evaluated it
            with_data.add((uid, title))
    # the traffic (pays, channel calls, callbacks by two orgs) shows where it should
    for panel in (
        ("paywatch-core-links", "Requests by step"),
        ("paywatch-core-links", "Pay by pay org"),
        ("paywatch-core-links", "p99 latency by step"),
        ("paywatch-core-links", "Error reasons"),
        ("paywatch-channels", "Channel calls by pay org"),
        ("paywatch-channels", "Channel error ratio by pay org"),
        ("paywatch-slos", "pay-availability: error ratio"),
        ("paywatch-slos", "pay-availability: burn rate"),
        ("paywatch-slos", "pay-availability: budget left (30d)"),
        ("paywatch-slos", "pay-latency: error ratio"),
        ("paywatch-slos", "channel-call-availability-per-pay-org: error ratio"),
    ):
        assert panel in with_data, panel
    ratio = query(url, 'slo:sli_error:ratio_rate5m{slo=~"slo_channel_call_success_.+"}')
    assert {r["metric"]["slo"] for r in ratio} >= {
        "slo_channel_call_success_sandbox_a",
        "slo_channel_call_success_sandbox_b",
    }
