"""The SLO spec (``slo/paywatch.slo.yaml``, Sloth's ``prometheus/v1`` shape): load, validate.

One file is read by the alert engine (:func:`alerts.defaults.build_default_rules`), the
exported Prometheus rules (:mod:`alerts.export`) and the SLA report, so each objective
has one error budget. ``$PAYWATCH_SLO_SPEC`` points at another file; without it the
shipped one is read. See the file's header for the SLI plugins and their options.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import BurnWindow
from .errors import RuleError

SPEC_ENV = "PAYWATCH_SLO_SPEC"
SHIPPED_SPEC = Path(__file__).resolve().parents[1] / "slo" / "paywatch.slo.yaml"
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
class Slo:
    """One objective of the spec: what counts as bad, and how it alerts."""

    name: str
    objective: float  # a fraction: 0.999
    kind: str  # "availability" | "latency"
    alert: str  # the alert's name; "{org}" in it for a per-pay-org objective
    description: str = ""
    step: str | None = None
    resource: str | None = None
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


def load_spec(path: str | Path | None = None) -> SloSpec:
    """The spec at ``path``, else ``$PAYWATCH_SLO_SPEC``, else the shipped file (cached
    per path and modification time: reports call this on every render)."""
    import yaml

    p = Path(path or os.environ.get(SPEC_ENV) or SHIPPED_SPEC)
    try:
        key = (str(p), p.stat().st_mtime)
    except OSError as exc:
        raise RuleError(f"SLO spec {p}: cannot read it ({exc.strerror})") from None
    if key not in _CACHE:
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RuleError(f"SLO spec {p}: not valid YAML ({exc})") from None
        _CACHE[key] = parse_spec(doc, str(p))
    return _CACHE[key]
