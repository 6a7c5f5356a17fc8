"""Applying a plan run's steps in order, and undoing them in reverse (a revert, an expiry
or a step that failed). Every step done or undone is one stability audit entry."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .errors import StabilityError, SwitchConflict, SwitchError
from .plan_records import ACTIVE, FAILED, PENDING, REVERTED, PlanRunRecord, note
from .plan_schema import PlanRun
from .plan_steps import RunContext, StepHandler, describe

log = logging.getLogger(__name__)


class PlanService(Protocol):
    """What applying and reverting use of :class:`stability.plans.PlanService`."""

    handlers: dict[str, StepHandler]
    clock: Callable[[], datetime]

    def _tx(self, fn: Callable[[Connection], Any]) -> Any: ...

    def _run(self, conn: Connection, run_id: int) -> PlanRunRecord: ...

    def _set(self, conn: Connection, run: PlanRunRecord, status: str, **values: Any) -> None: ...

    def get_run(self, run_id: int) -> PlanRunRecord: ...

    def reject(self, run_id: int, *, actor: str, reason: str) -> PlanRunRecord: ...


def _save(
    svc: PlanService,
    run: PlanRunRecord,
    applied: list[dict[str, Any]],
    audit: tuple[Any, ...] = (),
    extra: dict[str, Any] | None = None,
    **values: Any,
) -> None:
    """Store what the steps did (and ``values``) and, in the same transaction, the audit
    entry ``note(conn, run, *audit, **extra)``."""

    def work(conn: Connection) -> None:
        conn.execute(
            sa.update(PlanRun)
            .where(PlanRun.id == run.id)
            .values(applied=json.dumps(applied, default=str), **values)
        )
        if audit:
            note(conn, run, *audit, **(extra or {}))

    svc._tx(work)


def apply_steps(svc: PlanService, run: PlanRunRecord, ctx: RunContext) -> None:
    """Apply ``run``'s steps in order (``run`` is active); a step that fails undoes the
    ones before it, marks the run failed and raises a :class:`SwitchError` naming it."""
    applied: list[dict[str, Any]] = []
    for i, step in enumerate(run.steps, 1):
        try:
            done = svc.handlers[step["kind"]].apply(step, ctx)
        except Exception as exc:
            _fail(svc, run, ctx, applied, i, exc)
            raise _failure(run, i, step, exc) from exc
        applied.append({"step": i, "done": done})
        what = (ctx.by, "plan_step", f"step {i}: {describe(step)}", (ACTIVE, ACTIVE), ctx.now)
        _save(svc, run, applied, what, {"step": i, "done": done})


def _failure(run: PlanRunRecord, i: int, step: dict[str, Any], exc: Exception) -> Exception:
    text = (
        f"plan {run.plan} run #{run.id} failed at step {i} ({describe(step)}): "
        f"{getattr(exc, 'message', str(exc))}; the steps before it were undone"
    )
    if isinstance(exc, SwitchConflict):
        return SwitchConflict(text, resource=exc.resource, existing_id=exc.existing_id)
    if isinstance(exc, StabilityError) and not isinstance(exc, SwitchError):
        return exc  # a storage outage stays a 503
    return SwitchError(text, resource=getattr(exc, "resource", None))


def _fail(
    svc: PlanService,
    run: PlanRunRecord,
    ctx: RunContext,
    applied: list[dict[str, Any]],
    i: int,
    exc: Exception,
) -> None:
    errors = _undo_all(svc, run, ctx, applied)
    error = f"step {i}: {exc}"[:500]
    what = (ctx.by, "plan_failed", error, (ACTIVE, FAILED), ctx.now)
    values = {"status": FAILED, "ended_at": ctx.now, "ended_by": ctx.by, "error": error}
    _save(svc, run, applied, what, {"undo_errors": errors}, **values)


def _undo_all(
    svc: PlanService, run: PlanRunRecord, ctx: RunContext, applied: list[dict[str, Any]]
) -> list[str]:
    """Undo ``applied`` in reverse, auditing each; returns the undo failures (the other
    steps are still undone)."""
    errors = []
    for entry in reversed(applied):
        i, step = entry["step"], run.steps[entry["step"] - 1]
        try:
            entry["undone"] = svc.handlers[step["kind"]].undo(step, entry["done"], ctx)
        except Exception as exc:  # noqa: BLE001 - the other steps must still be undone
            log.warning("plan run #%s: undoing step %s failed: %s", run.id, i, exc)
            errors.append(f"step {i}: {exc}"[:200])
            entry["undo_error"] = str(exc)[:200]
            continue
        what = (ctx.by, "plan_undo", f"step {i}: {describe(step)}", (run.status,) * 2, ctx.now)
        _save(svc, run, applied, what, {"step": i, "undone": entry["undone"]})
    return errors


def revert_run(
    svc: PlanService, run_id: int, *, actor: str, reason: str, status: str = REVERTED
) -> PlanRunRecord:
    """End an active run (``status``: reverted, or expired for the expiry job) and undo
    its steps in reverse; a pending run is withdrawn or rejected instead."""
    if not actor or not actor.strip():
        raise SwitchError("an actor is required")
    if not reason or not reason.strip():
        raise SwitchError("a reason is required")
    now = svc.clock()
    current = svc.get_run(run_id)
    if current.status == PENDING:
        return svc.reject(run_id, actor=actor, reason=reason)

    def claim(conn: Any) -> PlanRunRecord:
        run = svc._run(conn, run_id)
        if run.status != ACTIVE:
            raise SwitchError(f"plan run #{run_id} is {run.status}, not active")
        svc._set(conn, run, status, ended_at=now, ended_by=actor[:64])
        action = "plan_revert" if status == REVERTED else "plan_expire"
        note(conn, run, actor, action, reason, (ACTIVE, status), now)
        return run

    run = svc._tx(claim)
    ended = PlanRunRecord(**{**run.__dict__, "status": status})
    ctx = RunContext(run.id, run.plan, run.actor, actor, reason, run.expires_at, now)
    applied = [dict(e) for e in run.applied]
    errors = _undo_all(svc, ended, ctx, applied)
    _save(svc, run, applied, error="; ".join(errors)[:500])
    return svc.get_run(run.id)
