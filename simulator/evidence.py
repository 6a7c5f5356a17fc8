"""What the platform did during a drill, read from its database afterwards.

Alerts fired (``alert_history``), breakers opened (``stability_breaker_events``),
guard outcomes incl. fallbacks (the ``paywatch_guard_outcomes_total`` series in the
time-series store, or Prometheus), pay exceptions and compensation tasks, the ledger
trial balance, and internal reconciliation (run over the drill's window, as the
worker's job does every minute) with the differences it recorded.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from alerts.schema import AlertHistory
from collectors import make_query
from collectors.store import TimeSeriesStore
from paycore import Database, PayCore
from paycore.db.schema import CompensationTask, Notification, PayException, ReconDifference
from paycore.ledger import trial_balance
from paycore.recon import reconcile_internal
from stability.schema import BreakerEvent

GUARD = "paywatch_guard_outcomes_total"
FALLBACKS = ("fallback", "degraded")  #: weak dependencies served by their fallback
FAIL_FAST = ("breaker_open", "blocked")  #: strong dependencies refused at once (503/429)
OPEN_STATES = ("open", "forced_open")


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def alerts_fired(engine: Engine, start: float, end: float) -> list[dict[str, Any]]:
    """Alert transitions to firing (and resolutions) between ``start`` and ``end``."""
    h = AlertHistory
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(h.rule, h.labels, h.to_state, h.value, h.at)
            .where(h.at >= start, h.at <= end, h.to_state.in_(("firing", "resolved")))
            .order_by(h.at)
        ).all()
    return [
        {
            "rule": r.rule,
            "labels": json.loads(r.labels or "{}"),
            "state": r.to_state,
            "value": r.value,
            "at_s": round(r.at - start, 1),
        }
        for r in rows
    ]


def breaker_events(engine: Engine, start: float, end: float) -> list[dict[str, Any]]:
    """Breaker state changes between ``start`` and ``end`` (every process's)."""
    b = BreakerEvent
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(b.resource, b.from_state, b.to_state, b.reason, b.at)
            .where(b.at >= _dt(start), b.at <= _dt(end))
            .order_by(b.at, b.id)
        ).all()
    return [
        {
            "resource": r.resource,
            "from": r.from_state,
            "to": r.to_state,
            "reason": r.reason,
            "at_s": round(r.at.timestamp() - start, 1),
        }
        for r in rows
    ]


def guard_outcomes(
    engine: Engine, start: float, end: float, prometheus_url: str | None = None
) -> dict[str, dict[str, float]]:
    """resource → outcome → calls during the drill (counter increase)."""
    window = max(1.0, end - start)
    out: dict[str, dict[str, float]] = {}
    if prometheus_url:
        for s in make_query(prometheus_url, engine).rate(
            GUARD, window=window, at=end, by=("resource", "outcome")
        ):
            res, outcome = s.labels.get("resource", ""), s.labels.get("outcome", "")
            out.setdefault(res, {})[outcome] = round((s.value or 0.0) * window, 1)
        return out
    inc = TimeSeriesStore(engine).increase(GUARD, window=window, at=end, by=("resource", "outcome"))
    for (res, outcome), n in sorted(inc.items()):
        if n:
            out.setdefault(res, {})[outcome] = round(n, 1)
    return out


def _counts(engine: Engine, model: Any, start: float, *cols: Any) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*cols, sa.func.count()).where(model.created_at >= _dt(start)).group_by(*cols)
        ).all()
    return {"/".join(str(v) for v in r[:-1]): int(r[-1]) for r in rows}


def platform_evidence(
    engine: Engine,
    start: float,
    end: float,
    *,
    prometheus_url: str | None = None,
    recon: bool = True,
    core: PayCore | None = None,
) -> dict[str, Any]:
    """Everything above as one JSON-ready dict (``end`` = now, after settling).

    ``core``: the platform's own pay core when it runs in this process (its id generator
    must be the only one with its node id); otherwise one is built over ``engine``.
    """
    alerts = alerts_fired(engine, start, end)
    breakers = breaker_events(engine, start, end)
    guard = guard_outcomes(engine, start, end, prometheus_url)
    tally: Counter[str] = Counter()
    for outcomes in guard.values():
        tally.update({k: int(v) for k, v in outcomes.items()})
    db = Database(engine)
    tb = trial_balance(db)
    out: dict[str, Any] = {
        "alerts": alerts,
        "alerts_fired": sorted({a["rule"] for a in alerts if a["state"] == "firing"}),
        "breaker_events": breakers,
        "breakers_opened": sorted({b["resource"] for b in breakers if b["to"] in OPEN_STATES}),
        "guard_outcomes": guard,
        "fallbacks_taken": sum(tally[k] for k in FALLBACKS),
        "fail_fast": sum(tally[k] for k in FAIL_FAST),
        "pay_exceptions": _counts(
            engine, PayException, start, PayException.kind, PayException.status
        ),
        "compensation_tasks": _counts(
            engine, CompensationTask, start, CompensationTask.kind, CompensationTask.status
        ),
        "notifications": _counts(engine, Notification, start, Notification.status),
        "trial_balance": {
            "ok": tb.ok,
            "legs_total": tb.legs_total,
            "unbalanced_entries": len(tb.unbalanced_entries),
            "account_mismatches": len(tb.account_mismatches),
            "pending_postings": tb.pending_postings,
        },
    }
    with engine.connect() as conn:
        out["money_not_returned"] = int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(PayException)
                .where(PayException.created_at >= _dt(start), PayException.status != "resolved")
            ).scalar_one()
        )
    if recon:
        report = reconcile_internal(
            core or PayCore(db), window_s=end - start + 120.0, now=_dt(end) + timedelta(seconds=1)
        )
        diffs = _counts(
            engine, ReconDifference, start, ReconDifference.kind, ReconDifference.status
        )
        out["recon"] = {
            "checked": report.checked,
            "matched": report.matched,
            "differences": report.differences,
            "by_kind": report.counts,
            "recorded": diffs,
        }
    return out
