"""Breakers (state, calls, failure and slow-call ratios over each window, the switch forcing
it), breaker events grouped by transition, and the timeout lint of the dependency map."""

from __future__ import annotations

import streamlit as st

from console.pages import platform, require
from console.panel import panel
from console.urlstate import url_select
from console.views.depmap import breaker_table, grouped_events, lint_rows
from stability.breaker_stats import read_stats

require("sre")
st.title("Breakers and timeouts")
p = platform()
rt = p.stability

with panel("Breakers", "database"):
    events = rt.breaker_events.recent(500)
    table = breaker_table(read_stats(p.db.engine), events, rt.switches.live())
    if table:
        ratio = st.column_config.NumberColumn(format="%.2f")
        st.dataframe(
            table,
            hide_index=True,
            key="breaker_states",
            column_config={"failure_ratio": ratio, "slow_ratio": ratio},
        )
        st.caption(
            "calls, failure_ratio and slow_ratio: each breaker's current window, summed "
            "over the processes that reported in the last 90 s; forced_by: the switch "
            "that pins it."
        )
    else:
        st.caption("Every breaker closed (no calls in any window, no state change recorded).")

with panel("Breaker events", "database"):
    events = rt.breaker_events.recent(500)
    resource = url_select(
        "Resource",
        ["", *sorted({e["resource"] for e in events})],
        key="resource",
        format_func=lambda r: r or "(all)",
    )
    groups = grouped_events(events, resource or None)
    if groups:
        st.dataframe(groups, hide_index=True, key="breaker_events")
        st.caption(f"{len(events)} most recent events, grouped by resource and transition.")
    else:
        st.caption("No breaker event recorded.")

with panel("Timeout lint", "database"):
    overhead = st.number_input(
        "Per-hop overhead (ms)", min_value=0, value=0, step=10, key="lint_overhead"
    )
    findings = lint_rows(rt.map_store.load(), overhead_ms=int(overhead))
    if findings:
        st.warning(f"{len(findings)} timeout finding(s)")
        st.dataframe(findings, hide_index=True, key="lint_findings")
    else:
        st.success("Every timeout exceeds what its callee can spend.")
