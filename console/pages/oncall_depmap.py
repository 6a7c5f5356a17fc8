"""Dependency map: resources and edges coloured by health, breaker and switch state, impact;
a "Degrade" button per weak dependency (two clicks on this page: Degrade, Apply)."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from console.auth import can
from console.pages import platform, require
from console.panel import panel
from console.safe import md
from console.urlstate import url_select
from console.views.depmap import (
    breaker_states,
    dependency_graph,
    edge_rows,
    impact_summary,
    node_status,
)
from console.views.switches import (
    DEFAULT_HOURS,
    before_after,
    expiry_in,
    run_audited,
    switch_impact,
    weak_targets,
)

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
        now = datetime.now(UTC)
        live = {r.target: r for r in rt.switches.live(now) if r.kind == "degrade"}
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

with panel("Map", "database"):
    dmap = rt.map_store.load()
    snapshot = rt.switches.snapshot()
    breakers = breaker_states(rt.breaker_events.recent(500), snapshot)
    names = [r.name for r in dmap.resources]
    failed = url_select("Impact: what if this resource fails?", ["(none)", *names], key="impact")
    highlight = None if failed == "(none)" else failed
    st.plotly_chart(
        dependency_graph(dmap, snapshot, breakers, highlight=highlight), key="depmap_graph"
    )
    if highlight:
        imp = impact_summary(dmap, highlight)
        c1, c2 = st.columns(2)
        c1.markdown("**Fails:** " + md(", ".join(imp["fails"]) or "nothing"))
        c1.markdown("**Core links failing:** " + md(", ".join(imp["core_links_failing"]) or "none"))
        c2.markdown("**Degrades:** " + md(", ".join(imp["degrades"]) or "nothing"))
        c2.markdown(
            "**Core links degraded:** " + md(", ".join(imp["core_links_degraded"]) or "none")
        )
with panel("Resources", "database"):
    dmap, snapshot = rt.map_store.load(), rt.switches.snapshot()
    breakers = breaker_states(rt.breaker_events.recent(500), snapshot)
    st.dataframe(
        list(node_status(dmap, snapshot, breakers).values()), hide_index=True, key="depmap_nodes"
    )
with panel("Edges", "database"):
    st.dataframe(edge_rows(rt.map_store.load()), hide_index=True, key="depmap_edges")
