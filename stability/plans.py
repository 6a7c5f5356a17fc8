"""Switch plans: named, reviewed plans of several steps, run as one action.

A plan (e.g. "channel SANDBOX_A outage": force the channel's breaker open, halve its limit,
silence its alerts for 30 minutes, annotate the charts) is stored with its author and
runs only after a second person reviewed it (:class:`~stability.plan_book.PlanBook`).
Running it proposes a *run* with one reason and one expiry; a second person approves the
run (as for a core-link switch), and only then are its steps applied, in order, each
audited in the stability audit log. A step that fails undoes the ones before it.
Reverting the run undoes every step in reverse, in one action, putting back what the
steps replaced (a limit returns to its previous value).

The platform proposes runs itself (:data:`SYSTEM` is the proposer) when a plan's trigger
fires: :func:`stability.plan_triggers.propose_for_breakers` and
:func:`alerts.plan_proposals.propose_for_alerts`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from .errors import ApprovalError, SwitchConflict, SwitchError, SwitchStorageError
from .plan_apply import apply_steps, revert_run
from .plan_book import PlanBook
from .plan_records import (
    ACTIVE,
    EXPIRED,
    PENDING,
    REJECTED,
    REVERTED,
    REVIEWED,
    SYSTEM,
    PlanRecord,
    PlanRunRecord,
    note,
    run_of,
)
from .plan_schema import PlanRun
from .plan_steps import RunContext
from .switch_records import MAX_HORIZON

__all__ = ["SYSTEM", "PlanRecord", "PlanRunRecord", "PlanService"]


class PlanService(PlanBook):
    """Stores, reviews (:class:`PlanBook`), runs, approves and reverts switch plans.

    ``PlanService(engine, switches, dmap=lambda: guard.map, rules=lambda: guard.base_rules,
    handlers=alerts.plan_silence.silence_handlers(engine))``."""

    def run(
        self,
        name: str,
        *,
        actor: str,
        reason: str,
        ttl: timedelta | None = None,
        expires_at: datetime | None = None,
        trigger: str = "",
    ) -> PlanRunRecord:
        """Propose a run of a reviewed plan with one reason and one expiry (``ttl`` or
        ``expires_at``); it applies once a second person approves it (:meth:`approve`)."""
        now = self.clock()
        if not actor or not actor.strip():
            raise SwitchError("an actor is required")
        if not reason or not reason.strip():
            raise SwitchError("a reason is required")
        if expires_at is None and ttl is not None:
            expires_at = now + ttl
        if expires_at is None or expires_at.tzinfo is None:
            raise SwitchError("a timezone-aware expiry is required")
        if not now < expires_at <= now + MAX_HORIZON:
            raise SwitchError("expiry must be in the future and within 7 days")
        plan = self.get(name)
        if plan.status != REVIEWED:
            raise ApprovalError(f"plan {name} has not been reviewed by a second person")
        steps = self.check_steps(plan.steps)  # the map or the rules may have changed since
        row = {
            "plan_name": name,
            "steps": json.dumps(steps),
            "actor": actor.strip()[:64],
            "reason": reason.strip()[:512],
            "trigger": trigger[:256],
            "status": PENDING,
            "created_at": now,
            "expires_at": expires_at,
            "applied": "[]",
            "error": "",
        }

        def work(conn: Connection) -> int:
            self._expire_pending(conn, now, name)
            live = self._live_run(conn, name)
            if live is not None:
                raise SwitchConflict(
                    f"plan {name} already has a {live.status} run (#{live.id}, by {live.actor})",
                    resource=name,
                    existing_id=live.id,
                )
            rid = conn.execute(sa.insert(PlanRun).values(row).returning(PlanRun.id)).scalar_one()
            run = self._run(conn, int(rid))
            why, more = run.reason, {"expires_at": expires_at, "trigger": trigger}
            note(conn, run, run.actor, "plan_propose", why, (None, PENDING), now, **more)
            return int(rid)

        try:
            rid = self._tx(work)
        except SwitchStorageError as exc:
            if not isinstance(exc.__cause__, sa_exc.IntegrityError):
                raise
            raise SwitchConflict(f"plan {name} was run at the same moment", resource=name) from None
        return self.get_run(rid)

    def propose(
        self, name: str, *, trigger: str, reason: str, ttl: timedelta
    ) -> PlanRunRecord | None:
        """The platform proposes a run (proposer :data:`SYSTEM`) because ``trigger`` fired;
        ``None`` when the plan already has a live run or cannot run."""
        try:
            return self.run(name, actor=SYSTEM, reason=reason, ttl=ttl, trigger=trigger)
        except SwitchError:
            return None

    def approve(self, run_id: int, *, approver: str) -> PlanRunRecord:
        """A second person approves a pending run: its steps apply now, in order."""
        now = self.clock()

        def claim(conn: Connection) -> PlanRunRecord:
            run = self._run(conn, run_id)
            if run.status != PENDING:
                raise ApprovalError(f"plan run #{run_id} is {run.status}, not pending")
            if not approver or approver in (run.actor, SYSTEM):
                raise ApprovalError("a plan run must be approved by a second person")
            if run.expires_at <= now:
                raise ApprovalError("plan run already expired")
            self._set(conn, run, ACTIVE, approved_by=approver[:64], applied_at=now)
            note(conn, run, approver, "plan_approve", run.reason, (PENDING, ACTIVE), now)
            return run

        run = self._tx(claim)
        ctx = RunContext(run.id, run.plan, run.actor, approver, run.reason, run.expires_at, now)
        apply_steps(self, run, ctx)
        return self.get_run(run.id)

    def reject(self, run_id: int, *, actor: str, reason: str) -> PlanRunRecord:
        """Refuse a pending run (someone else), or withdraw it (its proposer)."""
        if not reason or not reason.strip():
            raise SwitchError("a reason is required")
        now = self.clock()

        def work(conn: Connection) -> None:
            run = self._run(conn, run_id)
            if run.status != PENDING:
                raise SwitchError(f"plan run #{run_id} is {run.status}, not pending")
            self._set(conn, run, REJECTED, ended_at=now, ended_by=actor[:64])
            action = "plan_withdraw" if actor == run.actor else "plan_reject"
            note(conn, run, actor, action, reason, (PENDING, REJECTED), now)

        self._tx(work)
        return self.get_run(run_id)

    def revert(self, run_id: int, *, actor: str, reason: str) -> PlanRunRecord:
        """Undo every step of an active run in reverse, in one action; what a step replaced
        (a switch, a limit's previous value) is put back."""
        return revert_run(self, run_id, actor=actor, reason=reason, status=REVERTED)

    def expire_due(self) -> int:
        """End runs past their expiry (the expiry job): pending ones expire, active ones are
        undone by the system as a revert would. Returns the count."""
        now, done = self.clock(), 0
        for run in self.runs(limit=500):
            if run.status not in (PENDING, ACTIVE) or run.expires_at > now:
                continue
            if run.status == PENDING:
                self._tx(partial(self._expire_pending, now=now, name=run.plan))
            else:
                revert_run(self, run.id, actor=SYSTEM, reason="expired", status=EXPIRED)
            done += 1
        return done

    def get_run(self, run_id: int) -> PlanRunRecord:
        """The run ``run_id`` (:class:`SwitchError` if there is none)."""
        with self._connect() as conn:
            return self._run(conn, run_id)

    def runs(self, limit: int = 100) -> list[PlanRunRecord]:
        """The newest runs first."""
        with self._connect() as conn:
            rows = conn.execute(sa.select(PlanRun).order_by(PlanRun.id.desc()).limit(limit))
            return [run_of(r) for r in rows]

    def live_runs(self, now: datetime | None = None) -> list[PlanRunRecord]:
        """Pending and active runs not past their expiry, oldest first."""
        now = now or self.clock()
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(PlanRun)
                .where(PlanRun.status.in_((PENDING, ACTIVE)), PlanRun.expires_at > now)
                .order_by(PlanRun.id)
            )
            return [run_of(r) for r in rows]

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _run(conn: Connection, run_id: int) -> PlanRunRecord:
        row = conn.execute(sa.select(PlanRun).where(PlanRun.id == run_id)).first()
        if row is None:
            raise SwitchError(f"no plan run #{run_id}")
        return run_of(row)

    @staticmethod
    def _live_run(conn: Connection, name: str) -> PlanRunRecord | None:
        row = conn.execute(
            sa.select(PlanRun)
            .where(PlanRun.plan_name == name, PlanRun.status.in_((PENDING, ACTIVE)))
            .limit(1)
        ).first()
        return None if row is None else run_of(row)

    def _expire_pending(self, conn: Connection, now: datetime, name: str) -> None:
        """Mark a pending run of ``name`` past its expiry expired (it makes room)."""
        run = self._live_run(conn, name)
        if run is not None and run.status == PENDING and run.expires_at <= now:
            self._set(conn, run, EXPIRED, ended_at=now, ended_by=SYSTEM)
            note(conn, run, SYSTEM, "plan_expire", "expired", (PENDING, EXPIRED), now)

    @staticmethod
    def _set(conn: Connection, run: PlanRunRecord, status: str, **values: Any) -> None:
        """Move ``run`` from its status to ``status``, unless someone moved it meanwhile."""
        result = conn.execute(
            sa.update(PlanRun)
            .where(PlanRun.id == run.id, PlanRun.status == run.status)
            .values(status=status, **values)
        )
        if result.rowcount != 1:
            raise SwitchError(f"plan run #{run.id} changed concurrently; reload and retry")
