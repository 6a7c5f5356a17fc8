"""AppTest tests of the manager's SLA page over fake metrics: role gating, the window from the
URL, met and missed visible, an empty window, metrics down failing alone, hostile resource
names inert."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("streamlit.testing.v1")
from mgr_page_app import (
    _app,
    _ok,
    _page,
    platform,  # noqa: F401 - fixture
)
from streamlit.testing.v1 import AppTest  # noqa: E402


class _FakeQuery:
    """100 ok pay requests and a p99 of 0.2 s; nothing else."""

    def count(self, metric, *, window, at, match=None, by=()):
        from collectors.query import Series

        if metric != "paywatch_link_requests_total":
            return []
        return [Series({"step": "pay", "outcome": "ok"}, 100.0)]

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        from collectors.query import Series

        return [Series({"step": "pay"}, 0.2)]


class _Counts:
    """Counts per (step, outcome), recording the windows asked; ``rate`` must not be used."""

    def __init__(
        self,
        counts: dict[tuple[str, str], float],
        guard: dict[tuple[str, str], float] | None = None,
    ) -> None:
        self.counts, self.guard, self.windows = counts, guard or {}, []

    def count(self, metric, *, window, at, match=None, by=()):
        from collectors.query import Series

        self.windows.append(window)
        if metric == "paywatch_guard_calls_total":
            return [Series({"resource": r, "outcome": o}, v) for (r, o), v in self.guard.items()]
        return [Series({"step": s, "outcome": o}, v) for (s, o), v in self.counts.items()]

    def rate(self, *a, **kw):
        raise AssertionError("rate x window")

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        return []


def _sla_platform(platform, query, dmap=None):
    platform.observability = SimpleNamespace(query=query)
    platform.stability = SimpleNamespace(map_store=SimpleNamespace(load=lambda: dmap))
    return platform


def test_sla_page(platform):
    _sla_platform(platform, _FakeQuery())
    at = _app("console.pages.mgr_sla", platform, "ann", "admin")
    _ok(at)
    table = at.dataframe[0].value
    assert "pay" in set(table["name"])
    viewer = _app("console.pages.mgr_sla", platform, "vic", "operator")
    _ok(viewer)
    assert viewer.error and not viewer.dataframe


def test_sla_page_window_from_the_url_and_met_missed_visible(platform):
    q = _Counts({("pay", "ok"): 990, ("pay", "error"): 10, ("refund", "ok"): 40})
    _sla_platform(platform, q)
    at = AppTest.from_function(
        _page, args=("console.pages.mgr_sla", platform, "maria", "manager"), default_timeout=60
    )
    at.query_params["window"] = "7d"
    at.run()
    _ok(at)
    assert q.windows and set(q.windows) == {7 * 86400.0}
    assert at.selectbox(key="url_window").value == "7d"
    rows = {r["name"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows["pay"]["status"] == "missed" and rows["refund"]["status"] == "met"
    assert rows["pay"]["error budget"] == "exhausted by 900.0 %"
    assert (rows["pay"]["good"], rows["pay"]["bad"]) == (990, 10)
    assert rows["trade_create"]["status"] == "no traffic"
    assert any("1 of 2 targets missed" in e.value for e in at.error)
    chart = at.get("plotly_chart")[0].proto.spec
    assert '"name":"missed"' in chart.replace(" ", "") and "#c62828" in chart
    at.selectbox(key="url_window").select("1h").run()
    _ok(at)
    assert q.windows[-1] == 3600.0


def test_sla_page_empty_window_says_no_data(platform):
    _sla_platform(platform, _Counts({}))
    at = _app("console.pages.mgr_sla", platform, "maria", "manager")
    _ok(at)
    assert any("No data for this period" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_sla_page_metrics_down_fails_alone(platform):
    class Down(_Counts):
        def count(self, *a, **kw):
            from collectors import QueryError

            raise QueryError("metrics query failed: OperationalError /srv/secret/path")

    _sla_platform(platform, Down({}))
    at = _app("console.pages.mgr_sla", platform, "maria", "manager")
    _ok(at)
    assert any("metrics source is unavailable" in w.value for w in at.warning)
    assert "/srv/secret" not in str([w.value for w in at.warning])


HOSTILE = ["![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>"]


def test_sla_page_renders_hostile_resource_names_inert(platform):
    from stability.depmap import DependencyMap, ResourceSpec

    dmap = DependencyMap([ResourceSpec(h, "service", sla_target=0.99) for h in HOSTILE])
    q = _Counts({}, guard={(h, "pass"): 5 for h in HOSTILE} | {(HOSTILE[0], "error"): 5})
    _sla_platform(platform, q, dmap)
    at = _app("console.pages.mgr_sla", platform, "maria", "manager")
    _ok(at)
    assert set(HOSTILE) <= set(at.dataframe[0].value["name"])  # tables show text as text
    texts = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error", "success")
        for e in at.get(kind)
    ]
    for h in HOSTILE:
        assert not [t for t in texts if h in t], h
    spec = at.get("plotly_chart")[0].proto.spec
    assert "<img" not in spec and "&lt;img src=x onerror=alert(1)&gt;" in spec
