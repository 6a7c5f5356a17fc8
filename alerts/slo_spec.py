"""The SLO spec (Sloth's ``prometheus/v1`` shape): load, validate.

One file is read by the alert engine (:func:`alerts.defaults.build_default_rules`), the
exported Prometheus rules (:mod:`alerts.export`), the Grafana dashboards and the SLA
report, so each objective has one error budget and one definition of a bad event (its
:class:`Outcomes`). ``$PAYWATCH_SLO_SPEC`` points at another file; without it the spec
shipped inside this package is read (``alerts/slo/paywatch.slo.yaml``, package data,
through :mod:`importlib.resources`). See the file's header for the SLI plugins and their
options.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from collectors.metrics import GUARD_OUTCOMES, LINK_OUTCOMES

from .base import BurnWindow
from .errors import RuleError

SPEC_ENV = "PAYWATCH_SLO_SPEC"
#: the shipped spec: package data of ``alerts`` (pyproject's package-data)
SPEC_PACKAGE, SPEC_RESOURCE = "alerts", "slo/paywatch.slo.yaml"
LINK_REQUESTS = "paywatch_link_requests_total"
GUARD_CALLS = "paywatch_guard_calls_total"
PLUGINS = ("paywatch/availability", "paywatch/latency")
#: SRE workbook, 30-day budget: page 2 % of it in 1 h or 5 % in 6 h, ticket 10 % in 1 d
#: or 3 d (a long pair alerts only while its short window still burns: it resets fast)
SLO_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(3600, 300, 14.4, "page"),
    BurnWindow(21600, 1800, 6.0, "page"),
    BurnWindow(86400, 7200, 3.0, "ticket"),
    BurnWindow(259200, 21600, 1.0, "ticket"),
)
BUDGET_PERIOD_S = 30 * 86400.0
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Outcomes:
    """Which ``outcome`` label values an availability SLI counts good and bad; any other
    outcome is neither (excluded). The SLI's error ratio is bad / (good + bad)."""

    good: tuple[str, ...]
    bad: tuple[str, ...]

    @property
    def counted(self) -> tuple[str, ...]:
        """Good and bad: the outcomes the ratio's denominator sums."""
        return (*self.good, *self.bad)

    def split(self, per_outcome: dict[str, float]) -> tuple[float, float]:
        """``(good, bad)`` events from counts per outcome."""
        good = sum(per_outcome.get(o, 0) for o in self.good)
        return good, sum(per_outcome.get(o, 0) for o in self.bad)


#: a core link step's SLI when its spec entry does not say (and the SLA report's steps
#: without an SLO): a timeout is a failed request; a business refusal (rejected) is neither
STEP_OUTCOMES = Outcomes(good=("ok", "pending"), bad=("error", "timeout"))
#: a dependency's: an open breaker or a full bulkhead kept the caller from it (bad); a rate
#: limit, a degradation switch, a fallback (counted besides its failure) are neither
RESOURCE_OUTCOMES = Outcomes(
    good=("pass",), bad=("error", "timeout", "breaker_open", "bulkhead_full")
)


@dataclass(frozen=True)
class Slo:
    """One objective of the spec: what counts as bad, and how it alerts."""

    name: str
    objective: float  # a fraction: 0.999
    kind: str  # "availability" | "latency"
    alert: str  # the alert's name; "{org}" in it for a per-pay-org objective
    description: str = ""
    step: str | None = None
    resource: str | None = None
    outcomes: Outcomes = STEP_OUTCOMES  # availability: what is good and bad
    per: str | None = None  # "pay_org": one objective (and rule) per configured org
    by: tuple[str, ...] = ()  # one budget, alert instances per group
    threshold_s: float | None = None  # latency: the bucket bound a fast request is under
    min_traffic_rps: float | None = None
    absent_for_s: float | None = None
    plan: str = ""
    severities: tuple[str, ...] = ("page", "ticket")
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def budget(self) -> float:
        """The error budget: the fraction of events allowed to be bad."""
        return round(1.0 - self.objective, 12)

    @property
    def metric(self) -> str:
        """The availability SLI's counter: link requests for a step, guarded calls for a
        resource."""
        return GUARD_CALLS if self.resource else LINK_REQUESTS

    @property
    def windows(self) -> tuple[BurnWindow, ...]:
        """The burn-rate window pairs of the severities this objective alerts with."""
        return tuple(w for w in SLO_WINDOWS if w.severity in self.severities)


@dataclass(frozen=True)
class SloSpec:
    """The whole spec: its service, common labels and objectives (in file order)."""

    service: str
    slos: tuple[Slo, ...]
    labels: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def step_objective(self, step: str) -> float | None:
        """The objective of a core link step's (whole, not per-org) availability SLO."""
        for s in self.slos:
            if s.kind == "availability" and s.step == step and s.per is None:
                return s.objective
        return None

    def objectives(self) -> dict[str, float]:
        """Availability objectives by SLA-report name: ``link.<step>`` and dependencies."""
        out: dict[str, float] = {}
        for s in self.slos:
            if s.kind != "availability" or s.per is not None:
                continue
            out[f"link.{s.step}" if s.step else str(s.resource)] = s.objective
        return out

    def outcomes(self, *, step: str | None = None, resource: str | None = None) -> Outcomes:
        """What is good and bad for a step or a resource: its availability SLO's (the
        whole-step one first, else a per-pay-org one), else the default of its kind."""
        found = [
            s
            for s in self.slos
            if s.kind == "availability" and (s.step, s.resource) == (step, resource)
        ]
        found.sort(key=lambda s: s.per is not None)
        if found:
            return found[0].outcomes
        return RESOURCE_OUTCOMES if resource is not None else STEP_OUTCOMES


def duration_s(text: str) -> float:
    """``30m`` -> 1800.0 (Prometheus' s/m/h/d units)."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise RuleError(f"bad duration {text!r}: use e.g. 30m, 6h, 3d")
    return float(int(m.group(1)) * _UNITS[m.group(2)])


def _fail(where: str, msg: str) -> RuleError:
    return RuleError(f"SLO spec {where}: {msg}")


def _opt_float(opts: dict[str, Any], key: str, where: str) -> float | None:
    if key not in opts:
        return None
    try:
        value = float(opts[key])
    except (TypeError, ValueError):
        raise _fail(where, f"{key} must be a number, not {opts[key]!r}") from None
    if not value >= 0:
        raise _fail(where, f"{key} must be >= 0")
    return value


def _outcomes(opts: dict[str, Any], kind: str, resource: Any, where: str) -> Outcomes:
    keys = ("good_outcomes", "bad_outcomes")
    if kind == "latency":
        if any(k in opts for k in keys):
            raise _fail(where, "a latency SLI's bad events are slow requests: no outcomes")
        return STEP_OUTCOMES
    default = RESOURCE_OUTCOMES if resource is not None else STEP_OUTCOMES
    known = GUARD_OUTCOMES if resource is not None else LINK_OUTCOMES
    sets = []
    for key, fallback in zip(keys, (default.good, default.bad), strict=True):
        raw = opts.get(key, fallback)
        if isinstance(raw, str) or not isinstance(raw, list | tuple) or not raw:
            raise _fail(where, f"{key} must be a non-empty list of outcomes")
        values = tuple(str(v) for v in raw)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise _fail(where, f"{key}: unknown outcome {', '.join(unknown)} (one of {known})")
        sets.append(values)
    both = sorted(set(sets[0]) & set(sets[1]))
    if both:
        raise _fail(where, f"{', '.join(both)} cannot be both good and bad")
    return Outcomes(*sets)


def _severities(alerting: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for key, severity in (("page_alert", "page"), ("ticket_alert", "ticket")):
        spec = alerting.get(key) or {}
        if not spec.get("disable", False):
            out.append(str((spec.get("labels") or {}).get("severity", severity)))
    return tuple(out)


def _slo(raw: Any, where: str) -> Slo:
    if not isinstance(raw, dict):
        raise _fail(where, "each SLO is a mapping")
    name = str(raw.get("name", ""))
    if not _NAME.match(name):
        raise _fail(where, f"name {name!r} must be lower-case words joined by '-'")
    where = f"{where} ({name})"
    try:
        percent = float(raw["objective"])
    except (KeyError, TypeError, ValueError):
        raise _fail(where, "objective (a percentage, e.g. 99.9) is required") from None
    if not 0 < percent < 100:
        raise _fail(where, f"objective {percent} must be between 0 and 100 (a percentage)")
    plugin = (raw.get("sli") or {}).get("plugin") or {}
    if plugin.get("id") not in PLUGINS:
        raise _fail(where, f"sli.plugin.id must be one of {', '.join(PLUGINS)}")
    opts = dict(plugin.get("options") or {})
    kind = str(plugin["id"]).split("/", 1)[1]
    step, resource = opts.get("step"), opts.get("resource")
    if (step is None) == (resource is None) or (kind == "latency" and step is None):
        raise _fail(where, "options need exactly one of step or resource (latency: step)")
    alerting = raw.get("alerting") or {}
    alert = str(alerting.get("name", ""))
    per = opts.get("per")
    if per not in (None, "pay_org"):
        raise _fail(where, f"per must be pay_org, not {per!r}")
    if not re.match(r"^[a-z_][a-z0-9_]*(\{org\}[a-z0-9_]*)?$", alert):
        raise _fail(where, f"alerting.name {alert!r} must be a metric-style name")
    if (per is not None) != ("{org}" in alert):
        raise _fail(where, "a per-pay-org SLO's alerting.name contains {org} (and only it)")
    threshold = _opt_float(opts, "threshold_ms", where)
    if kind == "latency" and not threshold:
        raise _fail(where, "a latency SLO needs threshold_ms")
    absent = opts.get("absent_for")
    try:
        absent_s = None if absent is None else duration_s(str(absent))
    except RuleError as exc:
        raise _fail(where, f"absent_for: {exc}") from None
    return Slo(
        name=name,
        objective=round(percent / 100.0, 12),
        kind=kind,
        alert=alert,
        description=str(raw.get("description", "")),
        step=None if step is None else str(step),
        resource=None if resource is None else str(resource),
        outcomes=_outcomes(opts, kind, resource, where),
        per=per,
        by=tuple(b for b in str(opts.get("by", "")).split(",") if b),
        threshold_s=None if threshold is None else threshold / 1000.0,
        min_traffic_rps=_opt_float(opts, "min_traffic_rps", where),
        absent_for_s=absent_s,
        plan=str(opts.get("plan", "")),
        severities=_severities(alerting),
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
    )


def parse_spec(doc: Any, path: str = "") -> SloSpec:
    """A spec document (already parsed YAML) as an :class:`SloSpec`, validated."""
    where = path or "document"
    if not isinstance(doc, dict) or doc.get("version") != "prometheus/v1":
        raise _fail(where, "version must be prometheus/v1 (Sloth's spec)")
    raw = doc.get("slos")
    if not isinstance(raw, list) or not raw:
        raise _fail(where, "slos must be a non-empty list")
    slos = tuple(_slo(item, f"{where} slos[{i}]") for i, item in enumerate(raw))
    for attr in ("name", "alert"):
        seen = [getattr(s, attr) for s in slos]
        dupes = sorted({x for x in seen if seen.count(x) > 1})
        if dupes:
            raise _fail(where, f"duplicate {attr}: {', '.join(dupes)}")
    labels = {str(k): str(v) for k, v in (doc.get("labels") or {}).items()}
    return SloSpec(str(doc.get("service", "paywatch")), slos, labels, path)


_CACHE: dict[tuple[str, float], SloSpec] = {}


def shipped_spec() -> Traversable:
    """The spec shipped inside the package (found after any install, editable or not)."""
    return files(SPEC_PACKAGE).joinpath(SPEC_RESOURCE)


def load_spec(path: str | Path | None = None) -> SloSpec:
    """The spec at ``path``, else ``$PAYWATCH_SLO_SPEC``, else the shipped one (cached per
    path and modification time: reports call this on every render)."""
    import yaml

    given = path or os.environ.get(SPEC_ENV)
    src: Path | Traversable = Path(given) if given else shipped_spec()
    try:
        # a resource inside a zip has no mtime: it cannot change either
        mtime = src.stat().st_mtime if isinstance(src, Path) else 0.0
        key = (str(src), mtime)
        if key not in _CACHE:
            text = src.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"SLO spec {src}: cannot read it ({exc.strerror})") from None
    if key not in _CACHE:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RuleError(f"SLO spec {src}: not valid YAML ({exc})") from None
        _CACHE[key] = parse_spec(doc, str(src))
    return _CACHE[key]
