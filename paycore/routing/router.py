"""The router: the current rules, cached, deciding a payment's pay orgs.

Each API replica reads the rule set at most every ``refresh_s`` (1 s by default), so a
publish reaches every replica within a second; switches and breakers reach them through
the guard (pub/sub and the shared breaker store), which :func:`preview` and the pay's
candidate loop (:mod:`paycore.pay_routing`) ask on every pay.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..errors import PayCoreError
from .match import CompiledRules
from .model import OrgStatus, RouteDecision, RoutePreview, RouteQuery, RuleSet
from .store import RoutingStore

log = logging.getLogger(__name__)


class RoutingRecorder(Protocol):
    """Where decisions and fallbacks are counted (``collectors.routing_metrics``). A
    recorder may also have ``prepare(rule, org)``: the router calls it for every rule
    and org of a rule set it takes up (series at 0 before the first decision)."""

    def decided(self, rule: str, org: str) -> None: ...

    def fell_back(self, rule: str, from_org: str, to_org: str, reason: str) -> None: ...


class Router:
    """Decides which pay orgs a payment tries, by the current rule set.

    ``rng``: the weighted pick's randomness (seed it in tests). ``recorder``: counts
    decisions and fallbacks. The rule set is re-read at most every ``refresh_s``; a
    failed read keeps the rules it has (routing must not fail a pay the rules could
    not be read for) and tries again on the next refresh.
    """

    def __init__(
        self,
        store: RoutingStore,
        *,
        rng: random.Random | None = None,
        recorder: RoutingRecorder | None = None,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.rng = rng or random.Random()
        self.recorder = recorder
        self.refresh_s = refresh_s
        self.clock = clock
        self._compiled = CompiledRules(())
        self._rule_set: RuleSet | None = None
        self._next_read = float("-inf")
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """The version of the rules in use (0: none published, or not read yet)."""
        return self._compiled.version

    def rule_set(self) -> RuleSet | None:
        """The rule set in use (None until the first successful read)."""
        self._refresh()
        return self._rule_set

    def refresh(self) -> None:
        """Read the current rules now (after a publish in this process)."""
        self._next_read = float("-inf")
        self._refresh()

    def _refresh(self) -> None:
        now = self.clock()
        if now < self._next_read:
            return
        # one thread reads; the others go on with the rules they have (they wait only
        # for the first read, when there are none)
        if not self._lock.acquire(blocking=self._rule_set is None):
            return
        try:
            if now < self._next_read:  # another thread read them meanwhile
                return
            self._next_read = now + self.refresh_s
            try:
                current = self.store.current()
            except PayCoreError as exc:  # the database is down or slow: the rules we have
                log.warning(
                    "routing rules not re-read (%s): keeping version %s", exc.code, self.version
                )
                return
            if self._rule_set is None or current.version != self._rule_set.version:
                self._compiled = CompiledRules(current.rules, current.version)
                self._prepare(current)
            self._rule_set = current
        finally:
            self._lock.release()

    def _prepare(self, rule_set: RuleSet) -> None:
        """Let the recorder make the decision series of a rule set taken up, at 0."""
        prepare = getattr(self.recorder, "prepare", None)
        if prepare is None:
            return
        for rule in rule_set.rules:
            for org in rule.orgs:
                prepare(rule.name, org)

    def decide(self, q: RouteQuery) -> RouteDecision:
        """The rule that matches ``q`` and the orgs to try, in order (see
        :class:`RouteDecision`)."""
        if self.clock() >= self._next_read:
            self._refresh()
        return self._compiled.decide(q, self.rng)

    def record(self, rule: str, chosen: str, skipped: Sequence[tuple[str, str]]) -> None:
        """Count a decision that took ``chosen``, after ``skipped`` ``(org, reason)``
        refused in order (each is a fallback to ``chosen``)."""
        recorder = self.recorder
        if recorder is None:
            return
        for org, reason in skipped:
            recorder.fell_back(rule, org, chosen, reason)
        recorder.decided(rule, chosen)

    def preview(self, q: RouteQuery, guard: Any = None) -> RoutePreview:
        """ "Which org would this payment take?": the decision with each candidate's
        availability now (the guard's view, nothing consumed), and the first available
        one. Weighted picks are random: a preview shows one draw."""
        return preview(self.decide(q), guard)


def channel_resource(org: str) -> str:
    """The dependency map's resource of a pay org's channel."""
    return f"channel.{org}"


def preview(decision: RouteDecision, guard: Any = None) -> RoutePreview:
    """A decision's candidates with ``guard.availability`` of each (no guard: all look
    available) and the first available one as ``recommended``."""
    orgs = tuple(
        OrgStatus(org, None if guard is None else guard.availability(channel_resource(org)))
        for org in decision.candidates
    )
    recommended = next((o.pay_org_no for o in orgs if o.available), None)
    return RoutePreview(decision.rule, orgs, recommended)
