"""The dependency map as a plotly graph, with breaker/switch state, impact and timeout lint."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from stability.breaker_stats import BreakerWindow
from stability.depmap import DependencyMap, impact, lint_timeouts
from stability.switches import SwitchRecord, SwitchSnapshot

from .overview import BAD, HEALTH_COLOURS, OK, UNKNOWN, WARN

_BREAKER_HEALTH = {
    "open": BAD,
    "forced_open": BAD,
    "half_open": WARN,
    "closed": OK,
    "forced_closed": OK,
}


def breaker_states(
    events: Iterable[Mapping[str, Any]], snapshot: SwitchSnapshot | None = None
) -> dict[str, str]:
    """Each resource's last recorded breaker state (events newest first), forced states
    from the switch snapshot winning."""
    states: dict[str, str] = {}
    for e in events:
        states.setdefault(str(e["resource"]), str(e["to"]))
    if snapshot is not None:
        states.update(snapshot.forced)
    return states


def node_status(
    dmap: DependencyMap,
    snapshot: SwitchSnapshot | None,
    breakers: Mapping[str, str],
    health: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per resource: breaker state, degraded switch, measured health and the overall status."""
    snap = snapshot or SwitchSnapshot()
    out: dict[str, dict[str, Any]] = {}
    for r in dmap.resources:
        breaker = breakers.get(r.name, "closed")
        degraded = r.name in snap.degraded
        status = _BREAKER_HEALTH.get(breaker, UNKNOWN)
        measured = (health or {}).get(r.name)
        if degraded and status == OK:
            status = WARN
        if measured in (WARN, BAD) and status in (OK, WARN):
            status = measured if status == OK or measured == BAD else status
        out[r.name] = {
            "resource": r.name,
            "kind": r.kind,
            "core_link": r.core_link,
            "breaker": breaker,
            "degraded": degraded,
            "status": status,
        }
    return out


def _layers(dmap: DependencyMap) -> dict[str, int]:
    """Depth of each resource: the longest caller chain above it (roots at 0)."""
    depth: dict[str, int] = {}

    def visit(name: str, d: int) -> None:
        if depth.get(name, -1) >= d:
            return
        depth[name] = d
        for callee in dmap.callees(name):
            visit(callee, d + 1)

    for root in dmap.roots():
        visit(root, 0)
    for r in dmap.resources:
        depth.setdefault(r.name, 0)
    return depth


def layout(dmap: DependencyMap) -> dict[str, tuple[float, float]]:
    """Node positions: one column per depth, names spread vertically in order."""
    depth = _layers(dmap)
    cols: dict[int, list[str]] = {}
    for name in sorted(depth):
        cols.setdefault(depth[name], []).append(name)
    pos: dict[str, tuple[float, float]] = {}
    for d, names in cols.items():
        n = len(names)
        for i, name in enumerate(names):
            pos[name] = (float(d), (n - 1) / 2.0 - i)
    return pos


def dependency_graph(
    dmap: DependencyMap,
    snapshot: SwitchSnapshot | None,
    breakers: Mapping[str, str],
    *,
    health: Mapping[str, str] | None = None,
    highlight: str | None = None,
) -> go.Figure:
    """Nodes = resources (colour = status, label = breaker and switch state), edges coloured
    by the callee's health, solid strong / dashed weak, grade shown at each edge's middle.
    With ``highlight`` the resources failing/degrading when it fails are outlined."""
    status = node_status(dmap, snapshot, breakers, health)
    pos = layout(dmap)
    hit_fail: set[str] = set()
    hit_degrade: set[str] = set()
    if highlight:
        imp = impact(dmap, highlight)
        hit_fail, hit_degrade = set(imp.fails), set(imp.degrades)
    fig = go.Figure()
    mid_x, mid_y, mid_text = [], [], []
    for e in dmap.edges:
        (x0, y0), (x1, y1) = pos[e.caller], pos[e.callee]
        colour = HEALTH_COLOURS[status[e.callee]["status"]]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                hoverinfo="text",
                showlegend=False,
                line={
                    "color": colour,
                    "width": 2.5 if e.grade == "strong" else 1.5,
                    "dash": "solid" if e.grade == "strong" else "dash",
                },
                text=f"{e.caller} → {e.callee}: {e.grade}, timeout {e.timeout_ms} ms",
                name=f"{e.caller}->{e.callee}",
            )
        )
        mid_x.append((x0 + x1) / 2)
        mid_y.append((y0 + y1) / 2)
        mid_text.append(e.grade)
    fig.add_trace(
        go.Scatter(
            x=mid_x,
            y=mid_y,
            mode="text",
            text=mid_text,
            showlegend=False,
            textfont={"size": 9, "color": "#555"},
            hoverinfo="skip",
            name="grades",
        )
    )
    names = [r.name for r in dmap.resources]
    labels, colours, outlines, hover = [], [], [], []
    for n in names:
        s = status[n]
        tags = [s["breaker"]] if s["breaker"] != "closed" else []
        if s["degraded"]:
            tags.append("degraded")
        labels.append(n + (f" [{', '.join(tags)}]" if tags else ""))
        colours.append(HEALTH_COLOURS[s["status"]])
        outlines.append(
            "#000" if n in hit_fail or n == highlight else "#ff7f0e" if n in hit_degrade else "#fff"
        )
        hover.append(
            f"{n} ({s['kind']}) breaker={s['breaker']} degraded={s['degraded']}"
            f"{' core link' if s['core_link'] else ''}"
        )
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in names],
            y=[pos[n][1] for n in names],
            mode="markers+text",
            text=labels,
            textposition="top center",
            hovertext=hover,
            hoverinfo="text",
            marker={
                "size": 18,
                "color": colours,
                "line": {"color": outlines, "width": 3},
                "symbol": ["diamond" if status[n]["core_link"] else "circle" for n in names],
            },
            name="resources",
            showlegend=False,
            customdata=names,
        )
    )
    fig.update_layout(
        height=max(400, 40 * len(names)),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"visible": False},
        yaxis={"visible": False},
        plot_bgcolor="white",
    )
    return fig


def impact_summary(dmap: DependencyMap, failed: str) -> dict[str, list[str]]:
    """What fails and what degrades (and which core links) when ``failed`` fails."""
    imp = impact(dmap, failed)
    return {
        "fails": imp.fails,
        "degrades": imp.degrades,
        "core_links_failing": imp.core_links_failing,
        "core_links_degraded": imp.core_links_degraded,
    }


def lint_rows(dmap: DependencyMap, *, overhead_ms: int = 0) -> list[dict[str, Any]]:
    """Timeout-lint findings as table rows."""
    return [
        {
            "caller": f.caller,
            "callee": f.callee,
            "caller_timeout_ms": f.caller_timeout_ms,
            "callee_spend_ms": f.callee_spend_ms,
            "path": " → ".join(f.path),
            "message": f.message,
        }
        for f in lint_timeouts(dmap, overhead_ms=overhead_ms)
    ]


def edge_rows(dmap: DependencyMap) -> list[dict[str, Any]]:
    return [
        {
            "caller": e.caller,
            "callee": e.callee,
            "grade": e.grade,
            "timeout_ms": e.timeout_ms,
            "retries": e.retries,
            "fallback": e.fallback,
        }
        for e in dmap.edges
    ]


#: a process whose breaker rows are older than this has stopped (publishers write every
#: few seconds when something changes, and at least every 30 s)
STALE_AFTER = timedelta(seconds=90)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def breaker_table(
    windows: Iterable[BreakerWindow],
    events: Iterable[Mapping[str, Any]],
    live: Iterable[SwitchRecord],
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per breaker: state, calls in its window (summed over the processes that
    published recently), failure and slow-call ratios against their thresholds, and the
    switch forcing it (id, who, until) if any. ``events`` newest first."""
    now = now or datetime.now(UTC)
    fresh: dict[str, list[BreakerWindow]] = {}
    stale: set[str] = set()
    for w in windows:
        if now - w.updated_at <= STALE_AFTER:
            fresh.setdefault(w.resource, []).append(w)
        else:
            stale.add(w.resource)
    last_event: dict[str, str] = {}
    for e in events:
        last_event.setdefault(str(e["resource"]), str(e["to"]))
    forcing = {
        sw.target: sw
        for sw in live
        if sw.kind == "force_breaker" and sw.status == "active" and sw.expires_at > now
    }
    rows = []
    for name in sorted(set(fresh) | stale | set(last_event) | set(forcing)):
        ws = fresh.get(name, [])
        calls = sum(w.calls for w in ws)
        fails, slow = sum(w.failures for w in ws), sum(w.slow_calls for w in ws)
        sw = forcing.get(name)
        states = sorted({w.state for w in ws})
        state = (
            sw.params.get("state")
            if sw
            else ("/".join(states) if states else last_event.get(name, "closed"))
        )
        cfg = ws[0] if ws else None
        rows.append(
            {
                "resource": name,
                "state": state,
                "calls": calls,
                "failure_ratio": _ratio(fails, calls),
                "slow_ratio": _ratio(slow, calls),
                "opens_at": (
                    f"fail ≥ {cfg.failure_threshold:g} or slow (≥ {cfg.slow_call_s:g} s) "
                    f"≥ {cfg.slow_threshold:g}, {cfg.min_calls}+ of last {cfg.window_size}"
                    if cfg
                    else ""
                ),
                "processes": len(ws),
                "updated": max((w.updated_at for w in ws), default=None),
                "forced_by": (
                    f"#{sw.id} by {sw.actor} until {sw.expires_at:%Y-%m-%d %H:%M} UTC" if sw else ""
                ),
            }
        )
    return rows


def grouped_events(
    events: Iterable[Mapping[str, Any]], resource: str | None = None
) -> list[dict[str, Any]]:
    """Breaker events grouped by resource and transition: how many, first and last time,
    the last reason (a flapping breaker is two rows, not hundreds); newest group first."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for e in events:
        if resource not in (None, "", e["resource"]):
            continue
        key = (str(e["resource"]), str(e["from"]), str(e["to"]))
        g = groups.get(key)
        if g is None:
            groups[key] = {
                "resource": key[0],
                "transition": f"{key[1]} → {key[2]}",
                "state": key[2],
                "count": 1,
                "first": e["at"],
                "last": e["at"],
                "last_reason": e["reason"],
                "nodes": {e.get("node", "")},
            }
            continue
        g["count"] += 1
        g["nodes"].add(e.get("node", ""))
        if e["at"] < g["first"]:
            g["first"] = e["at"]
        if e["at"] > g["last"]:
            g["last"], g["last_reason"] = e["at"], e["reason"]
    rows = sorted(groups.values(), key=lambda g: g["last"], reverse=True)
    return [{**g, "nodes": len(g["nodes"] - {""})} for g in rows]
