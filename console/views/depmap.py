"""Breakers (state and window per resource, summed over live processes), breaker events
grouped, and the timeout lint as table rows. The live map itself is
:mod:`console.views.depmap_live` (data) and :mod:`console.views.depmap_graph` (drawing)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from stability.breaker_stats import BreakerWindow
from stability.depmap import DependencyMap, lint_timeouts
from stability.switches import SwitchRecord


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
