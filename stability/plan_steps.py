"""What a plan step is and how the switch steps and chart annotations are applied and
undone. A step is a JSON object with a ``kind``::

    {"kind": "force_breaker", "target": "channel.SANDBOX_A", "state": "forced_open"}
    {"kind": "set_limit", "target": "channel.SANDBOX_A.total", "factor": 0.5}   # or rate/burst
    {"kind": "degrade", "target": "notification"}
    {"kind": "dry_run_limit", "target": "risk.total"}
    {"kind": "silence", "matchers": {"pay_org": "SANDBOX_A"}, "minutes": 30}  # alerts.plan_silence
    {"kind": "annotate", "text": "SANDBOX_A outage plan"}

A switch step that finds a live switch of its kind on its target replaces it and puts it
back when the run is reverted (a limit returns to its previous value); one that finds its
target already in the wanted state does nothing and undoes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import policy
from .depmap import DependencyMap
from .errors import SwitchError, UnknownSwitchTarget
from .limits import LimitRule
from .plan_schema import Annotation
from .switch_records import ACTIVE, PENDING, SwitchRecord
from .switches import SwitchService

SWITCH_KINDS = ("degrade", "force_breaker", "set_limit", "dry_run_limit")
STEP_KINDS = (*SWITCH_KINDS, "silence", "annotate")
MAX_SILENCE_MIN = 7 * 24 * 60


@dataclass(frozen=True)
class RunContext:
    """Who acts on a run's steps and until when: ``actor`` proposed the run, ``by`` applies
    (the approver) or undoes it."""

    run_id: int
    plan: str
    actor: str
    by: str
    reason: str
    expires_at: datetime
    now: datetime


class StepHandler(Protocol):
    """Applies and undoes one kind of step; ``apply`` returns what ``undo`` needs."""

    def check(self, step: Mapping[str, Any]) -> None: ...

    def apply(self, step: Mapping[str, Any], ctx: RunContext) -> dict[str, Any]: ...

    def undo(
        self, step: Mapping[str, Any], done: Mapping[str, Any], ctx: RunContext
    ) -> dict[str, Any]: ...


def _positive(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def check_shape(step: Any) -> dict[str, Any]:
    """Refuse a malformed step (:class:`SwitchError`); returns it as a plain dict."""
    if not isinstance(step, Mapping):
        raise SwitchError("a plan step must be an object with a kind")
    step = dict(step)
    kind = step.get("kind")
    if kind not in STEP_KINDS:
        raise SwitchError(f"step kind must be one of {', '.join(STEP_KINDS)}, not {kind!r}")
    if kind in SWITCH_KINDS and not (isinstance(step.get("target"), str) and step["target"]):
        raise SwitchError(f"a {kind} step needs a target")
    if kind == "force_breaker" and step.get("state") not in ("forced_open", "forced_closed"):
        raise SwitchError("a force_breaker step needs state forced_open or forced_closed")
    if kind == "set_limit":
        if "factor" in step:
            if not _positive(step["factor"]) or step["factor"] > 10:
                raise SwitchError("a set_limit factor must be in (0, 10]")
        elif not all(_positive(step.get(k, step.get("rate"))) for k in ("rate", "burst")):
            raise SwitchError("a set_limit step needs a positive rate (and burst) or a factor")
    if kind == "silence":
        matchers = step.get("matchers")
        if not isinstance(matchers, Mapping) or not matchers:
            raise SwitchError("a silence step needs label matchers")
        minutes = step.get("minutes")
        if not _positive(minutes) or minutes > MAX_SILENCE_MIN:
            raise SwitchError("a silence step needs minutes in (0, 7 days]")
    if kind == "annotate":
        text = step.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > 200:
            raise SwitchError("an annotate step needs a text of at most 200 characters")
    return step


def acting_targets(dmap: DependencyMap, rules: Iterable[LimitRule]) -> dict[str, list[str]]:
    """The switch targets that act, per kind (:func:`stability.policy.acting_targets`)."""
    return policy.acting_targets(dmap, rules)


def describe(step: Mapping[str, Any]) -> str:
    """A step in words: ``force_breaker channel.SANDBOX_A → forced_open``."""
    kind = step.get("kind", "?")
    if kind == "force_breaker":
        return f"force the breaker of {step['target']} {step['state'].removeprefix('forced_')}"
    if kind == "set_limit":
        new = (
            f"× {step['factor']:g}"
            if "factor" in step
            else f"rate {step['rate']:g}/s, burst {step.get('burst', step['rate']):g}"
        )
        return f"set limit {step['target']} to {new}"
    if kind == "degrade":
        return f"degrade {step['target']}"
    if kind == "dry_run_limit":
        return f"dry-run limit {step['target']}"
    if kind == "silence":
        labels = ", ".join(f"{k}={v}" for k, v in sorted(step["matchers"].items()))
        return f"silence alerts {labels} for {step['minutes']:g} min"
    return f"annotate the charts: {step.get('text', '')}"


class SwitchSteps:
    """The four switch kinds, through :class:`SwitchService` (each change audited there).

    A switch that needs approval is approved by the run's approver, who approved the run."""

    def __init__(
        self,
        switches: SwitchService,
        dmap: Callable[[], DependencyMap],
        rules: Callable[[], Iterable[LimitRule]],
    ) -> None:
        self.switches = switches
        self.dmap = dmap
        self.rules = rules

    def check(self, step: Mapping[str, Any]) -> None:
        """Refuse a target the map or the rules do not have (:class:`UnknownSwitchTarget`,
        a 404), and one whose switch no guarded call reads (a 422)."""
        dmap, rules = self.dmap(), list(self.rules())
        kind, target = step["kind"], step["target"]
        if target in acting_targets(dmap, rules).get(kind, []):
            return
        names = {r.name for r in rules} if "limit" in kind else {r.name for r in dmap.resources}
        if target not in names:
            raise UnknownSwitchTarget(f"{kind} {target}: no such target", resource=target)
        raise SwitchError(
            f"{kind} {target}: switching it changes nothing (no guarded call reads it)",
            resource=target,
        )

    def _params(self, step: Mapping[str, Any], live: SwitchRecord | None) -> dict[str, Any]:
        kind = step["kind"]
        if kind == "force_breaker":
            return {"state": step["state"]}
        if kind != "set_limit":
            return {}
        if "factor" not in step:
            return {"rate": step["rate"], "burst": step.get("burst", step["rate"])}
        if live is not None and live.status == ACTIVE:
            rate, burst = live.params["rate"], live.params.get("burst", live.params["rate"])
        else:
            rule = next(r for r in self.rules() if r.name == step["target"])
            rate, burst = rule.rate, rule.burst
        f = float(step["factor"])
        return {"rate": round(rate * f, 3), "burst": max(1.0, round(burst * f, 3))}

    def apply(self, step: Mapping[str, Any], ctx: RunContext) -> dict[str, Any]:
        kind, target = step["kind"], step["target"]
        live = next(
            (s for s in self.switches.live(ctx.now) if s.kind == kind and s.target == target),
            None,
        )
        params = self._params(step, live)
        if live is not None and live.status == ACTIVE and live.params == params:
            return {"noop": True, "existing": live.id}
        replaced = None
        if live is not None:
            replaced = {
                "id": live.id,
                "params": live.params,
                "actor": live.actor,
                "approved_by": live.approved_by,
                "reason": live.reason,
                "status": live.status,
                "expires_at": live.expires_at.isoformat(),
            }
            self.switches.revert(
                live.id, actor=ctx.by, reason=f"replaced by plan run #{ctx.run_id}"
            )
        why = f"plan {ctx.plan} (run #{ctx.run_id}): {ctx.reason}"[:512]
        new = self.switches.propose(
            kind, target, actor=ctx.actor, reason=why, expires_at=ctx.expires_at, params=params
        )
        if new.status == PENDING:
            new = self.switches.approve(new.id, approver=ctx.by)
        return {"switch_id": new.id, "params": params, "replaced": replaced}

    def undo(
        self, step: Mapping[str, Any], done: Mapping[str, Any], ctx: RunContext
    ) -> dict[str, Any]:
        if done.get("noop"):
            return {"noop": True}
        sw = self.switches.get(int(done["switch_id"]))
        if sw.status in (PENDING, ACTIVE):
            self.switches.revert(sw.id, actor=ctx.by, reason=f"plan run #{ctx.run_id} reverted")
        old = done.get("replaced")
        if not old or datetime.fromisoformat(old["expires_at"]) <= ctx.now:
            return {"reverted": sw.id}
        back = self.switches.propose(
            step["kind"],
            step["target"],
            actor=old["actor"],
            reason=old["reason"],
            expires_at=datetime.fromisoformat(old["expires_at"]),
            params=old["params"],
        )
        if back.status == PENDING and old["status"] == ACTIVE and old["approved_by"]:
            back = self.switches.approve(back.id, approver=old["approved_by"])
        return {"reverted": sw.id, "restored": back.id, "restored_from": old["id"]}


class AnnotationSteps:
    """Chart annotations: a row from the run's approval until its revert or expiry."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def check(self, step: Mapping[str, Any]) -> None:
        """Nothing beyond the shape: an annotation always acts (it is drawn)."""

    def apply(self, step: Mapping[str, Any], ctx: RunContext) -> dict[str, Any]:
        row = {
            "at": ctx.now,
            "ends_at": ctx.expires_at,
            "text": str(step["text"])[:256],
            "actor": ctx.by,
            "run_id": ctx.run_id,
        }
        with self.engine.begin() as conn:
            aid = conn.execute(sa.insert(Annotation).values(row).returning(Annotation.id))
            return {"annotation_id": int(aid.scalar_one())}

    def undo(
        self, step: Mapping[str, Any], done: Mapping[str, Any], ctx: RunContext
    ) -> dict[str, Any]:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(Annotation)
                .where(Annotation.id == done["annotation_id"], Annotation.ends_at > ctx.now)
                .values(ends_at=ctx.now)
            )
        return {"ended": done["annotation_id"]}


def annotations_between(engine: Engine, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Annotations overlapping ``[start, end]``, oldest first: at, ends_at, text, run_id."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Annotation)
            .where(
                Annotation.at <= end,
                sa.or_(Annotation.ends_at.is_(None), Annotation.ends_at >= start),
            )
            .order_by(Annotation.at)
        ).all()
    return [
        {"at": r.at, "ends_at": r.ends_at, "text": r.text, "run_id": r.run_id, "actor": r.actor}
        for r in rows
    ]
