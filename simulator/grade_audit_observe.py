"""What a grade audit observes while one dependency is faulted, and what it concludes.

Two sources, both read from the running platform, never assumed from the map:

* the guard's outcomes per edge (``caller -> resource``), counted by :class:`EdgeTally`, a
  recorder attached to the platform's guard (nested guarded calls are attributed to their
  own edge, e.g. ``ledger.posting -> database``);
* the API's answers to the simulated merchants (the simulator's refusal codes, e.g.
  ``pay:dependency_unavailable:channel.SANDBOX_A``).

A caller **fails** when its answers failed beyond the baseline, when a guarded call on its
blast path failed without a fallback, or when its own callers saw it fail; it
**degrades** when a fallback was served on its call tree; otherwise **none**.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stability.depmap import DependencyMap

FAILURES = ("error", "timeout", "breaker_open", "blocked", "bulkhead_full")
FALLBACKS = ("fallback", "degraded")
EFFECTS = ("fails", "degrades", "none")
#: simulator operation → the link that answers it
LINK_OF_OP = {"create": "link.trade_create", "pay": "link.pay", "refund": "link.refund"}
#: error codes naming their dependency without the ``dependency_unavailable:`` form
CODE_RESOURCE = {
    "storage_unavailable": "database",
    "lock_unavailable": "redis",
    "risk_unavailable": "risk",
}
#: codes of platform failures naming no dependency (5xx, no answer at all)
UNNAMED = ("transport", "internal_error", "dependency_unavailable", "dependency_failed")

Edge = tuple[str, str]  #: (caller, resource)


class EdgeTally:
    """A guard recorder counting outcomes per (caller, resource, outcome)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        with self._lock:
            self._counts[(caller, resource, outcome)] += 1

    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None:
        """Breaker moves are not counted here (the drill evidence reads them)."""

    def snapshot(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            return Counter(self._counts)


def failed_answer(code: str) -> tuple[str, str | None] | None:
    """``(link, resource or None)`` of a refusal that is a platform failure; None for a
    client's mistake, a limit or an operation no link answers."""
    op, _, err = code.partition(":")
    link = LINK_OF_OP.get(op)
    if link is None:
        return None
    if err.startswith("dependency_unavailable:"):
        return link, err.split(":", 1)[1]
    if err in CODE_RESOURCE:
        return link, CODE_RESOURCE[err]
    if err in UNNAMED or err.startswith("http_5"):
        return link, None
    return None


@dataclass
class Window:
    """Counter increases over one stretch of traffic."""

    seconds: float
    edges: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)

    def count(self, caller: str, resource: str, outcomes: Iterable[str]) -> int:
        return sum(self.edges[(caller, resource, o)] for o in outcomes)

    def calls(self, caller: str, resource: str) -> dict[str, int]:
        """Outcome → calls on one edge (only outcomes seen)."""
        return {o: n for (c, r, o), n in sorted(self.edges.items()) if (c, r) == (caller, resource)}


def window(
    before: tuple[Counter[tuple[str, str, str]], Mapping[str, int]],
    after: tuple[Counter[tuple[str, str, str]], Mapping[str, int]],
    seconds: float,
) -> Window:
    """The increases between two ``(tally snapshot, refusal counts)`` readings."""
    edges = after[0] - before[0]
    answers = Counter(after[1]) - Counter(before[1])
    return Window(seconds, edges, answers)


def upstream(dmap: DependencyMap, resource: str) -> set[str]:
    """``resource`` and everything that calls it, transitively (its blast path)."""
    seen, stack = {resource}, [resource]
    while stack:
        for caller in dmap.callers(stack.pop()):
            if caller not in seen:
                seen.add(caller)
                stack.append(caller)
    return seen


def downstream(dmap: DependencyMap, resource: str) -> set[str]:
    """``resource`` and everything it calls, transitively (its call tree)."""
    seen, stack = {resource}, [resource]
    while stack:
        for callee in dmap.callees(stack.pop()):
            if callee not in seen:
                seen.add(callee)
                stack.append(callee)
    return seen


@dataclass(frozen=True)
class Observer:
    """Judges callers in one fault window against the baseline window."""

    dmap: DependencyMap
    faulted: str
    fault: Window
    base: Window

    def _excess(self, now: int, base: int) -> int:
        """What ``now`` exceeds twice the baseline's count scaled to this window."""
        scale = self.fault.seconds / self.base.seconds if self.base.seconds > 0 else 0.0
        return max(0, int(now - 2.0 * base * scale))

    def _uncovered(self, w: Window, caller: str, resource: str) -> int:
        """Failed attempts on one edge in ``w`` that no fallback covered: a call that fell
        back after its retries failed recorded an error for every attempt (``1 + retries``
        of the edge, e.g. the coupon's), a degraded one none."""
        edge = self.dmap.edge(caller, resource)
        attempts = 1 + (edge.retries if edge is not None else 0)
        covered = attempts * w.count(caller, resource, ("fallback",)) + w.count(
            caller, resource, ("degraded",)
        )
        return max(0, w.count(caller, resource, FAILURES) - covered)

    def _edge_failures(self, caller: str, resource: str) -> int:
        """Failed calls on one edge that no fallback covered, beyond the baseline."""
        return self._excess(
            self._uncovered(self.fault, caller, resource),
            self._uncovered(self.base, caller, resource),
        )

    def _fallbacks(self, caller: str, resource: str) -> int:
        return self._excess(
            self.fault.count(caller, resource, FALLBACKS),
            self.base.count(caller, resource, FALLBACKS),
        )

    def answers_failed(self, link: str) -> int:
        """The link's failed answers naming the blast path (or nothing), beyond baseline."""
        blast = upstream(self.dmap, self.faulted)

        def tally(w: Window) -> int:
            n = 0
            for code, count in w.answers.items():
                hit = failed_answer(code)
                if hit is not None and hit[0] == link and (hit[1] is None or hit[1] in blast):
                    n += count
            return n

        return self._excess(tally(self.fault), tally(self.base))

    def effect(self, caller: str) -> tuple[str, str]:
        """``(fails | degrades | none, the evidence in words)`` for ``caller``."""
        blast = upstream(self.dmap, self.faulted)
        hit = [c for c in self.dmap.callees(caller) if c in blast]
        answers = self.answers_failed(caller)
        failed = {c: n for c in hit if (n := self._edge_failures(caller, c))}
        seen_failing = {
            x: n for x in self.dmap.callers(caller) if (n := self._edge_failures(x, caller))
        }
        if answers or failed or seen_failing:
            parts = [f"{answers} failed answers"] if answers else []
            parts += [f"{n} failed calls to {c}" for c, n in failed.items()]
            parts += [f"{x} saw {n} failed calls" for x, n in seen_failing.items()]
            return "fails", "; ".join(parts)
        served = {
            (x, y): n
            for x in downstream(self.dmap, caller)
            for y in self.dmap.callees(x)
            if y in blast and (n := self._fallbacks(x, y))
        }
        if served:
            return "degrades", "; ".join(
                f"{n} fallbacks on {x} -> {y}" for (x, y), n in served.items()
            )
        calls = sum(self.fault.count(caller, c, ("pass",)) for c in hit)
        return "none", f"{calls} guarded calls on the blast path passed"
