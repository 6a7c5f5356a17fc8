"""Switches: degrade, force a breaker, set a limit, dry-run a limit — with reason,
expiry, audit log, version and second-person approval.

The database is the source of truth. Every change bumps one version counter in the
same transaction as its audit entry; processes watch that counter (see
:mod:`stability.propagation`) and rebuild their :class:`SwitchSnapshot` from the
active switches. An expired switch stops applying at its expiry even before the
expiry job marks it, because :meth:`SwitchService.active` filters by time.

One live switch per kind and target: a second pending or active switch of the same kind
for the same target is refused with :class:`~stability.errors.SwitchConflict` naming the
one in force. The service checks inside the writing transaction, and a partial unique
index (``uq_stability_switches_live``, PostgreSQL and SQLite) holds when two processes
apply at the same moment (SQLite serialises writers with ``BEGIN IMMEDIATE`` anyway).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from backends.errors import DriverErrors

from .errors import ApprovalError, SwitchConflict, SwitchError, SwitchStorageError
from .schema import AuditEntry, ConfigVersion, Switch
from .switch_records import (  # noqa: F401 - KINDS, MAX_HORIZON, SwitchRecord re-exported
    ACTIVE,
    EXPIRED,
    KINDS,
    MAX_HORIZON,
    PENDING,
    REJECTED,
    REVERTED,
    SwitchRecord,
    SwitchSnapshot,
    audit_of,
    check_proposal,
    check_target,
    conflict,
    in_force,
    record_of,
    utcnow,
)

log = logging.getLogger(__name__)
_STORAGE = DriverErrors(lambda exc: SwitchStorageError("switch store unavailable"))


class SwitchService:
    """Changes and reads switches. ``needs_approval(kind, target)`` decides the flow
    (the guard wires it to the dependency map: strong dependencies and core links);
    ``targets()`` (:func:`stability.policy.target_checker`) names what each kind may
    target: a proposal naming anything else is refused with :class:`UnknownSwitchTarget`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        needs_approval: Callable[[str, str], bool] = lambda kind, target: False,
        clock: Callable[[], datetime] = utcnow,
        on_commit: Callable[[int], None] | None = None,
        targets: Callable[[], Mapping[str, Collection[str]]] | None = None,
    ) -> None:
        self.engine = engine
        self.needs_approval = needs_approval
        self.targets = targets
        self.clock = clock
        self.on_commit = on_commit  # e.g. publish the new version on Redis

    # -- changes ---------------------------------------------------------------------------
    def propose(
        self,
        kind: str,
        target: str,
        *,
        actor: str,
        reason: str,
        expires_at: datetime | None = None,
        ttl: timedelta | None = None,
        params: dict[str, Any] | None = None,
    ) -> SwitchRecord:
        """Create a switch. It applies at once, or after approval for strong targets."""
        params = dict(params or {})
        now = self.clock()
        expires_at = check_proposal(
            kind,
            target,
            params,
            actor=actor,
            reason=reason,
            now=now,
            expires_at=expires_at,
            ttl=ttl,
        )
        if self.targets is not None:
            check_target(self.targets(), kind, target)
        approval = self.needs_approval(kind, target)
        status = PENDING if approval else ACTIVE

        row = {
            "kind": kind,
            "target": target,
            "params": params,
            "status": status,
            "expires_at": expires_at,
            "reason": reason,
            "actor": actor,
            "requires_approval": approval,
        }

        def work(conn: Connection) -> int:
            self._expire(conn, now, kind=kind, target=target)  # a lapsed twin makes room
            live = self._live_of(conn, kind, target)
            if live is not None:
                raise conflict(live)
            return self._insert(conn, now, row)

        try:
            sid = self._tx(work)
        except SwitchStorageError as e:
            if not isinstance(e.__cause__, sa_exc.IntegrityError):
                raise
            raise self._lost_race(kind, target) from None
        return self.get(sid)

    def _insert(self, conn: Connection, now: datetime, row: dict[str, Any]) -> int:
        """Store a new switch (``row``: its columns, ``params`` as a dict) and audit it."""
        approval = row["requires_approval"]
        values = {
            **row,
            "params": json.dumps(row["params"]),
            "approved_by": None,
            "created_at": now,
            "applied_at": None if approval else now,
        }
        sid = conn.execute(sa.insert(Switch).values(values).returning(Switch.id)).scalar_one()
        after = {key: row[key] for key in ("kind", "target", "params", "status")}
        after["expires_at"] = row["expires_at"].isoformat()
        action = "propose" if approval else "apply"
        self._audit(conn, row["actor"], action, row["target"], sid, row["reason"], None, after, now)
        return int(sid)

    def _lost_race(self, kind: str, target: str) -> SwitchConflict:
        """The refusal of a proposal whose insert lost the unique index to a concurrent
        apply of the same kind and target: names the winner when it is still live."""
        with self._connect() as conn:
            live = self._live_of(conn, kind, target)
        if live is None:
            return SwitchConflict(
                f"a {kind} switch for {target} was changed at the same moment; reload and retry",
                resource=target,
            )
        return conflict(live)

    def approve(self, switch_id: int, *, approver: str) -> SwitchRecord:
        """A second person approves a pending switch; it applies from now."""
        now = self.clock()

        def work(conn: Connection) -> int:
            sw = self._load(conn, switch_id)
            if sw.status != PENDING:
                raise ApprovalError(f"switch is {sw.status}, not pending")
            if not approver or approver == sw.actor:
                raise ApprovalError("a switch must be approved by a second person")
            if sw.expires_at <= now:
                raise ApprovalError("switch already expired")
            self._set_status(conn, sw, ACTIVE, approved_by=approver, applied_at=now)
            self._audit(
                conn,
                approver,
                "approve",
                sw.target,
                sw.id,
                sw.reason,
                {"status": PENDING},
                {"status": ACTIVE, "approved_by": approver},
                now,
            )
            return sw.id

        return self.get(self._tx(work))

    def reject(self, switch_id: int, *, approver: str, reason: str) -> SwitchRecord:
        return self._end(switch_id, REJECTED, approver, reason, from_status=(PENDING,))

    def revert(self, switch_id: int, *, actor: str, reason: str) -> SwitchRecord:
        """End a switch before its expiry."""
        return self._end(switch_id, REVERTED, actor, reason, from_status=(PENDING, ACTIVE))

    def expire_due(self) -> int:
        """Mark every switch past its expiry as expired (the expiry job); returns the count."""
        now = self.clock()
        return int(self._tx(lambda conn: self._expire(conn, now)))

    def _expire(
        self, conn: Connection, now: datetime, *, kind: str | None = None, target: str | None = None
    ) -> int:
        """Mark live switches past their expiry (of one kind and target, if given) expired."""
        query = sa.select(Switch).where(
            Switch.status.in_((PENDING, ACTIVE)), Switch.expires_at <= now
        )
        if kind is not None:
            query = query.where(Switch.kind == kind, Switch.target == target)
        due = conn.execute(query).all()
        for row in due:
            sw = record_of(row)
            if self._set_status(conn, sw, EXPIRED, ended_at=now):
                self._audit(
                    conn,
                    "system",
                    "expire",
                    sw.target,
                    sw.id,
                    "expired",
                    {"status": sw.status},
                    {"status": EXPIRED},
                    now,
                )
        return len(due)

    def _end(
        self, switch_id: int, status: str, actor: str, reason: str, from_status: tuple[str, ...]
    ) -> SwitchRecord:
        if not reason or not reason.strip():
            raise SwitchError("a reason is required")
        now = self.clock()

        def work(conn: Connection) -> int:
            sw = self._load(conn, switch_id)
            if sw.status not in from_status:
                raise SwitchError(f"switch is {sw.status}")
            if status == REJECTED and actor == sw.actor:
                raise ApprovalError("a switch must be rejected by a second person")
            self._set_status(conn, sw, status, ended_at=now)
            self._audit(
                conn,
                actor,
                status,
                sw.target,
                sw.id,
                reason,
                {"status": sw.status},
                {"status": status},
                now,
            )
            return sw.id

        return self.get(self._tx(work))

    # -- reads -----------------------------------------------------------------------------
    def get(self, switch_id: int) -> SwitchRecord:
        with self._connect() as conn:
            return self._load(conn, switch_id)

    def active(self, now: datetime | None = None) -> list[SwitchRecord]:
        """Switches in force right now (active and not past expiry)."""
        now = now or self.clock()
        return in_force(self._live(), now)

    def live(self, now: datetime | None = None) -> list[SwitchRecord]:
        """Pending and active switches not past their expiry, oldest first: what is in force
        or waits for approval (at most one per kind and target)."""
        now = now or self.clock()
        return [sw for sw in self._live() if sw.expires_at > now]

    def listing(self, limit: int = 200) -> list[SwitchRecord]:
        with self._connect() as conn:
            rows = conn.execute(sa.select(Switch).order_by(Switch.id.desc()).limit(limit)).all()
        return [record_of(r) for r in rows]

    def version(self) -> int:
        with self._connect() as conn:
            return int(
                conn.execute(
                    sa.select(ConfigVersion.version).where(ConfigVersion.id == 1)
                ).scalar_one()
            )

    def snapshot(self) -> SwitchSnapshot:
        """The version and the active switches, read consistently enough for polling."""
        version, now = self.version(), self.clock()
        live = self._live()  # one read: what is in force, and the earliest expiry
        next_expiry = min((sw.expires_at for sw in live), default=None)
        return SwitchSnapshot.build(version, in_force(live, now), next_expiry)

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            ).all()
        return [audit_of(r) for r in rows]

    # -- internals -------------------------------------------------------------------------
    def _live(self) -> list[SwitchRecord]:
        """Pending and active switches (some may be past expiry), oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(Switch).where(Switch.status.in_((PENDING, ACTIVE))).order_by(Switch.id)
            ).all()
        return [record_of(r) for r in rows]

    @staticmethod
    def _live_of(conn: Connection, kind: str, target: str) -> SwitchRecord | None:
        """The pending or active switch of ``kind`` on ``target``, if any."""
        row = conn.execute(
            sa.select(Switch)
            .where(
                Switch.kind == kind, Switch.target == target, Switch.status.in_((PENDING, ACTIVE))
            )
            .order_by(Switch.id)
            .limit(1)
        ).first()
        return None if row is None else record_of(row)

    def _connect(self) -> Connection:
        with _STORAGE:
            return self.engine.connect()

    def _tx(self, fn: Callable[[Connection], Any]) -> Any:
        with _STORAGE, self.engine.begin() as conn:
            result = fn(conn)
            version = conn.execute(
                sa.select(ConfigVersion.version).where(ConfigVersion.id == 1)
            ).scalar_one()
        if self.on_commit is not None:
            try:
                self.on_commit(int(version))
            except Exception:  # noqa: BLE001 - polling still picks the change up
                log.warning("switch change publish failed; processes will poll it")
        return result

    def _load(self, conn: Connection, switch_id: int) -> SwitchRecord:
        row = conn.execute(sa.select(Switch).where(Switch.id == switch_id)).first()
        if row is None:
            raise SwitchError("no such switch")
        return record_of(row)

    def _set_status(self, conn: Connection, sw: SwitchRecord, status: str, **values: Any) -> bool:
        result = conn.execute(
            sa.update(Switch)
            .where(Switch.id == sw.id, Switch.status == sw.status)
            .values(status=status, **values)
        )
        if result.rowcount != 1:
            raise SwitchError("switch changed concurrently; reload and retry")
        return True

    def _audit(
        self,
        conn: Connection,
        actor: str,
        action: str,
        target: str,
        switch_id: int,
        reason: str,
        before: Any,
        after: Any,
        now: datetime,
    ) -> None:
        conn.execute(
            sa.update(ConfigVersion)
            .where(ConfigVersion.id == 1)
            .values(version=ConfigVersion.version + 1)
        )
        version = conn.execute(
            sa.select(ConfigVersion.version).where(ConfigVersion.id == 1)
        ).scalar_one()
        conn.execute(
            sa.insert(AuditEntry).values(
                at=now,
                actor=actor,
                action=action,
                target=target,
                switch_id=switch_id,
                reason=reason,
                before=json.dumps(before, default=str),
                after=json.dumps(after, default=str),
                version=version,
            )
        )
