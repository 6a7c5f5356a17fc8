"""Admin API routes for switches and approvals: list, dry-run, propose/apply, approve,
reject, revert. Each change goes through :class:`stability.switches.SwitchService` (the
four-eyes rule: the proposer cannot approve or reject) and writes the console audit row
the Switches page writes (:meth:`AdminContext.audited`)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from console.roles import can
from console.views.switch_effects import before_after, merchants_by_pay_org, switch_impact
from console.views.switches import preview_switch
from stability.errors import SwitchError
from stability.switches import ACTIVE, PENDING, SwitchRecord

from .admin_auth import refuse
from .admin_context import AdminContext
from .admin_plans import pending_plans

__all__ = ["SwitchIn", "switch_routes"]


class SwitchIn(BaseModel):
    """A switch to propose (or dry-run): ``ttl_s`` or ``expires_at`` sets its expiry."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(max_length=32)
    target: str = Field(max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(default="", max_length=512)
    ttl_s: float | None = Field(default=None, gt=0)
    expires_at: datetime | None = None

    def expiry(self) -> datetime | None:
        if self.expires_at is not None:
            return self.expires_at
        if self.ttl_s is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=self.ttl_s)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=512)


def record_out(rec: SwitchRecord) -> dict[str, Any]:
    """A switch as the API answers it."""
    return asdict(rec)


def _in_state(ctx: AdminContext, switch_id: int, states: tuple[str, ...]) -> SwitchRecord:
    """The switch ``switch_id`` (404 if none), 409 unless its status is one of ``states``."""
    try:
        rec: SwitchRecord = ctx.stability.switches.get(switch_id)
    except SwitchError:
        raise refuse(404, f"no switch #{switch_id}") from None
    if rec.status not in states:
        raise refuse(409, f"switch #{switch_id} is {rec.status}")
    return rec


def switch_routes(ctx: AdminContext) -> APIRouter:
    """The ``/switches`` and ``/approvals`` routes over ``ctx``."""
    r = APIRouter(tags=["switches"])
    svc = ctx.stability.switches

    @r.get("/switches")
    def list_switches(request: Request, all: bool = False, limit: int = 200) -> dict[str, Any]:
        """Live switches (pending and in force), or with ``all`` the newest ``limit``."""
        ctx.user(request, "view")
        rows = svc.listing(max(1, min(limit, 1000))) if all else svc.live()
        return {"switches": [record_out(x) for x in rows], "version": svc.version()}

    @r.post("/switches/dry-run")
    def dry_run(body: SwitchIn, request: Request) -> dict[str, Any]:
        """What the switch would do; nothing is written."""
        ctx.user(request, "switch.propose")
        dmap, rules = ctx.stability.map_store.load(), ctx.stability.guard.base_rules
        preview = preview_switch(
            dmap,
            rules,
            body.kind,
            body.target,
            reason=body.reason,
            expires_at=body.expiry(),
            params=body.params,
        )
        before, after = before_after(dmap, rules, body.kind, body.target, body.params)
        merchants = merchants_by_pay_org(ctx.engine)
        imp = switch_impact(dmap, rules, body.kind, body.target, body.params, merchants)
        return {**asdict(preview), "before": before, "after": after, "impact": asdict(imp)}

    @r.post("/switches", status_code=201)
    def propose(body: SwitchIn, request: Request) -> dict[str, Any]:
        """Apply a switch (or propose it, when a second person must approve)."""
        user = ctx.user(request, "switch.propose")
        expires_at = body.expiry()
        detail = {
            "kind": body.kind,
            "params": body.params,
            "reason": body.reason,
            "expires_at": expires_at.isoformat() if expires_at else None,
        }

        def work() -> SwitchRecord:
            return svc.propose(
                body.kind,
                body.target,
                actor=user.username,
                reason=body.reason,
                expires_at=expires_at,
                params=body.params,
            )

        return record_out(ctx.audited(user, "switch.propose", body.target, detail, work))

    @r.post("/switches/{switch_id}/approve")
    def approve(switch_id: int, request: Request) -> dict[str, Any]:
        user = ctx.user(request, "switch.approve")
        rec = _in_state(ctx, switch_id, (PENDING,))
        return record_out(
            ctx.audited(
                user,
                "switch.approve",
                rec.target,
                {"switch_id": switch_id},
                lambda: svc.approve(switch_id, approver=user.username),
            )
        )

    @r.post("/switches/{switch_id}/reject")
    def reject(switch_id: int, body: ReasonIn, request: Request) -> dict[str, Any]:
        user = ctx.user(request, "switch.reject")
        rec = _in_state(ctx, switch_id, (PENDING,))
        return record_out(
            ctx.audited(
                user,
                "switch.reject",
                rec.target,
                {"switch_id": switch_id, "reason": body.reason},
                lambda: svc.reject(switch_id, approver=user.username, reason=body.reason),
            )
        )

    @r.post("/switches/{switch_id}/revert")
    def revert(switch_id: int, body: ReasonIn, request: Request) -> dict[str, Any]:
        """End a switch (or withdraw a pending one) before its expiry."""
        user = ctx.user(request, "switch.revert")
        rec = _in_state(ctx, switch_id, (PENDING, ACTIVE))
        return record_out(
            ctx.audited(
                user,
                "switch.revert",
                rec.target,
                {"switch_id": switch_id, "reason": body.reason},
                lambda: svc.revert(switch_id, actor=user.username, reason=body.reason),
            )
        )

    @r.get("/approvals")
    def approvals(request: Request) -> dict[str, Any]:
        """What waits for a second person, and whether the caller may approve each."""
        user = ctx.user(request, "view")
        may = can(user.role, "switch.approve")
        pending = [x for x in svc.live() if x.status == PENDING]
        out = [
            {**record_out(x), "you_may_approve": may and x.actor != user.username} for x in pending
        ]
        return {"switches": out, "plans": pending_plans(ctx, user)}

    @r.get("/audit")
    def audit(request: Request, limit: int = 100) -> dict[str, Any]:
        """The switch audit log, newest first (what the Switches page shows)."""
        ctx.user(request, "sre")
        return {"entries": svc.audit_log(max(1, min(limit, 1000)))}

    return r
