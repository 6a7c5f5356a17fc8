"""Admin API routes for switch plans (:class:`stability.plans.PlanService`): list plans and
runs, save and review a plan, run one (one reason, one expiry), approve, reject or revert
a run. The four-eyes rules are the service's (a run is approved, a plan reviewed, by
someone other than its proposer or author); each change writes a console audit row.

A plan is a set of switches, so its role checks are the switch actions
(``switch.propose`` to save or run, ``switch.approve`` to review or approve, ...) unless
:data:`console.roles.ACTIONS` names ``plan.<verb>`` actions of its own.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from console.roles import ACTIONS, User, can
from stability.errors import SwitchError

from .admin_auth import refuse
from .admin_context import AdminContext

__all__ = ["pending_plans", "plan_routes"]
_SWITCH_VERB = {"save": "propose", "run": "propose", "review": "approve", "approve": "approve"}


def role_action(verb: str) -> str:
    """The role action a plan ``verb`` needs: ``plan.<verb>`` if the console has it, else
    the switch action it amounts to."""
    own = f"plan.{verb}"
    return own if own in ACTIONS else f"switch.{_SWITCH_VERB.get(verb, verb)}"


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[dict[str, Any]]
    description: str = Field(default="", max_length=512)
    triggers: list[str] = Field(default_factory=list)


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=512)
    ttl_s: float | None = Field(default=None, gt=0)
    expires_at: datetime | None = None


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=512)


def pending_plans(ctx: AdminContext, user: User) -> list[dict[str, Any]]:
    """Plan runs waiting for approval and plans waiting for review, with whether ``user``
    may approve (review) each."""
    if ctx.plans is None:
        return []
    approve, review = can(user.role, role_action("approve")), can(user.role, role_action("review"))
    runs = [
        {
            **asdict(r),
            "waits_for": "approval",
            "you_may_approve": approve and r.actor != user.username,
        }
        for r in ctx.plans.live_runs()
        if r.status == "pending"
    ]
    drafts = [
        {
            **asdict(p),
            "waits_for": "review",
            "you_may_approve": review and p.author != user.username,
        }
        for p in ctx.plans.plans()
        if p.status == "draft"
    ]
    return runs + drafts


def plan_routes(ctx: AdminContext) -> APIRouter:
    """The ``/plans`` routes over ``ctx`` (which has a plan service)."""
    r = APIRouter(tags=["plans"])
    svc = ctx.plans

    def known_plan(name: str) -> None:
        try:
            svc.get(name)
        except SwitchError:
            raise refuse(404, f"no plan {name!r}") from None

    def known_run(run_id: int, status: tuple[str, ...]) -> Any:
        try:
            run = svc.get_run(run_id)
        except SwitchError:
            raise refuse(404, f"no plan run #{run_id}") from None
        if run.status not in status:
            raise refuse(409, f"plan run #{run_id} is {run.status}")
        return run

    @r.get("/plans")
    def list_plans(request: Request, limit: int = 50) -> dict[str, Any]:
        """Every plan, and the newest runs."""
        ctx.user(request, "view")
        runs = svc.runs(max(1, min(limit, 500)))
        return {"plans": [asdict(p) for p in svc.plans()], "runs": [asdict(x) for x in runs]}

    @r.put("/plans/{name}")
    def save(name: str, body: PlanIn, request: Request) -> dict[str, Any]:
        """Store a plan (a draft until someone else reviews it)."""
        user = ctx.user(request, role_action("save"))
        detail = {"steps": body.steps, "description": body.description}
        return asdict(
            ctx.audited(
                user,
                "plan.save",
                name,
                detail,
                lambda: svc.create(
                    name,
                    body.steps,
                    author=user.username,
                    description=body.description,
                    triggers=body.triggers,
                ),
            )
        )

    @r.post("/plans/{name}/review")
    def review(name: str, request: Request) -> dict[str, Any]:
        user = ctx.user(request, role_action("review"))
        known_plan(name)
        return asdict(
            ctx.audited(
                user, "plan.review", name, {}, lambda: svc.review(name, reviewer=user.username)
            )
        )

    @r.post("/plans/{name}/run", status_code=201)
    def run(name: str, body: RunIn, request: Request) -> dict[str, Any]:
        """Propose a run of a reviewed plan; it applies once a second person approves."""
        user = ctx.user(request, role_action("run"))
        known_plan(name)
        expires_at = body.expires_at
        if expires_at is None and body.ttl_s is not None:
            expires_at = datetime.now(UTC) + timedelta(seconds=body.ttl_s)
        detail = {"reason": body.reason, "expires_at": expires_at}
        return asdict(
            ctx.audited(
                user,
                "plan.run",
                name,
                detail,
                lambda: svc.run(
                    name, actor=user.username, reason=body.reason, expires_at=expires_at
                ),
            )
        )

    def end(verb: str, run_id: int, request: Request, reason: str | None) -> dict[str, Any]:
        user = ctx.user(request, role_action(verb))
        run = known_run(run_id, ("pending",) if verb != "revert" else ("active",))
        calls = {
            "approve": lambda: svc.approve(run_id, approver=user.username),
            "reject": lambda: svc.reject(run_id, actor=user.username, reason=reason or ""),
            "revert": lambda: svc.revert(run_id, actor=user.username, reason=reason or ""),
        }
        detail: dict[str, Any] = {"run_id": run_id}
        if reason is not None:
            detail["reason"] = reason
        return asdict(ctx.audited(user, f"plan.{verb}", run.plan, detail, calls[verb]))

    @r.post("/plans/runs/{run_id}/approve")
    def approve(run_id: int, request: Request) -> dict[str, Any]:
        """Approve a pending run: its steps apply now, in order."""
        return end("approve", run_id, request, None)

    @r.post("/plans/runs/{run_id}/reject")
    def reject(run_id: int, body: ReasonIn, request: Request) -> dict[str, Any]:
        """Refuse a pending run (or withdraw one's own)."""
        return end("reject", run_id, request, body.reason)

    @r.post("/plans/runs/{run_id}/revert")
    def revert(run_id: int, body: ReasonIn, request: Request) -> dict[str, Any]:
        """Undo every step of an active run, in one action."""
        return end("revert", run_id, request, body.reason)

    return r
