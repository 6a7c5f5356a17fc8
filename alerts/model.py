"""Value objects shared by rules, the engine and the notifiers.

Times are epoch seconds (float); labels are plain ``str -> str`` dicts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import RuleError

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RESERVED_LABELS = frozenset({"alertname", "severity"})

#: alert lifecycle states, as stored in ``alert_states.state``
INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"


def canonical_labels(labels: Mapping[str, str]) -> str:
    """Sorted, compact JSON of ``labels``: the stored form and the fingerprint input."""
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """sha256 (hex) of the rule name and its sorted labels (``alertname`` excluded)."""
    rest = {k: v for k, v in labels.items() if k != "alertname"}
    return hashlib.sha256(f"{rule}\x00{canonical_labels(rest)}".encode()).hexdigest()


_TEMPLATE = re.compile(r"\{\{\s*\$(value|labels\.([a-zA-Z_][a-zA-Z0-9_]*))\s*\}\}")


def render(template: str, labels: Mapping[str, str], value: float | None) -> str:
    """Expand ``{{ $value }}`` and ``{{ $labels.name }}`` the way Prometheus would.

    Only these two forms are expanded; anything else is left as written, so the same
    annotation text works in the engine and in the exported Prometheus rule file.
    """

    def sub(m: re.Match[str]) -> str:
        if m.group(2):
            return labels.get(m.group(2), "")
        return "" if value is None else f"{value:.4g}"

    return _TEMPLATE.sub(sub, template)


def check_labels(labels: Mapping[str, str], what: str) -> None:
    """Raise :class:`RuleError` unless every key is a valid, non-reserved label name."""
    for key, val in labels.items():
        if not isinstance(key, str) or not LABEL_NAME.fullmatch(key):
            raise RuleError(f"{what}: invalid label name {key!r}")
        if key in RESERVED_LABELS:
            raise RuleError(f"{what}: label {key!r} is set by the engine")
        if not isinstance(val, str):
            raise RuleError(f"{what}: label {key!r} must be a string")


@dataclass(frozen=True)
class Instance:
    """One alert instance a rule finds active at an evaluation."""

    rule: str
    labels: dict[str, str]
    severity: str
    value: float | None
    for_s: float = 0.0
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.labels)


@dataclass(frozen=True)
class Alert:
    """An alert instance as stored in ``alert_states`` (and as notified)."""

    fingerprint: str
    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    state: str
    value: float | None
    active_since: float | None
    fired_at: float | None
    resolved_at: float | None
    last_eval: float
    last_notified: float | None = None


@dataclass(frozen=True)
class Transition:
    """One lifecycle transition, as appended to ``alert_history``."""

    fingerprint: str
    rule: str
    labels: dict[str, str]
    from_state: str
    to_state: str
    value: float | None
    at: float


@dataclass(frozen=True)
class Notification:
    """A group of alerts handed to a notifier in one message."""

    group_key: str
    group_labels: dict[str, str]
    status: str  # firing | resolved (firing if any alert in it fires)
    alerts: tuple[Alert, ...]
    at: float


@dataclass(frozen=True)
class Delivery:
    """The outcome of handing one notification to one receiver."""

    receiver: str
    status: str  # sent | failed
    attempts: int
    last_error: str = ""
    payload: str = "{}"


@dataclass(frozen=True)
class NotificationRecord:
    """A row of ``alert_notifications``: one group sent (or silenced) to one receiver."""

    id: int
    receiver: str
    group_key: str
    fingerprints: tuple[str, ...]
    status: str  # sent | failed | silenced
    attempts: int
    last_error: str
    payload: str
    at: float
