"""The live dependency map: per node and edge req/s, error ratio, p99, breaker and switch
state from the guard's outcomes (every process's, through the metrics source), coloured by
health and refreshing itself; the impact query in traffic for one or several failed
resources; a "Degrade" button per weak dependency (two clicks: Degrade, Apply)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.util import find_spec

import streamlit as st

from console.auth import can
from console.pages import now, platform, require
from console.panel import panel
from console.safe import md
from console.urlstate import url_select
from console.views.depmap_graph import graph
from console.views.depmap_live import (
    breakers_now,
    impact_hits,
    live_map,
    recent_traffic,
    table,
    unhealthy,
)
from console.views.overview import link_stats
from console.views.routing import with_routing
from console.views.switches import (
    DEFAULT_HOURS,
    before_after,
    expiry_in,
    run_audited,
    switch_impact,
    weak_targets,
)
from stability.edge_stats import LiveTraffic, live_traffic
from stability.impact_traffic import traffic_impact

user = require("oncall")
st.title("Dependency map")
p = platform()
rt = p.stability
FLASH = "dm_flash"

flash = st.session_state.pop(FLASH, None)
if flash:
    st.success(flash)
    st.toast(flash, icon=":material/check_circle:")


def degrade_form(name: str) -> None:
    """The prefilled degrade switch for weak dependency ``name``: reason (required) and
    expiry (1 h unless changed), then Apply."""
    dmap = rt.map_store.load()
    imp = switch_impact(dmap, rt.guard.base_rules, "degrade", name)
    before, after = before_after(dmap, rt.guard.base_rules, "degrade", name)
    with st.form("dm_degrade_form", border=True):
        st.markdown(f"**Degrade {md(name)}** (weak: applies at once, no approval)")
        st.caption(f"Before: {md(before)} → after: {md(after)}")
        st.caption(
            "Degrades: "
            + md(", ".join(imp.degrades) or "nothing")
            + " · core links degraded: "
            + md(", ".join(imp.core_links_degraded) or "none")
        )
        reason = st.text_input("Reason (required)", key="dm_reason")
        hours = st.number_input(
            "Expires in hours (at most 168)",
            min_value=0.05,
            max_value=168.0,
            value=DEFAULT_HOURS,
            step=0.5,
            key="dm_hours",
        )
        applied = st.form_submit_button("Apply", type="primary")
    if st.button("Cancel", key="dm_cancel"):
        st.session_state.pop("dm_degrade", None)
        st.rerun()
    if not applied:
        return
    if not (reason or "").strip():
        st.error("A reason is required.")
        return
    expires_at = expiry_in(float(hours or DEFAULT_HOURS))
    detail = {
        "kind": "degrade",
        "params": {},
        "reason": reason,
        "expires_at": expires_at.isoformat(),
        "from": "dependency map",
    }
    rec, error = run_audited(
        p.db.engine,
        user.username,
        user.role,
        "switch.propose",
        name,
        detail,
        lambda: rt.switches.propose(
            "degrade", name, actor=user.username, reason=reason, expires_at=expires_at
        ),
    )
    if error is not None or rec is None:
        st.error(md(f"Not applied: {error}"))
        return
    st.session_state.pop("dm_degrade", None)
    st.session_state[FLASH] = (
        f"Switch #{rec.id} is {rec.status}. degrade {md(name)} until "
        f"{rec.expires_at:%Y-%m-%d %H:%M} UTC."
    )
    st.rerun()


if can(user.role, "switch.propose"):
    with panel("Degrade a weak dependency", "database"):
        dmap = rt.map_store.load()
        live = {r.target: r for r in rt.switches.live(datetime.now(UTC)) if r.kind == "degrade"}
        weak = weak_targets(dmap)
        cols = st.columns(max(1, len(weak)))
        for col, name in zip(cols, weak, strict=False):
            on = live.get(name)
            if on is not None:
                col.caption(
                    f"{md(name)}: degraded (#{on.id} by {md(on.actor)} until "
                    f"{on.expires_at:%H:%M} UTC)"
                )
            elif col.button(f"Degrade {name}", key=f"dm_degrade_{name}"):
                st.session_state["dm_degrade"] = name
                st.session_state.pop("dm_reason", None)
        chosen = st.session_state.get("dm_degrade")
        if chosen in weak:
            degrade_form(chosen)
        st.caption(
            "Strong dependencies and core links need a second person: use Switches and limits."
        )

WINDOWS = {"1m": 60, "5m": 300, "15m": 900}
MAP_EVERY = 10  #: seconds between refreshes of the map


def _traffic(window: float) -> LiveTraffic:
    """The guard's outcomes over ``window``; without a metrics source, no traffic (the map
    still shows breakers and switches)."""
    try:
        return live_traffic(p.observability.query, now(), window=window)
    except Exception as exc:  # noqa: BLE001 - the map stands without its traffic
        st.warning(f"The metrics source is unavailable ({type(exc).__name__}): no traffic shown.")
        return LiveTraffic({}, {}, window, now())


def _links(window: float) -> list[dict]:
    try:
        return link_stats(p.observability.query, now(), window=window)
    except Exception:  # noqa: BLE001 - _traffic already said the metrics source is down
        return []


def _impact(dmap, nodes, failed: list[str], window: float) -> dict[str, str]:
    """The impact query in traffic for ``failed``, written out; the map's outlines."""
    if not failed:
        return {}
    try:
        query = p.observability.query
        traffic = recent_traffic(p.db.engine, query, now(), window=window)
    except Exception as exc:  # noqa: BLE001 - the rates are missing, merchants still count
        st.warning(f"The metrics source is unavailable ({type(exc).__name__}): no rates.")
        query, traffic = None, recent_traffic(p.db.engine, None, now(), window=window)
    traffic = with_routing(traffic, p.db, query, now(), window=window)
    impacts = traffic_impact(dmap, failed, traffic, unhealthy=unhealthy(nodes))
    st.markdown("**Impact of " + md(", ".join(failed)) + "**")
    for i in impacts:
        st.markdown("- " + md(i.message))
    if not impacts:
        st.markdown("- no link or job is affected")
    return impact_hits(dmap, failed, impacts)


@st.fragment(run_every=MAP_EVERY)
def live_map_panel(window: float, failed: list[str]) -> None:
    """The map, its impact query and its tables; refreshes itself every MAP_EVERY s."""
    platform()  # a fragment-only run checks the user again (console.pages.platform)
    with panel("Map", "database"):
        dmap, snapshot = rt.map_store.load(), rt.switches.snapshot()
        breakers = breakers_now(rt, p.db.engine)
        nodes, edges = live_map(dmap, snapshot, breakers, _traffic(window), _links(window))
        hits = _impact(dmap, nodes, failed, window)
        st.plotly_chart(
            graph(dmap, nodes, edges, hit=hits),
            key="depmap_graph",
            width="content",
            config={"displayModeBar": False},
        )
        st.caption(
            "Green ≤ 0.1 % errors, yellow > 0.1 %, red > 20 % or breaker open, grey no "
            "traffic; purple outline: degraded by a switch; solid strong, dashed weak. "
            f"Traffic over the last {int(window)} s."
        )
        st.dataframe(table(nodes.values()), hide_index=True, key="depmap_nodes")
        st.dataframe(table(edges.values()), hide_index=True, key="depmap_edges")


label = url_select(
    "Window",
    list(WINDOWS),
    key="window",
    default="5m",
    widget=st.radio,
    horizontal=True,
    format_func=lambda w: f"last {w}",
)
chosen = st.multiselect(
    "Impact: what if these resources fail (together)?",
    [r.name for r in rt.map_store.load().resources],
    key="dm_impact",
)
live_map_panel(float(WINDOWS[label]), list(chosen))

if find_spec("console.views.timeout_lint") is not None:  # H-infra's view, when it is in
    with panel("Timeouts", "database"):
        from console.views.timeout_lint import render_timeout_lint
        from stability.depmap import lint_effective
        from stability.effective import effective_timeouts

        dmap = rt.map_store.load()
        render_timeout_lint(st, lint_effective(dmap, effective_timeouts(p.settings, dmap)))
