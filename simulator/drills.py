"""Scripted drills: timed fault steps on the sandbox channel or a fault proxy.

A drill is data (:class:`Drill`, :class:`Step`), built in or read from a YAML file::

    name: channel-failure
    summary: the pay org fails every call for two minutes
    needs: sandbox            # sandbox | redis | database
    duration_s: 240           # traffic time; steps happen inside it
    steps:
      - {at_s: 60,  kind: knobs, target: "{org}", params: {error_rate: 1.0}}
      - {at_s: 180, kind: knobs, target: "{org}", params: {error_rate: 0.0}}

``kind: knobs`` changes the sandbox's knobs of a pay org (``{org}`` is the drill's
target org); ``kind: proxy`` changes a :class:`~.faultproxy.FaultProxy` (target
``redis`` or ``database``; params ``latency_ms``, ``down``). :meth:`Drill.scaled`
shrinks the timeline (a test runs a 4-minute drill in 24 s with factor 0.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

KINDS = ("knobs", "proxy")
NEEDS = ("sandbox", "redis", "database")


@dataclass(frozen=True)
class Step:
    """One change at ``at_s`` seconds after the drill starts."""

    at_s: float
    kind: str
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"step kind must be one of {KINDS}")
        if self.at_s < 0:
            raise ValueError("at_s must be >= 0")


@dataclass(frozen=True)
class Drill:
    """A named timeline of steps with the traffic's duration."""

    name: str
    summary: str
    needs: str
    duration_s: float
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if self.needs not in NEEDS:
            raise ValueError(f"needs must be one of {NEEDS}")
        if any(s.at_s > self.duration_s for s in self.steps):
            raise ValueError("every step must happen within duration_s")

    def scaled(self, factor: float) -> Drill:
        """The same drill with every time multiplied by ``factor`` (> 0)."""
        if factor <= 0:
            raise ValueError("the time factor must be positive")
        steps = tuple(replace(s, at_s=s.at_s * factor) for s in self.steps)
        return replace(self, duration_s=self.duration_s * factor, steps=steps)

    def for_org(self, org: str) -> Drill:
        """Steps targeting ``{org}`` aimed at ``org``."""
        steps = tuple(replace(s, target=s.target.replace("{org}", org)) for s in self.steps)
        return replace(self, steps=steps)

    def as_dict(self) -> dict[str, Any]:
        steps = [
            {
                "at_s": s.at_s,
                "kind": s.kind,
                "target": s.target,
                "params": dict(s.params),
                "note": s.note,
            }
            for s in self.steps
        ]
        return {
            "name": self.name,
            "summary": self.summary,
            "needs": self.needs,
            "duration_s": self.duration_s,
            "steps": steps,
        }


def _knobs(at: float, params: dict[str, Any], note: str) -> Step:
    return Step(at, "knobs", "{org}", params, note)


BUILTIN: dict[str, Drill] = {
    d.name: d
    for d in (
        Drill(
            "channel-latency",
            "the pay org answers in ~2.5 s for two minutes (t+60 s)",
            "sandbox",
            240.0,
            (
                _knobs(60, {"latency_ms": 2500.0, "latency_jitter": 0.1}, "latency spike"),
                _knobs(180, {"latency_ms": 5.0, "latency_jitter": 0.25}, "latency back"),
            ),
        ),
        Drill(
            "channel-failure",
            "the pay org fails every call (HTTP 503) for two minutes",
            "sandbox",
            240.0,
            (
                _knobs(60, {"error_rate": 1.0}, "channel down"),
                _knobs(180, {"error_rate": 0.0}, "channel back"),
            ),
        ),
        Drill(
            "redis-down",
            "Redis (locks, limits, switch pub/sub) unreachable for a minute",
            "redis",
            180.0,
            (
                Step(60, "proxy", "redis", {"down": True}, "redis down"),
                Step(120, "proxy", "redis", {"down": False}, "redis back"),
            ),
        ),
        Drill(
            "db-slow",
            "every database round trip 200 ms slower for two minutes",
            "database",
            240.0,
            (
                Step(60, "proxy", "database", {"latency_ms": 200.0}, "database slow"),
                Step(180, "proxy", "database", {"latency_ms": 0.0}, "database normal"),
            ),
        ),
    )
}


def drill_from_dict(doc: Mapping[str, Any]) -> Drill:
    """A drill from a parsed YAML/JSON document (see the module docstring)."""
    try:
        steps = tuple(
            Step(
                float(s["at_s"]),
                str(s["kind"]),
                str(s["target"]),
                dict(s.get("params") or {}),
                str(s.get("note", "")),
            )
            for s in doc.get("steps", [])
        )
        return Drill(
            str(doc["name"]),
            str(doc.get("summary", "")),
            str(doc["needs"]),
            float(doc["duration_s"]),
            steps,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed drill: {exc!r}") from exc


def load_drill(name_or_path: str) -> Drill:
    """A built-in drill by name, or a drill read from a YAML file."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"no drill {name_or_path!r}; built in: {', '.join(sorted(BUILTIN))}")
    import yaml

    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError("a drill file must hold a mapping")
    return drill_from_dict(doc)
