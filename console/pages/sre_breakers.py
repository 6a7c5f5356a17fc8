"""Breakers (recent state changes) and the timeout lint of the dependency map."""

from __future__ import annotations

import streamlit as st

from console.pages import platform, require
from console.views.depmap import breaker_states, lint_rows
from console.views.switches import breaker_rows

require("sre")
st.title("Breakers and timeouts")
p = platform()
rt = p.stability
events = rt.breaker_events.recent(500)
snapshot = rt.switches.snapshot()
st.subheader("Breaker states")
states = breaker_states(events, snapshot)
if states:
    st.dataframe(
        [{"resource": k, "state": v} for k, v in sorted(states.items())],
        hide_index=True,
        key="breaker_states",
    )
else:
    st.caption("Every breaker closed (no state change recorded).")
st.subheader("Recent breaker events")
resource = st.selectbox(
    "Resource", ["", *sorted({e["resource"] for e in events})], key="breaker_resource"
)
st.dataframe(breaker_rows(events, resource or None), hide_index=True, key="breaker_events")
st.subheader("Timeout lint")
overhead = st.number_input(
    "Per-hop overhead (ms)", min_value=0, value=0, step=10, key="lint_overhead"
)
findings = lint_rows(rt.map_store.load(), overhead_ms=int(overhead))
if findings:
    st.warning(f"{len(findings)} timeout finding(s)")
    st.dataframe(findings, hide_index=True, key="lint_findings")
else:
    st.success("Every timeout exceeds what its callee can spend.")
