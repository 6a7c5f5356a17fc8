"""Dependency map: resources and edges coloured by health, breaker and switch state, impact."""

from __future__ import annotations

import streamlit as st

from console.pages import platform, require
from console.views.depmap import (
    breaker_states,
    dependency_graph,
    edge_rows,
    impact_summary,
    node_status,
)

require("oncall")
st.title("Dependency map")
p = platform()
rt = p.stability
dmap = rt.map_store.load()
snapshot = rt.switches.snapshot()
breakers = breaker_states(rt.breaker_events.recent(500), snapshot)
names = [r.name for r in dmap.resources]
failed = st.selectbox(
    "Impact: what if this resource fails?", ["(none)", *names], key="impact_resource"
)
highlight = None if failed == "(none)" else failed
st.plotly_chart(dependency_graph(dmap, snapshot, breakers, highlight=highlight), key="depmap_graph")
if highlight:
    imp = impact_summary(dmap, highlight)
    c1, c2 = st.columns(2)
    c1.markdown("**Fails:** " + (", ".join(imp["fails"]) or "nothing"))
    c1.markdown("**Core links failing:** " + (", ".join(imp["core_links_failing"]) or "none"))
    c2.markdown("**Degrades:** " + (", ".join(imp["degrades"]) or "nothing"))
    c2.markdown("**Core links degraded:** " + (", ".join(imp["core_links_degraded"]) or "none"))
st.subheader("Resources")
st.dataframe(
    list(node_status(dmap, snapshot, breakers).values()), hide_index=True, key="depmap_nodes"
)
st.subheader("Edges")
st.dataframe(edge_rows(dmap), hide_index=True, key="depmap_edges")
