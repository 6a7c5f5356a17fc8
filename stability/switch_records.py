"""What a switch is: its record, the snapshot every process applies, and the checks a
proposal passes before :class:`~stability.switches.SwitchService` stores it."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import SwitchConflict, SwitchError, UnknownSwitchTarget

__all__ = [
    "ACTIVE",
    "EXPIRED",
    "KINDS",
    "MAX_HORIZON",
    "PENDING",
    "REJECTED",
    "REVERTED",
    "SwitchRecord",
    "SwitchSnapshot",
    "audit_of",
    "check_proposal",
    "check_target",
    "conflict",
    "in_force",
    "record_of",
    "utcnow",
]

KINDS = ("degrade", "force_breaker", "set_limit", "dry_run_limit")
MAX_HORIZON = timedelta(days=7)
PENDING, ACTIVE, EXPIRED, REVERTED, REJECTED = (
    "pending",
    "active",
    "expired",
    "reverted",
    "rejected",
)


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
                if "rate" in sw.params:  # a trial limit: the new rate, counted in dry run
                    limits[sw.target] = dict(sw.params)
        return cls(version, frozenset(degraded), forced, limits, frozenset(dry), next_expiry)


def _validate(kind: str, params: dict[str, Any]) -> None:
    if kind not in KINDS:
        raise SwitchError(f"kind must be one of {', '.join(KINDS)}")
    if kind == "force_breaker" and params.get("state") not in ("forced_open", "forced_closed"):
        raise SwitchError("force_breaker needs state forced_open or forced_closed")
    if kind == "set_limit" or (kind == "dry_run_limit" and params):
        rate, burst = params.get("rate"), params.get("burst", params.get("rate"))
        for name, value in (("rate", rate), ("burst", burst)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SwitchError(f"{kind} needs a positive {name}")


def check_proposal(
    kind: str,
    target: str,
    params: dict[str, Any],
    *,
    actor: str,
    reason: str,
    now: datetime,
    expires_at: datetime | None,
    ttl: timedelta | None,
) -> datetime:
    """Refuse a malformed proposal (:class:`SwitchError`); returns its expiry."""
    _validate(kind, params)
    if not actor or not actor.strip():
        raise SwitchError("an actor is required")
    if not reason or not reason.strip():
        raise SwitchError("a reason is required")
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
    return expires_at


def check_target(known: Mapping[str, Collection[str]], kind: str, target: str) -> None:
    """Refuse (:class:`UnknownSwitchTarget`) a target ``known[kind]`` does not have; a
    kind ``known`` does not list is not checked."""
    names = known.get(kind)
    if names is not None and target not in names:
        what = "limit rule" if kind in ("set_limit", "dry_run_limit") else "resource"
        raise UnknownSwitchTarget(
            f"unknown target {target!r} for {kind}: no {what} of that name", resource=target
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


def in_force(switches: list[SwitchRecord], now: datetime) -> list[SwitchRecord]:
    """The active switches of ``switches`` not past their expiry at ``now``."""
    return [sw for sw in switches if sw.status == ACTIVE and sw.expires_at > now]


def record_of(row: Any) -> SwitchRecord:
    """A :class:`SwitchRecord` from a row of the switches table."""
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


def audit_of(row: Any) -> dict[str, Any]:
    """An audit entry as :meth:`SwitchService.audit_log` lists it."""
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "switch_id": row.switch_id,
        "reason": row.reason,
        "before": json.loads(row.before),
        "after": json.loads(row.after),
        "version": row.version,
    }


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
