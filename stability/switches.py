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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from .errors import ApprovalError, StabilityError, SwitchConflict, SwitchError
from .schema import AuditEntry, ConfigVersion, Switch

log = logging.getLogger(__name__)
KINDS = ("degrade", "force_breaker", "set_limit", "dry_run_limit")
MAX_HORIZON = timedelta(days=7)
PENDING, ACTIVE, EXPIRED, REVERTED, REJECTED = (
    "pending",
    "active",
    "expired",
    "reverted",
    "rejected",
)


class SwitchStorageError(StabilityError):
    code = "switch_storage_unavailable"
    http_status = 503


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SwitchRecord:
    id: int
    kind: str
    target: str
    params: dict[str, Any]
    reason: str
    actor: str
    status: str
    requires_approval: bool
    approved_by: str | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class SwitchSnapshot:
    """What every process applies: derived from the active switches at one version."""

    version: int = 0
    degraded: frozenset[str] = frozenset()
    forced: dict[str, str] = field(default_factory=dict)  # resource -> forced_open|forced_closed
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule name -> overrides
    dry_run: frozenset[str] = frozenset()  # limit rule names
    #: the earliest expiry of a pending or active switch at this version (None: none):
    #: until then no switch can expire, so watchers skip the expiry check
    next_expiry: datetime | None = None

    @classmethod
    def build(
        cls,
        version: int,
        switches: Iterable[SwitchRecord],
        next_expiry: datetime | None = None,
    ) -> SwitchSnapshot:
        degraded, forced, limits, dry = set(), {}, {}, set()
        for sw in sorted(switches, key=lambda s: s.id):  # later changes win
            if sw.kind == "degrade":
                degraded.add(sw.target)
            elif sw.kind == "force_breaker":
                forced[sw.target] = sw.params["state"]
            elif sw.kind == "set_limit":
                limits[sw.target] = dict(sw.params)
            elif sw.kind == "dry_run_limit":
                dry.add(sw.target)
        return cls(version, frozenset(degraded), forced, limits, frozenset(dry), next_expiry)


def _validate(kind: str, params: dict[str, Any]) -> None:
    if kind not in KINDS:
        raise SwitchError(f"kind must be one of {', '.join(KINDS)}")
    if kind == "force_breaker" and params.get("state") not in ("forced_open", "forced_closed"):
        raise SwitchError("force_breaker needs state forced_open or forced_closed")
    if kind == "set_limit":
        rate, burst = params.get("rate"), params.get("burst", params.get("rate"))
        for name, value in (("rate", rate), ("burst", burst)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SwitchError(f"set_limit needs a positive {name}")


class SwitchService:
    """Changes and reads switches. ``needs_approval(kind, target)`` decides the flow
    (the guard wires it to the dependency map: strong dependencies and core links)."""

    def __init__(
        self,
        engine: Engine,
        *,
        needs_approval: Callable[[str, str], bool] = lambda kind, target: False,
        clock: Callable[[], datetime] = utcnow,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.needs_approval = needs_approval
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
        _validate(kind, params)
        if not actor or not actor.strip():
            raise SwitchError("an actor is required")
        if not reason or not reason.strip():
            raise SwitchError("a reason is required")
        now = self.clock()
        if expires_at is None and ttl is not None:
            expires_at = now + ttl
        if expires_at is None:
            raise SwitchError("an expiry is required")
        if expires_at.tzinfo is None:
            raise SwitchError("expiry must be timezone-aware")
        if not now < expires_at <= now + MAX_HORIZON:
            raise SwitchError("expiry must be in the future and within 7 days")
        if not target or len(target) > 128:
            raise SwitchError("a target is required")
        approval = self.needs_approval(kind, target)
        status = PENDING if approval else ACTIVE

        def work(conn: Connection) -> int:
            self._expire(conn, now, kind=kind, target=target)  # a lapsed twin makes room
            live = self._live_of(conn, kind, target)
            if live is not None:
                raise conflict(live)
            sid = conn.execute(
                sa.insert(Switch)
                .values(
                    kind=kind,
                    target=target,
                    params=json.dumps(params),
                    reason=reason,
                    actor=actor,
                    status=status,
                    requires_approval=approval,
                    approved_by=None,
                    created_at=now,
                    expires_at=expires_at,
                    applied_at=None if approval else now,
                )
                .returning(Switch.id)
            ).scalar_one()
            after = {
                "kind": kind,
                "target": target,
                "params": params,
                "status": status,
                "expires_at": expires_at.isoformat(),
            }
            self._audit(
                conn,
                actor,
                "propose" if approval else "apply",
                target,
                sid,
                reason,
                None,
                after,
                now,
            )
            return int(sid)

        try:
            sid = self._tx(work)
        except SwitchStorageError as e:
            if not isinstance(e.__cause__, sa_exc.IntegrityError):
                raise
            # a concurrent apply of the same kind and target won the unique index
            with self._connect() as conn:
                live = self._live_of(conn, kind, target)
            if live is None:
                raise SwitchConflict(
                    f"a {kind} switch for {target} was changed at the same "
                    "moment; reload and retry",
                    resource=target,
                ) from None
            raise conflict(live) from None
        return self.get(sid)

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
            sw = _record(row)
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
        return _in_force(self._live(), now)

    def live(self, now: datetime | None = None) -> list[SwitchRecord]:
        """Pending and active switches not past their expiry, oldest first: what is in force
        or waits for approval (at most one per kind and target)."""
        now = now or self.clock()
        return [sw for sw in self._live() if sw.expires_at > now]

    def listing(self, limit: int = 200) -> list[SwitchRecord]:
        with self._connect() as conn:
            rows = conn.execute(sa.select(Switch).order_by(Switch.id.desc()).limit(limit)).all()
        return [_record(r) for r in rows]

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
        return SwitchSnapshot.build(version, _in_force(live, now), next_expiry)

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            ).all()
        return [
            {
                "id": r.id,
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "switch_id": r.switch_id,
                "reason": r.reason,
                "before": json.loads(r.before),
                "after": json.loads(r.after),
                "version": r.version,
            }
            for r in rows
        ]

    # -- internals -------------------------------------------------------------------------
    def _live(self) -> list[SwitchRecord]:
        """Pending and active switches (some may be past expiry), oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(Switch).where(Switch.status.in_((PENDING, ACTIVE))).order_by(Switch.id)
            ).all()
        return [_record(r) for r in rows]

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
        return None if row is None else _record(row)

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except sa_exc.SQLAlchemyError as e:
            raise SwitchStorageError("switch store unavailable") from e

    def _tx(self, fn: Callable[[Connection], Any]) -> Any:
        try:
            with self.engine.begin() as conn:
                result = fn(conn)
                version = conn.execute(
                    sa.select(ConfigVersion.version).where(ConfigVersion.id == 1)
                ).scalar_one()
        except sa_exc.SQLAlchemyError as e:
            raise SwitchStorageError("switch store unavailable") from e
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
        return _record(row)

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


def conflict(live: SwitchRecord) -> SwitchConflict:
    """The refusal of a second switch of ``live``'s kind on its target, naming ``live``."""
    state = "pending approval" if live.status == PENDING else "already active"
    return SwitchConflict(
        f"a {live.kind} switch for {live.target} is {state} (#{live.id}, by {live.actor}, "
        f"until {live.expires_at:%Y-%m-%d %H:%M} UTC): revert it or let it expire first",
        resource=live.target,
        existing_id=live.id,
    )


def _in_force(switches: list[SwitchRecord], now: datetime) -> list[SwitchRecord]:
    return [sw for sw in switches if sw.status == ACTIVE and sw.expires_at > now]


def _record(row: Any) -> SwitchRecord:
    s = row[0] if not hasattr(row, "kind") else row
    return SwitchRecord(
        id=int(s.id),
        kind=s.kind,
        target=s.target,
        params=json.loads(s.params),
        reason=s.reason,
        actor=s.actor,
        status=s.status,
        requires_approval=bool(s.requires_approval),
        approved_by=s.approved_by,
        created_at=_aware(s.created_at),
        expires_at=_aware(s.expires_at),
    )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
