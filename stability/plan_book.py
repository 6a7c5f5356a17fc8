"""The plan book: storing, reviewing and seeding switch plans (the base of
:class:`stability.plans.PlanService`, which runs them)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from backends.errors import DriverErrors

from .depmap import DependencyMap
from .errors import ApprovalError, SwitchError, SwitchStorageError
from .limits import LimitRule
from .plan_records import DRAFT, REVIEWED, PlanRecord, audit, plan_of
from .plan_schema import Plan
from .plan_seed import default_plans
from .plan_steps import AnnotationSteps, StepHandler, SwitchSteps, check_shape
from .switch_records import utcnow
from .switches import SwitchService

log = logging.getLogger(__name__)


def _insert_plan(conn: Connection, *, row: dict[str, Any]) -> None:
    conn.execute(sa.insert(Plan).values(row))


_STORAGE = DriverErrors(lambda exc: SwitchStorageError("plan store unavailable"))


class PlanBook:
    """Stores and reviews plans; checks their steps against the map and the limit rules."""

    def __init__(
        self,
        engine: Engine,
        switches: SwitchService,
        *,
        dmap: Callable[[], DependencyMap],
        rules: Callable[[], Iterable[LimitRule]],
        handlers: Mapping[str, StepHandler] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.switches = switches
        self.clock = clock
        self.dmap = dmap
        steps = SwitchSteps(switches, dmap, rules)
        self.handlers: dict[str, StepHandler] = {
            "degrade": steps,
            "force_breaker": steps,
            "set_limit": steps,
            "dry_run_limit": steps,
            "annotate": AnnotationSteps(engine),
            **dict(handlers or {}),
        }

    def check_steps(self, steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Refuse a plan whose step is malformed, or whose target does not exist or does
        not act (:class:`SwitchError`); returns the steps as plain dicts."""
        if not steps:
            raise SwitchError("a plan needs at least one step")
        out = []
        for i, raw in enumerate(steps, 1):
            try:
                step = check_shape(raw)
                handler = self.handlers.get(step["kind"])
                if handler is None:
                    raise SwitchError(f"{step['kind']} steps cannot run here")
                handler.check(step)
            except SwitchError as exc:
                raise type(exc)(f"step {i}: {exc.message}", resource=exc.resource) from None
            out.append(step)
        return out

    def create(
        self,
        name: str,
        steps: Sequence[Mapping[str, Any]],
        *,
        author: str,
        description: str = "",
        triggers: Iterable[str] = (),
    ) -> PlanRecord:
        """Store a new plan (a draft: it runs once someone else has reviewed it), or replace
        the steps of an existing one, which makes it a draft again."""
        name, author = (name or "").strip(), (author or "").strip()
        if not name or len(name) > 128:
            raise SwitchError("a plan needs a name of at most 128 characters")
        if not author:
            raise SwitchError("a plan needs its author")
        clean = self.check_steps(steps)
        now = self.clock()
        values = {
            "description": (description or "")[:512],
            "steps": json.dumps(clean),
            "triggers": json.dumps(sorted(set(triggers))),
            "author": author[:64],
            "status": DRAFT,
            "reviewed_by": None,
            "reviewed_at": None,
            "created_at": now,
        }

        def work(conn: Connection) -> None:
            old = conn.execute(sa.select(Plan).where(Plan.name == name)).first()
            if old is None:
                conn.execute(sa.insert(Plan).values(name=name, **values))
                before = None
            else:
                conn.execute(sa.update(Plan).where(Plan.id == old.id).values(**values))
                before = {"steps": json.loads(old.steps), "status": old.status}
            after = {"steps": clean, "status": DRAFT}
            audit(conn, author, "plan_save", name, "plan saved", before, after, now)

        self._tx(work)
        return self.get(name)

    def review(self, name: str, *, reviewer: str) -> PlanRecord:
        """A second person reviews a draft plan: from now on it can run."""
        now = self.clock()

        def work(conn: Connection) -> None:
            plan = self._plan(conn, name)
            if plan.status != DRAFT:
                raise ApprovalError(f"plan {name} is {plan.status}, not a draft")
            if not reviewer or reviewer == plan.author:
                raise ApprovalError("a plan must be reviewed by someone other than its author")
            conn.execute(
                sa.update(Plan)
                .where(Plan.id == plan.id, Plan.status == DRAFT)
                .values(status=REVIEWED, reviewed_by=reviewer[:64], reviewed_at=now)
            )
            before, after = {"status": DRAFT}, {"status": REVIEWED}
            audit(conn, reviewer, "plan_review", name, "reviewed", before, after, now)

        self._tx(work)
        return self.get(name)

    def get(self, name: str) -> PlanRecord:
        """The plan called ``name`` (:class:`SwitchError` if there is none)."""
        with self._connect() as conn:
            return self._plan(conn, name)

    def plans(self) -> list[PlanRecord]:
        """Every plan, by name."""
        with self._connect() as conn:
            return [plan_of(r) for r in conn.execute(sa.select(Plan).order_by(Plan.name))]

    def seed(self, plans: Iterable[Mapping[str, Any]], *, author: str = "paywatch") -> int:
        """Store the shipped plans that are missing (never touching a stored one), reviewed
        as shipped; a plan whose steps do not act on this map is skipped. Returns the count."""
        now, added = self.clock(), 0
        have = {p.name for p in self.plans()}
        for spec in plans:
            if spec["name"] in have:
                continue
            try:
                clean = self.check_steps(spec["steps"])
            except SwitchError as exc:
                log.info("shipped plan %s skipped: %s", spec["name"], exc)
                continue
            row = {
                "name": spec["name"],
                "description": spec.get("description", ""),
                "steps": json.dumps(clean),
                "triggers": json.dumps(sorted(spec.get("triggers", ()))),
                "author": author,
                "status": REVIEWED,
                "reviewed_by": f"{author} (shipped)",
                "created_at": now,
                "reviewed_at": now,
            }
            try:
                self._tx(partial(_insert_plan, row=row))
            except SwitchStorageError as exc:
                if not isinstance(exc.__cause__, sa_exc.IntegrityError):
                    raise
                continue  # another process seeded it at the same moment
            added += 1
        return added

    def seed_shipped(self) -> int:
        """:meth:`seed` the shipped plans (:func:`stability.plan_seed.default_plans`) for
        the pay orgs of the map (its ``channel`` resources); returns the count added."""
        orgs = [
            r.name.removeprefix("channel.") for r in self.dmap().resources if r.kind == "channel"
        ]
        return self.seed(default_plans(orgs))

    # -- storage ---------------------------------------------------------------------------
    def _connect(self) -> Connection:
        with _STORAGE:
            return self.engine.connect()

    def _tx(self, fn: Callable[[Connection], Any]) -> Any:
        """Run ``fn`` in one transaction; then publish the new version as switch changes do,
        so every process's watcher picks the change up at once."""
        with _STORAGE, self.engine.begin() as conn:
            result = fn(conn)
        publish = self.switches.on_commit
        if publish is not None:
            try:
                publish(self.switches.version())
            except Exception:  # noqa: BLE001 - polling still picks the change up
                log.warning("plan change publish failed; processes will poll it")
        return result

    @staticmethod
    def _plan(conn: Connection, name: str) -> PlanRecord:
        row = conn.execute(sa.select(Plan).where(Plan.name == name)).first()
        if row is None:
            raise SwitchError(f"no plan named {name!r}")
        return plan_of(row)
