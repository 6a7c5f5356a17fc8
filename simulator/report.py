"""Drill reports: the verdict, saving (database row + JSON file) and reading back.

A report is a plain dict (JSON-ready) with these top-level keys: ``drill``, ``status``
(``passed`` | ``failed`` | ``not_applicable``), ``reason``, ``target``, ``started_at``,
``finished_at``, ``time_factor``, ``steps`` (what was applied when), ``traffic`` (the
simulator's counters), ``audit`` (lost/doubled from the client-side ledger) and
``platform`` (:func:`~.evidence.platform_evidence`), plus ``checks`` (each verdict).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .schema import DrillReportRow

LIST_COLUMNS = (
    "id",
    "name",
    "status",
    "target",
    "started_at",
    "payments_sent",
    "payments_paid",
    "payments_failed",
    "lost",
    "doubled",
    "alerts_fired",
    "breakers_opened",
    "trial_balance_ok",
    "recon_differences",
)


def checks(report: dict[str, Any]) -> dict[str, bool]:
    """The pass/fail checks of a drill: nothing lost or doubled, books balanced,
    reconciliation clean (what could not be measured is left out)."""
    audit = report.get("audit") or {}
    plat = report.get("platform") or {}
    out = {
        "no_payment_lost": audit.get("lost", 0) == 0 and plat.get("money_not_returned", 0) == 0,
        "no_payment_doubled": audit.get("doubled", 0) == 0,
    }
    if "trial_balance" in plat:
        out["trial_balance_zero"] = bool(plat["trial_balance"]["ok"])
    if "recon" in plat:
        out["reconciliation_clean"] = plat["recon"]["differences"] == 0
    return out


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the list shows (also the row's columns)."""
    traffic = report.get("traffic") or {}
    audit = report.get("audit") or {}
    plat = report.get("platform") or {}
    return {
        "payments_sent": int(traffic.get("pays_sent", 0)),
        "payments_paid": int(traffic.get("paid", 0)),
        "payments_failed": int(traffic.get("pay_failed", 0)) + int(traffic.get("pays_refused", 0)),
        "lost": int(audit.get("lost", 0)) + int(plat.get("money_not_returned", 0)),
        "doubled": int(audit.get("doubled", 0)),
        "alerts_fired": len(plat.get("alerts_fired", [])),
        "breakers_opened": len(plat.get("breakers_opened", [])),
        "trial_balance_ok": (plat.get("trial_balance") or {}).get("ok"),
        "recon_differences": (plat.get("recon") or {}).get("differences"),
    }


def write_json(report: dict[str, Any], var_dir: str | Path) -> Path:
    """``<var_dir>/drills/<started>-<name>.json``."""
    stamp = str(report["started_at"]).replace(":", "").replace("-", "")[:15]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(report["drill"]["name"]))
    path = Path(var_dir) / "drills" / f"{stamp}-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    return path


def save_report(engine: Engine, report: dict[str, Any], json_path: str = "") -> int:
    """Insert the report's row; returns its id."""
    head = headline(report)
    values = {
        "name": str(report["drill"]["name"])[:64],
        "status": report["status"],
        "target": str(report.get("target", ""))[:64],
        "started_at": datetime.fromisoformat(report["started_at"]),
        "finished_at": datetime.fromisoformat(report["finished_at"]),
        "time_factor": float(report.get("time_factor", 1.0)),
        "json_path": json_path[:512],
        "report": json.dumps(report, default=str),
        **head,
    }
    with engine.begin() as conn:
        result = conn.execute(sa.insert(DrillReportRow).values(**values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def list_reports(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The newest reports' headline rows."""
    t = DrillReportRow
    cols = [getattr(t, c) for c in LIST_COLUMNS]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*cols).order_by(t.started_at.desc(), t.id.desc()).limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]


def get_report(engine: Engine, report_id: int) -> dict[str, Any] | None:
    """One stored report (the whole JSON), or None."""
    with engine.connect() as conn:
        stmt = sa.select(DrillReportRow.report).where(DrillReportRow.id == report_id)
        text = conn.execute(stmt).scalar_one_or_none()
    return None if text is None else dict(json.loads(text))


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A human summary for the terminal."""
    head = headline(report)
    lines = [
        f"drill {report['drill']['name']} on {report.get('target') or '-'}: "
        f"{report['status'].upper()}"
    ]
    if report.get("reason"):
        lines.append(f"  reason: {report['reason']}")
    lines.append(
        "  payments: sent {payments_sent}, paid {payments_paid}, failed/refused "
        "{payments_failed}; lost {lost}, doubled {doubled}".format(**head)
    )
    plat = report.get("platform") or {}
    if plat:
        lines.append(f"  alerts fired: {', '.join(plat.get('alerts_fired', [])) or 'none'}")
        lines.append(
            f"  breakers opened: {', '.join(plat.get('breakers_opened', [])) or 'none'}"
            f"; fail-fast {plat.get('fail_fast', 0)}, fallbacks "
            f"{plat.get('fallbacks_taken', 0)}"
        )
        lines.append(
            f"  trial balance ok: {head['trial_balance_ok']}; recon differences: "
            f"{head['recon_differences']}"
        )
    for name, ok in (report.get("checks") or {}).items():
        lines.append(f"  [{'ok' if ok else 'FAIL'}] {name}")
    return lines


def detail_tables(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A stored report as rows for tables: checks, steps, traffic, alerts, breakers, guard."""
    plat = report.get("platform") or {}
    guard = [
        {"resource": res, **outcomes}
        for res, outcomes in sorted((plat.get("guard_outcomes") or {}).items())
    ]
    steps = [
        {
            "at_s": s.get("at_s"),
            "kind": s.get("kind"),
            "target": s.get("target"),
            "params": json.dumps(s.get("params", {})),
            "error": s.get("error", ""),
        }
        for s in report.get("steps", [])
    ]
    traffic = {k: v for k, v in (report.get("traffic") or {}).items() if k != "refusals"}
    return {
        "checks": [{"check": k, "ok": v} for k, v in (report.get("checks") or {}).items()],
        "steps": steps,
        "traffic": [{"counter": k, "value": v} for k, v in traffic.items()],
        "refusals": [
            {"code": k, "count": v}
            for k, v in ((report.get("traffic") or {}).get("refusals") or {}).items()
        ],
        "alerts": [
            {"rule": a["rule"], "state": a["state"], "at_s": a["at_s"], "value": a.get("value")}
            for a in plat.get("alerts", [])
        ],
        "breakers": list(plat.get("breaker_events", [])),
        "guard": guard,
    }
