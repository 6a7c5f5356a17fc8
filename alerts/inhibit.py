"""Inhibition rules as data: while a source alert fires, matching target alerts are not
notified (Alertmanager's ``inhibit_rules``).

A database outage fails every link at once: one page for the database says it all, the
per-link SLO and latency pages it causes would only bury it. The dispatcher leaves an
inhibited alert out of its notification and logs it as ``inhibited`` (with the rule and
the source alert), the way it logs a silenced one. An alert never inhibits itself, and
``equal`` labels must have the same value on source and target (e.g. the same ``env``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import RuleError
from .model import FIRING, LABEL_NAME, Alert

#: matcher operators, longest first so ``=~`` is not read as ``=``
OPS = ("=~", "!~", "!=", "=")
_MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``name op value`` (regexes are anchored, as in Prometheus)."""

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if not LABEL_NAME.fullmatch(self.name) or self.op not in OPS:
            raise RuleError(f"invalid matcher {self.name}{self.op}{self.value}")
        if "~" in self.op:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise RuleError(f"matcher {self.name}: bad regex {self.value!r}: {exc}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_matcher(text: str) -> Matcher:
    """``alertname=breaker_open``, ``step=~.+``, ``env!=test``; quotes around the value
    are dropped."""
    m = _MATCHER.fullmatch(text or "")
    if m is None:
        raise RuleError(f"not a matcher: {text!r} (want name=value, name!=value, name=~regex)")
    value = m.group(3)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return Matcher(m.group(1), m.group(2), value)


def _all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True)
class InhibitRule:
    """While an alert matching ``source`` fires, alerts matching ``target`` (and equal to
    it on the ``equal`` labels) are not notified."""

    name: str
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.source or not self.target:
            raise RuleError(f"inhibit rule {self.name}: source and target matchers needed")

    @classmethod
    def of(
        cls, name: str, source: Iterable[str], target: Iterable[str], equal: Iterable[str] = ()
    ) -> InhibitRule:
        """Build from matcher strings (``"alertname=breaker_open"``)."""
        return cls(
            name,
            tuple(parse_matcher(s) for s in source),
            tuple(parse_matcher(t) for t in target),
            tuple(equal),
        )

    def inhibits(self, source: Alert, target: Alert) -> bool:
        return (
            source.fingerprint != target.fingerprint
            and _all(self.source, _labels(source))
            and _all(self.target, _labels(target))
            and all(source.labels.get(k, "") == target.labels.get(k, "") for k in self.equal)
        )


def _labels(a: Alert) -> dict[str, str]:
    return {"alertname": a.rule, "severity": a.severity, **a.labels}


#: the per-link pages: SLO burn and latency pages of a core link or a channel
_LINK_PAGES = ("severity=page", "alertname=~slo_.+|pay_latency_.+")

#: shipped inhibitions: the database down (its breaker open) suppresses the per-link
#: pages it causes
DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule.of(
        "database_breaker_open", ["alertname=breaker_open", "resource=database"], _LINK_PAGES
    ),
    # a pay org's channel down: one page for it, not a second for its breaker a minute
    # later, nor its channel SLO's burn
    InhibitRule.of(
        "channel_down_breaker", ["alertname=channel_down"], ["alertname=breaker_open"], ["resource"]
    ),
    InhibitRule.of(
        "channel_down_slo",
        ["alertname=channel_down"],
        ["alertname=~slo_channel_call_success_.+"],
        ["pay_org"],
    ),
)


def inhibited(
    alerts: Iterable[Alert], rules: Sequence[InhibitRule]
) -> dict[str, tuple[InhibitRule, Alert]]:
    """Which of the firing ``alerts`` are inhibited: fingerprint → (rule, source alert)."""
    firing = [a for a in alerts if a.state == FIRING]
    out: dict[str, tuple[InhibitRule, Alert]] = {}
    for target in firing:
        for rule in rules:
            source = next((s for s in firing if rule.inhibits(s, target)), None)
            if source is not None:
                out[target.fingerprint] = (rule, source)
                break
    return out
