"""Admin API routes for the dependency map: read it, add/update/remove a resource or an
edge (role ``map.edit``), each with a reason.

An edit is stored by :class:`stability.depmap_store.DependencyMapStore`, then written to
the stability audit log in the transaction that bumps the config version every process
watches (:mod:`stability.propagation`), and published like a switch change: running
guards reload the map within a poll (``runtime.wiring``) — no restart.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from console.roles import User
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.errors import SwitchStorageError
from stability.schema import AuditEntry, ConfigVersion

from .admin_auth import refuse
from .admin_context import AdminContext

__all__ = ["EdgeIn", "ResourceIn", "map_routes", "record_map_change"]
#: the role action a map edit needs (:data:`console.roles.ACTIONS`)
ACTION = "map.edit"


class ResourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(max_length=32)
    owner: str = Field(default="", max_length=64)
    sla_target: float = 0.999
    core_link: bool = False
    description: str = Field(default="", max_length=256)
    reason: str = Field(max_length=512)


class EdgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grade: str = Field(max_length=8)
    timeout_ms: int
    retries: int = 0
    fallback: str = Field(default="", max_length=128)
    owner: str = Field(default="", max_length=64)
    sla_target: float = 0.999
    reason: str = Field(max_length=512)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=512)


def record_map_change(
    ctx: AdminContext, user: User, action: str, target: str, reason: str, before: Any, after: Any
) -> int:
    """Bump the config version and write the stability audit entry of a map edit in one
    transaction, then publish the version (Redis, when configured); the new version."""
    svc = ctx.stability.switches
    try:
        with ctx.engine.begin() as conn:
            conn.execute(
                sa.update(ConfigVersion)
                .where(ConfigVersion.id == 1)
                .values(version=ConfigVersion.version + 1)
            )
            version = int(
                conn.execute(
                    sa.select(ConfigVersion.version).where(ConfigVersion.id == 1)
                ).scalar_one()
            )
            conn.execute(
                sa.insert(AuditEntry).values(
                    at=datetime.now(UTC),
                    actor=user.username[:64],
                    action=action[:32],
                    target=target[:128],
                    switch_id=None,
                    reason=reason[:512],
                    before=json.dumps(before, default=str),
                    after=json.dumps(after, default=str),
                    version=version,
                )
            )
    except sa.exc.SQLAlchemyError:
        raise SwitchStorageError("config version store unavailable") from None
    if svc.on_commit is not None:
        with contextlib.suppress(Exception):  # polling still picks the change up
            svc.on_commit(version)
    return version


def _reason(reason: str) -> str:
    if not reason.strip():
        raise refuse(422, "a reason is required")
    return reason


def _edge(dmap: DependencyMap, caller: str, callee: str) -> dict[str, Any] | None:
    edge = dmap.edge(caller, callee)
    return None if edge is None else asdict(edge)


def _resource(dmap: DependencyMap, name: str) -> dict[str, Any] | None:
    found = [r for r in dmap.resources if r.name == name]
    return asdict(found[0]) if found else None


def map_routes(ctx: AdminContext) -> APIRouter:
    """The ``/map`` routes over ``ctx``."""
    r = APIRouter(tags=["dependency map"])
    store = ctx.stability.map_store

    def change(
        request: Request, action: str, target: str, reason: str, edit: Any
    ) -> dict[str, Any]:
        """Run ``edit(user, map) -> (before, after)`` audited in both logs."""
        user = ctx.user(request, ACTION)

        def work() -> dict[str, Any]:
            before, after = edit(store.load())
            version = record_map_change(ctx, user, action, target, _reason(reason), before, after)
            return {"target": target, "before": before, "after": after, "version": version}

        detail = {"reason": reason}
        return ctx.audited(user, action, target, detail, work)

    @r.get("/map")
    def show(request: Request) -> dict[str, Any]:
        """The stored map and the version the guards have seen."""
        ctx.user(request, "view")
        return {**store.load().to_dict(), "version": ctx.stability.switches.version()}

    @r.put("/map/resources/{name}")
    def put_resource(name: str, body: ResourceIn, request: Request) -> dict[str, Any]:
        """Add or update a resource."""
        fields = body.model_dump(exclude={"reason"})

        def edit(dmap: DependencyMap) -> tuple[Any, Any]:
            _reason(body.reason)
            spec = ResourceSpec(name=name, **fields)
            store.upsert_resource(spec)
            return _resource(dmap, name), asdict(spec)

        return change(request, "map.resource.put", name, body.reason, edit)

    @r.delete("/map/resources/{name}")
    def delete_resource(name: str, body: ReasonIn, request: Request) -> dict[str, Any]:
        """Remove a resource no edge touches (409 while one does)."""

        def edit(dmap: DependencyMap) -> tuple[Any, Any]:
            _reason(body.reason)
            before = _resource(dmap, name)
            if before is None:
                raise refuse(404, f"unknown resource {name!r}")
            touching = [
                f"{e.caller} -> {e.callee}" for e in dmap.edges if name in (e.caller, e.callee)
            ]
            if touching:
                raise refuse(
                    409, f"{name} still has edges: {', '.join(touching)}; remove them first"
                )
            kept = DependencyMap([x for x in dmap.resources if x.name != name], dmap.edges)
            seen = dmap.to_dict()
            if not store.replace_if(kept, lambda stored: stored.to_dict() == seen):
                raise refuse(409, "the map changed meanwhile; reload and retry")
            return before, None

        return change(request, "map.resource.delete", name, body.reason, edit)

    @r.put("/map/edges/{caller}/{callee}")
    def put_edge(caller: str, callee: str, body: EdgeIn, request: Request) -> dict[str, Any]:
        """Add or update ``caller -> callee`` (404 for an unknown end, 422 for a cycle)."""
        fields = body.model_dump(exclude={"reason"})

        def edit(dmap: DependencyMap) -> tuple[Any, Any]:
            _reason(body.reason)
            spec = EdgeSpec(caller=caller, callee=callee, **fields)
            store.upsert_edge(spec)
            return _edge(dmap, caller, callee), asdict(spec)

        target = f"{caller}->{callee}"
        return change(request, "map.edge.put", target, body.reason, edit)

    @r.delete("/map/edges/{caller}/{callee}")
    def delete_edge(caller: str, callee: str, body: ReasonIn, request: Request) -> dict[str, Any]:
        def edit(dmap: DependencyMap) -> tuple[Any, Any]:
            _reason(body.reason)
            before = _edge(dmap, caller, callee)
            if before is None or not store.delete_edge(caller, callee):
                raise refuse(404, f"no edge {caller} -> {callee}")
            return before, None

        target = f"{caller}->{callee}"
        return change(request, "map.edge.delete", target, body.reason, edit)

    return r
