"""The Link drill-down (issue 18): filters from the URL on every figure, an unknown org ignored,
sparse series drawn with markers; a pay counted under its trade's pay org. AppTest runs the
real ``console/app.py`` over a migrated SQLite database.
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("streamlit")
from oncall_app import (
    HOSTILE,
    _app,
    _everything,
    _link,
    oncall_db,  # noqa: F401 - fixture
    seed_traffic,
)
from streamlit.testing.v1 import AppTest  # noqa: E402


# -- the drill-down -----------------------------------------------------------------------
def _headline(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_drilldown_filters_come_from_the_url_and_apply_to_the_headline(oncall_db):
    seed_traffic(oncall_db, org="SANDBOX_A", points=24)
    at = _link(_app("vera", "viewer").run(), link="pay", window="15m")
    assert not at.exception, at.exception
    assert float(_headline(at)["Requests/s"]) > 0  # all pay orgs
    at = _link(_app("vera", "viewer").run(), link="pay", window="15m", org="SANDBOX_B")
    assert not at.exception, at.exception
    assert at.selectbox(key="url_org").value == "SANDBOX_B"
    assert at.selectbox(key="url_link").value == "pay"
    assert at.selectbox(key="url_window").value == "15m"
    # the headline follows the pay org: nothing went through SANDBOX_B
    assert _headline(at) == {"Requests/s": "–", "Success": "–", "p99": "–"}
    assert "pay · SANDBOX_B · last 15 min" in [c.value for c in at.caption]
    at.selectbox(key="url_org").select("SANDBOX_A").run()
    assert float(_headline(at)["Requests/s"]) > 0
    assert at.query_params["org"] in ("SANDBOX_A", ["SANDBOX_A"])
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["layout"]["title"]["text"] == "pay · SANDBOX_A · last 15 min"


def test_drilldown_ignores_an_unknown_org_in_the_url(oncall_db):
    at = _link(_app("vera", "viewer").run(), org=HOSTILE[0])
    assert not at.exception, at.exception
    assert at.selectbox(key="url_org").value == ""
    assert HOSTILE[0] not in _everything(at)


def test_a_single_point_series_is_drawn(oncall_db):
    """One sample used to draw an empty chart (lines without markers)."""
    from console.views.overview import link_chart, sparkline

    fig = link_chart({"rate": [(time.time(), 0.5)], "failed": [], "p99": []})
    assert all("markers" in t.mode for t in fig.data)
    spark = sparkline([(time.time(), 0.5)])
    assert "markers" in spark.data[0].mode and spark.data[0].marker.size >= 3
    seed_traffic(oncall_db, org="SANDBOX_A", points=2, every=60)
    at = _link(_app("vera", "viewer").run(), link="pay", window="15m")
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    rate = next(t for t in chart["data"] if t["name"] == "req/s")
    assert rate["mode"] == "lines+markers"
    assert len([y for y in rate["y"] if y is not None]) >= 1


def test_a_pay_is_counted_under_its_trades_pay_org(migrated_db):
    """The drill-down's pay-org filter (and the per-org pay alerts) read the ``pay_org``
    label: a pay that names no org (the usual case: the trade has it) was labelled "" and
    vanished from every pay org's figures."""
    from prometheus_client import CollectorRegistry

    from collectors import CoreMetrics
    from paycore import PayCore, PayRequest, PayTool
    from tests.conftest import Shop

    reg = CollectorRegistry()
    core = PayCore(migrated_db, metrics=CoreMetrics(reg))
    try:
        shop = Shop(core)
        trade = shop.trade(amount=1_000)
        core.payments.pay(shop.mid, PayRequest(trade.out_trade_no, (PayTool("channel", 1_000),)))
    finally:
        core.lock.close()
    v = reg.get_sample_value
    labels = {"step": "pay", "outcome": "pending", "reason": ""}
    assert v("paywatch_link_requests_total", {**labels, "pay_org": "SANDBOX_A"}) == 1
    assert v("paywatch_link_requests_total", {**labels, "pay_org": ""}) is None
