"""The ``silence`` step of switch plans (:mod:`stability.plans`): a plan run silences the
alerts matching its labels for some minutes (never past the run's expiry), and its revert
ends the silence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from stability.errors import SwitchError
from stability.plan_steps import RunContext, StepHandler

from .errors import SilenceError
from .model import LABEL_NAME
from .silences import SilenceStore


class SilenceSteps:
    """Creates and ends the silences of plan runs."""

    def __init__(self, store: SilenceStore) -> None:
        self.store = store

    def check(self, step: Mapping[str, Any]) -> None:
        """Matcher labels must be label names and values non-empty strings."""
        for k, v in step["matchers"].items():
            if not isinstance(k, str) or not LABEL_NAME.fullmatch(k):
                raise SwitchError(f"invalid silence matcher label {k!r}")
            if not isinstance(v, str) or not v:
                raise SwitchError(f"silence matcher {k!r} needs a non-empty string value")

    def apply(self, step: Mapping[str, Any], ctx: RunContext) -> dict[str, Any]:
        start = ctx.now.timestamp()
        end = min(start + float(step["minutes"]) * 60, ctx.expires_at.timestamp())
        try:
            silence = self.store.create(
                dict(step["matchers"]),
                creator=ctx.by,
                comment=f"plan {ctx.plan} (run #{ctx.run_id}): {ctx.reason}",
                ends_at=end,
                now=start,
            )
        except SilenceError as exc:
            raise SwitchError(f"silence refused: {exc}") from None
        return {"silence_id": silence.id, "ends_at": end}

    def undo(
        self, step: Mapping[str, Any], done: Mapping[str, Any], ctx: RunContext
    ) -> dict[str, Any]:
        self.store.expire(int(done["silence_id"]), now=ctx.now.timestamp())
        return {"ended": done["silence_id"]}


def silence_handlers(engine: Engine) -> dict[str, StepHandler]:
    """The step handlers the alerts package adds to a :class:`~stability.plans.PlanService`."""
    return {"silence": SilenceSteps(SilenceStore(engine))}
