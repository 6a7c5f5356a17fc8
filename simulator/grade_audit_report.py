"""A grade audit's report as the terminal, the Drills page and the alert read it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import Engine

from alerts.grade_audit import METRIC
from collectors.store import TimeSeriesStore

JUDGED = ("confirmed", "contradicted")  #: verdicts that write a sample for the alert


def is_grade_audit(report: Mapping[str, Any]) -> bool:
    """Whether a stored drill report is a grade audit's."""
    return "grade_audit" in report


def edge_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per judged edge: grade, expected, observed, predicted, verdict, why."""
    return [
        {
            "edge": f"{e['caller']} -> {e['callee']}",
            "grade": e["grade"],
            "expected": e["expected"],
            "observed": e.get("observed") or "-",
            "impact query": e.get("predicted") or "-",
            "in traffic": e.get("predicted_in_traffic") or "-",
            "verdict": e["verdict"],
            "calls": json.dumps(e.get("calls") or {}, sort_keys=True),
            "why": e.get("why", ""),
        }
        for e in (report.get("grade_audit") or {}).get("edges", [])
    ]


def fault_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per faulted dependency: how, and each link's observed vs predicted effect."""
    rows = []
    for f in (report.get("grade_audit") or {}).get("faults", []):
        links = f.get("links") or {}
        rows.append(
            {
                "dependency": f["resource"],
                "fault": f.get("how") or f.get("reason", ""),
                "status": f.get("status", ""),
                "links (observed / impact query)": ", ".join(
                    f"{name[5:]} {v['observed']}/{v['predicted']}"
                    for name, v in sorted(links.items())
                    if v["observed"] != "none" or v["predicted"] != "none"
                )
                or "-",
                "impact in traffic": "; ".join(f.get("impact_in_traffic") or []),
                "breakers still open": ", ".join(f.get("still_open") or []),
            }
        )
    return rows


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The terminal's view: one line per edge, then the tallies."""
    audit = report.get("grade_audit") or {}
    lines = [
        f"grade audit ({audit.get('seconds_per_fault', 0):g}s per fault): "
        f"{str(report.get('status', '')).upper()}"
    ]
    for e in audit.get("edges", []):
        lines.append(
            f"  {e['verdict']:<14} {e['caller']} -> {e['callee']} ({e['grade']}): "
            f"expected {e['expected']}, observed {e.get('observed') or '-'}, "
            f"impact query {e.get('predicted') or '-'}"
            + (f"  [{e['why']}]" if e["verdict"] != "confirmed" and e.get("why") else "")
        )
    tallies = ", ".join(f"{k} {v}" for k, v in (audit.get("verdicts") or {}).items())
    lines.append(f"  verdicts: {tallies}")
    traffic, money = report.get("traffic") or {}, report.get("audit") or {}
    lines.append(
        f"  payments: sent {traffic.get('pays_sent', 0)}, paid {traffic.get('paid', 0)}; "
        f"lost {money.get('lost', 0)}, doubled {money.get('doubled', 0)}"
    )
    return lines


def contradiction_samples(
    edges: Iterable[Mapping[str, Any]], at: float
) -> list[tuple[float, str, dict[str, str], float]]:
    """The alert's samples: 1 per contradicted edge, 0 per confirmed one."""
    return [
        (
            at,
            METRIC,
            {"caller": e["caller"], "callee": e["callee"]},
            float(e["verdict"] == JUDGED[1]),
        )
        for e in edges
        if e["verdict"] in JUDGED
    ]


def write_contradictions(engine: Engine, edges: Iterable[Mapping[str, Any]]) -> int:
    """Write :func:`contradiction_samples` to the time-series store the alerts read."""
    return TimeSeriesStore(engine).write(contradiction_samples(edges, time.time()))
