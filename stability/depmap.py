"""The dependency map (DESIGN §4): what the core calls, how strongly, with which timeouts.

:class:`DependencyMap` is an immutable, validated, acyclic graph of specs;
:class:`stability.depmap_store.DependencyMapStore` keeps it in the database;
:func:`lint_timeouts` checks timeouts
along every path, :func:`lint_effective` the numbers the clients really use and each
link's whole budget; :func:`impact` says what fails or degrades when one resource fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any

from stability.errors import (  # noqa: F401 - MapStorageError re-exported
    InvalidDependency,
    MapStorageError,
    UnknownResource,
)

if TYPE_CHECKING:
    from stability.effective import EffectiveTimeouts

GRADES = ("strong", "weak")


def _text(value: object, field: str, limit: int, *, required: bool = False) -> None:
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise InvalidDependency(
            f"{field} must be a {'non-empty ' if required else ''}string "
            f"of at most {limit} characters, got {value!r}"
        )


def _sla(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise InvalidDependency(f"sla_target must be in (0, 1), got {value!r}")


@dataclass(frozen=True)
class ResourceSpec:
    """Anything the core calls (or a core link itself, with ``core_link=True``)."""

    name: str
    kind: str
    owner: str = ""
    sla_target: float = 0.999
    core_link: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        _text(self.name, "name", 64, required=True)
        _text(self.kind, "kind", 32, required=True)
        _text(self.owner, "owner", 64)
        _text(self.description, "description", 256)
        _sla(self.sla_target)


@dataclass(frozen=True)
class EdgeSpec:
    """``caller`` depends on ``callee``: strong (fails without it) or weak (uses ``fallback``)."""

    caller: str
    callee: str
    grade: str
    timeout_ms: int
    retries: int = 0
    fallback: str = ""
    owner: str = ""
    sla_target: float = 0.999

    def __post_init__(self) -> None:
        _text(self.caller, "caller", 64, required=True)
        _text(self.callee, "callee", 64, required=True)
        where = f"{self.caller} -> {self.callee}"
        if self.caller == self.callee:
            raise InvalidDependency(f"{where}: a resource cannot depend on itself")
        if self.grade not in GRADES:
            raise InvalidDependency(f"{where}: grade must be strong or weak, got {self.grade!r}")
        for field, low in (("timeout_ms", 1), ("retries", 0)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InvalidDependency(f"{where}: {field} must be an int >= {low}, got {v!r}")
        _text(self.fallback, "fallback", 128)
        if self.grade == "weak" and not self.fallback.strip():
            raise InvalidDependency(f"{where}: a weak dependency needs a fallback description")
        _text(self.owner, "owner", 64)
        _sla(self.sla_target)

    @property
    def budget_ms(self) -> int:
        """The longest a caller can wait on this edge: ``timeout_ms * (1 + retries)``."""
        return self.timeout_ms * (1 + self.retries)


class DependencyMap:
    """A validated, acyclic dependency graph (edges point from caller to callee)."""

    def __init__(self, resources: Iterable[ResourceSpec], edges: Iterable[EdgeSpec] = ()) -> None:
        self._resources: dict[str, ResourceSpec] = {}
        for r in resources:
            if r.name in self._resources:
                raise InvalidDependency(f"resource {r.name} declared twice")
            self._resources[r.name] = r
        self._edges: dict[tuple[str, str], EdgeSpec] = {}
        self._out: dict[str, list[str]] = {n: [] for n in self._resources}
        self._in: dict[str, list[str]] = {n: [] for n in self._resources}
        for e in edges:
            for end in (e.caller, e.callee):
                if end not in self._resources:
                    raise UnknownResource(
                        f"{e.caller} -> {e.callee}: unknown resource {end}", resource=end
                    )
            if (e.caller, e.callee) in self._edges:
                raise InvalidDependency(f"edge {e.caller} -> {e.callee} declared twice")
            self._edges[(e.caller, e.callee)] = e
            self._out[e.caller].append(e.callee)
            self._in[e.callee].append(e.caller)
        try:
            TopologicalSorter({n: self._out[n] for n in self._resources}).prepare()
        except CycleError as exc:
            cycle = " -> ".join(reversed(exc.args[1]))
            raise InvalidDependency(f"dependency cycle: {cycle}") from None

    @property
    def resources(self) -> tuple[ResourceSpec, ...]:
        """Every resource, sorted by name."""
        return tuple(self._resources[n] for n in sorted(self._resources))

    @property
    def edges(self) -> tuple[EdgeSpec, ...]:
        """Every edge, sorted by (caller, callee)."""
        return tuple(self._edges[k] for k in sorted(self._edges))

    def resource(self, name: str) -> ResourceSpec:
        """The resource called ``name``; :class:`UnknownResource` if there is none."""
        try:
            return self._resources[name]
        except KeyError:
            raise UnknownResource(f"unknown resource {name}", resource=name) from None

    def callees(self, name: str) -> list[str]:
        """What ``name`` calls, sorted."""
        self.resource(name)
        return sorted(self._out[name])

    def callers(self, name: str) -> list[str]:
        """What calls ``name``, sorted."""
        self.resource(name)
        return sorted(self._in[name])

    def out_edges(self, name: str) -> list[EdgeSpec]:
        """The edges from ``name`` to what it calls, sorted by callee."""
        return [self._edges[(name, callee)] for callee in self.callees(name)]

    def edge(self, caller: str, callee: str) -> EdgeSpec | None:
        """The edge ``caller -> callee``, or ``None``."""
        return self._edges.get((caller, callee))

    def grade(self, caller: str, callee: str) -> str | None:
        """``"strong"``, ``"weak"``, or ``None`` when ``caller`` does not call ``callee``."""
        e = self.edge(caller, callee)
        return e.grade if e else None

    def roots(self) -> list[str]:
        """Resources nobody calls (the entry points: normally the core links), sorted."""
        return sorted(n for n, ins in self._in.items() if not ins)

    def with_edge(self, spec: EdgeSpec) -> DependencyMap:
        """A new map with ``spec`` added or replacing the edge between the same resources."""
        others = [e for k, e in self._edges.items() if k != (spec.caller, spec.callee)]
        return DependencyMap(self._resources.values(), [*others, spec])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for the console."""
        return {
            "resources": [asdict(r) for r in self.resources],
            "edges": [asdict(e) for e in self.edges],
        }


@dataclass(frozen=True)
class LintFinding:
    """``caller`` gives up on ``callee`` before ``callee`` can finish its slowest call."""

    caller: str
    callee: str
    path: tuple[str, ...]  # root ... caller, callee[, the callee's slowest callee]
    caller_timeout_ms: int
    callee_spend_ms: int
    overhead_ms: int = 0

    @property
    def message(self) -> str:
        extra = f" + {self.overhead_ms} ms overhead" if self.overhead_ms else ""
        return (
            f"{self.caller} -> {self.callee}: timeout {self.caller_timeout_ms} ms does not "
            f"exceed the {self.callee_spend_ms} ms{extra} {self.callee} can spend "
            f"(retries included) on path {' -> '.join(self.path)}"
        )


def lint_timeouts(dmap: DependencyMap, *, overhead_ms: int = 0) -> list[LintFinding]:
    """Flag every edge whose timeout is not above what its callee can spend plus overhead.

    Walks every path depth first from every root; each edge is reported once, with the
    first path (in name order) that reaches it. Findings are sorted by path.
    """
    if isinstance(overhead_ms, bool) or not isinstance(overhead_ms, int) or overhead_ms < 0:
        raise ValueError(f"overhead_ms must be an int >= 0, got {overhead_ms!r}")
    findings: dict[tuple[str, str], LintFinding] = {}
    expanded: set[str] = set()

    def visit(path: tuple[str, ...]) -> None:
        caller = path[-1]
        if caller in expanded:  # every edge below was already reached by an earlier path
            return
        expanded.add(caller)
        for e in dmap.out_edges(caller):
            # what the callee can spend: its slowest call, retries included
            slow = max(dmap.out_edges(e.callee), key=lambda x: x.budget_ms, default=None)
            spend = slow.budget_ms if slow else 0
            if e.timeout_ms <= spend + overhead_ms:
                tail = (e.callee, slow.callee) if slow else (e.callee,)
                findings[(caller, e.callee)] = LintFinding(
                    caller, e.callee, path + tail, e.timeout_ms, spend, overhead_ms
                )
            visit((*path, e.callee))

    for root in dmap.roots():
        visit((root,))
    return sorted(findings.values(), key=lambda f: f.path)


@dataclass(frozen=True)
class TimeoutFinding:
    """One violation of :func:`lint_effective`.

    ``kind``: ``declared`` (the map's own numbers, :func:`lint_timeouts`), ``client`` (a
    number a client really uses does not fit its edge) or ``budget`` (what a link calls
    one after another does not fit the link's budget). ``limit_ms`` None: no budget.
    """

    kind: str
    subject: str
    limit_ms: int | None
    spend_ms: int | None
    message: str


def _client_findings(dmap: DependencyMap, effective: EffectiveTimeouts) -> list[TimeoutFinding]:
    out = []
    for c in effective.clients:
        e = dmap.edge(c.caller, c.callee)
        if e is None:
            continue
        where = f"{c.name} on {c.caller} -> {c.callee}"
        if c.value_ms is None or c.spend_ms is None:
            msg = f"{where}: no limit, the edge allows {e.budget_ms} ms"
            out.append(TimeoutFinding("client", where, e.budget_ms, None, msg))
        elif c.value_ms > e.timeout_ms or c.spend_ms > e.budget_ms:
            tries = f" x {c.attempts} attempts" if c.attempts > 1 else ""
            msg = (
                f"{where}: {c.value_ms} ms{tries} does not fit the edge's "
                f"{e.timeout_ms} ms x {1 + e.retries} attempts"
            )
            out.append(TimeoutFinding("client", where, e.budget_ms, c.spend_ms, msg))
    return out


def link_spend(dmap: DependencyMap, link: str, lock_wait_ms: int = 0) -> tuple[int, list[str]]:
    """What ``link`` can spend calling its dependencies one after another, ms, and the
    terms of the sum: each edge's ``timeout * (1 + retries)``, the channels counted once
    (a call goes to one pay org: the slowest), plus the trade lock's wait."""
    terms: list[tuple[str, int]] = []
    channels = [e for e in dmap.out_edges(link) if e.callee.startswith("channel.")]
    if channels:
        slow = max(channels, key=lambda e: e.budget_ms)
        terms.append((f"{slow.callee} {slow.budget_ms}", slow.budget_ms))
    for e in dmap.out_edges(link):
        if not e.callee.startswith("channel."):
            terms.append((f"{e.callee} {e.budget_ms}", e.budget_ms))
    if lock_wait_ms:
        terms.append((f"lock wait {lock_wait_ms}", lock_wait_ms))
    return sum(ms for _, ms in terms), [t for t, _ in terms]


def lint_effective(dmap: DependencyMap, effective: EffectiveTimeouts) -> list[TimeoutFinding]:
    """Lint what really runs: the map's declared timeouts (:func:`lint_timeouts`), every
    client number against its edge (``stability.effective.effective_timeouts``), and
    every core link's sequential spend (:func:`link_spend`) against its budget."""
    found = [
        TimeoutFinding(
            "declared",
            f"{f.caller} -> {f.callee}",
            f.caller_timeout_ms,
            f.callee_spend_ms,
            f.message,
        )
        for f in lint_timeouts(dmap)
    ]
    found += _client_findings(dmap, effective)
    for r in dmap.resources:
        if not r.core_link:
            continue
        spend, terms = link_spend(dmap, r.name, effective.lock_wait_ms.get(r.name, 0))
        budget = effective.link_budget_ms.get(r.name)
        if budget is None:
            msg = f"{r.name}: no budget, it can spend {spend} ms ({' + '.join(terms)})"
            found.append(TimeoutFinding("budget", r.name, None, spend, msg))
        elif spend > budget:
            msg = f"{r.name}: {' + '.join(terms)} = {spend} ms exceeds its budget {budget} ms"
            found.append(TimeoutFinding("budget", r.name, budget, spend, msg))
    return found


def _upstream(dmap: DependencyMap, start: str, grade: str | None) -> set[str]:
    """Every transitive caller of ``start`` (through edges of ``grade`` only, if given)."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        for caller in dmap.callers(name):
            if caller not in seen and grade in (None, dmap.grade(caller, name)):
                seen.add(caller)
                stack.append(caller)
    return seen


@dataclass(frozen=True)
class Impact:
    """What happens upstream when ``failed`` fails (``failed`` itself is in neither list)."""

    failed: str
    fails: list[str]
    degrades: list[str]
    core_links_failing: list[str]
    core_links_degraded: list[str]


def impact(dmap: DependencyMap, failed: str) -> Impact:
    """Resources that fail (strong chain to ``failed``) and that degrade (a weak edge on the way).

    A resource fails when it has a strong edge to a failing resource; every other resource
    that (transitively) calls ``failed`` degrades.
    """
    failing, affected = _upstream(dmap, failed, "strong"), _upstream(dmap, failed, None)
    fails, degrades = sorted(failing), sorted(affected - failing)
    return Impact(
        failed,
        fails,
        degrades,
        [n for n in fails if dmap.resource(n).core_link],
        [n for n in degrades if dmap.resource(n).core_link],
    )
