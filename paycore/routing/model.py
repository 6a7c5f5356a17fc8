"""Routing rules as data: what a rule matches, where it sends a payment, and what the
router answers.

Every value object validates itself when built, so a :class:`RoutingRule` that exists is
a valid one: the store, the console and the CLI build rules the same way (from JSON with
:func:`rules_from_json`) and get the same clear :class:`~.errors.RoutingError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from ..context import CODE_PATTERN
from ..money import CURRENCIES, MAX_AMOUNT
from .errors import RoutingError

#: a rule's name: 1-64 letters, digits, ``_ . -`` (metrics label it)
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_CODE = re.compile(CODE_PATTERN)
MAX_RULES = 200
MAX_TARGETS = 16
MAX_WEIGHT = 1_000_000
#: the decision's rule when no rule matched (the trade's own pay org)
DEFAULT_RULE = "default"
#: the fields a rule may match on (None = any)
MATCH_FIELDS = ("merchant_id", "order_type", "sub_type", "currency", "user_segment")
_RULE_KEYS = frozenset(
    {"name", "priority", "enabled", "amount_min", "amount_max", "targets", "fallback"}
) | frozenset(MATCH_FIELDS)


def _code(value: object, where: str) -> str:
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise RoutingError(f"{where} must be 1-32 characters of [A-Za-z0-9_.-]", field=where)
    return value


def _int(value: object, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RoutingError(f"{where} must be an integer in [{lo}, {hi}]", field=where)
    return value


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """A pay org a rule sends payments to, with its share of the volume (``weight``;
    0: never picked by weight, only tried when the picked org refuses)."""

    pay_org_no: str
    weight: int

    def __post_init__(self) -> None:
        _code(self.pay_org_no, "targets.pay_org_no")
        _int(self.weight, f"targets[{self.pay_org_no}].weight", 0, MAX_WEIGHT)


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One rule: the context it matches (None = any; amounts inclusive, minor units),
    the weighted targets and the ordered fallback. Lower ``priority`` is tried first;
    the first enabled rule that matches decides."""

    name: str
    priority: int
    targets: tuple[RouteTarget, ...]
    enabled: bool = True
    merchant_id: str | None = None
    order_type: str | None = None
    sub_type: str | None = None
    currency: str | None = None
    user_segment: str | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    fallback: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise RoutingError("rule name must be 1-64 characters of [A-Za-z0-9_.-]", field="name")
        where = f"rule {self.name}"
        _int(self.priority, f"{where}: priority", -MAX_WEIGHT, MAX_WEIGHT)
        if not isinstance(self.enabled, bool):
            raise RoutingError(f"{where}: enabled must be true or false", field="enabled")
        for name in MATCH_FIELDS:
            value = getattr(self, name)
            if value is not None:
                _code(value, f"{where}: {name}")
        if self.currency is not None and self.currency not in CURRENCIES:
            raise RoutingError(f"{where}: unknown currency {self.currency}", field="currency")
        for name in ("amount_min", "amount_max"):
            value = getattr(self, name)
            if value is not None:
                _int(value, f"{where}: {name}", 0, MAX_AMOUNT)
        if (
            self.amount_min is not None
            and self.amount_max is not None
            and self.amount_min > self.amount_max
        ):
            raise RoutingError(f"{where}: amount_min is above amount_max", field="amount_min")
        targets, fallback = tuple(self.targets), tuple(self.fallback)
        if not targets or len(targets) > MAX_TARGETS:
            raise RoutingError(f"{where}: 1-{MAX_TARGETS} targets", field="targets")
        if not all(isinstance(t, RouteTarget) for t in targets):
            raise RoutingError(f"{where}: targets must be RouteTarget", field="targets")
        if not any(t.weight > 0 for t in targets):
            raise RoutingError(
                f"{where}: at least one target needs a weight above 0", field="targets"
            )
        orgs = [t.pay_org_no for t in targets] + [_code(o, f"{where}: fallback") for o in fallback]
        if len(orgs) != len(set(orgs)) or len(fallback) > MAX_TARGETS:
            raise RoutingError(
                f"{where}: each pay org at most once in targets and fallback", field="fallback"
            )
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "fallback", fallback)

    @property
    def orgs(self) -> tuple[str, ...]:
        """Every pay org the rule names: targets, then fallback."""
        return tuple(t.pay_org_no for t in self.targets) + self.fallback

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON-ready data (fields left at "any" are omitted)."""
        out: dict[str, Any] = {"name": self.name, "priority": self.priority}
        if not self.enabled:
            out["enabled"] = False
        for name in (*MATCH_FIELDS, "amount_min", "amount_max"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["targets"] = [{"pay_org_no": t.pay_org_no, "weight": t.weight} for t in self.targets]
        if self.fallback:
            out["fallback"] = list(self.fallback)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingRule:
        """A rule from JSON data; unknown keys and wrong shapes are a RoutingError."""
        if not isinstance(data, Mapping):
            raise RoutingError("each rule must be a JSON object")
        name = data.get("name", "?")
        unknown = sorted(set(data) - _RULE_KEYS)
        if unknown:
            raise RoutingError(f"rule {name}: unknown field(s) {', '.join(map(str, unknown))}")
        if "name" not in data or "priority" not in data or "targets" not in data:
            raise RoutingError(f"rule {name}: name, priority and targets are required")
        targets = data["targets"]
        if not isinstance(targets, list) or not all(isinstance(t, Mapping) for t in targets):
            raise RoutingError(f"rule {name}: targets must be a list of objects", field="targets")
        fallback = data.get("fallback", [])
        if not isinstance(fallback, list):
            raise RoutingError(
                f"rule {name}: fallback must be a list of pay orgs", field="fallback"
            )
        try:
            built = [RouteTarget(t["pay_org_no"], t["weight"]) for t in targets]
        except KeyError as exc:
            raise RoutingError(f"rule {name}: each target needs pay_org_no and weight") from exc
        kwargs = {k: data[k] for k in (*MATCH_FIELDS, "amount_min", "amount_max") if k in data}
        return cls(
            name=data["name"],
            priority=data["priority"],
            enabled=data.get("enabled", True),
            targets=tuple(built),
            fallback=tuple(fallback),
            **kwargs,
        )


def check_rules(rules: Iterable[RoutingRule]) -> tuple[RoutingRule, ...]:
    """A rule set's rules, checked as a whole: at most :data:`MAX_RULES`, names unique."""
    rules = tuple(rules)
    if len(rules) > MAX_RULES:
        raise RoutingError(f"at most {MAX_RULES} rules")
    if not all(isinstance(r, RoutingRule) for r in rules):
        raise RoutingError("rules must be RoutingRule")
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RoutingError(f"rule names must be unique: {', '.join(dupes)}", field="name")
    return rules


def rules_to_json(rules: Iterable[RoutingRule]) -> str:
    """The rules as the JSON the console edits (a list of objects, indented)."""
    return json.dumps([r.to_dict() for r in rules], indent=2, sort_keys=False)


def rules_from_json(text: str) -> tuple[RoutingRule, ...]:
    """Rules from JSON (a list of rule objects, or ``{"rules": [...]}``); any problem is
    a :class:`RoutingError` naming the rule and the field."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise RoutingError(f"rules are not valid JSON: {exc}") from exc
    if isinstance(data, Mapping) and set(data) == {"rules"}:
        data = data["rules"]
    if not isinstance(data, list):
        raise RoutingError('rules must be a JSON list of rule objects (or {"rules": [...]})')
    return check_rules(RoutingRule.from_dict(d) for d in data)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One published version of the rules (version 0: none published, no rules)."""

    version: int
    rules: tuple[RoutingRule, ...]
    author: str
    reason: str
    created_at: datetime | None

    def rule(self, name: str) -> RoutingRule | None:
        return next((r for r in self.rules if r.name == name), None)


class RouteQuery(NamedTuple):
    """What the router decides on: the pay's context, amount, the payer's segment, the
    trade's own pay org (used when no rule matches) and the merchant's granted orgs.

    Immutable like the other value objects, but a tuple: one is built per pay, and a
    tuple is built ten times faster than a frozen dataclass (``q._replace(...)``)."""

    merchant_id: str
    order_type: str
    sub_type: str
    amount: int
    currency: str
    user_segment: str | None
    default_org: str
    granted: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The rule that decided (``"default"`` when none matched) and the pay orgs to try,
    in order: the weighted pick, the rule's other targets by weight, then its fallback;
    granted orgs only, each once."""

    rule: str
    candidates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OrgStatus:
    """A candidate pay org and why it would be skipped now (None: looks available;
    ``degraded``, ``breaker_open``, ``bulkhead_full``)."""

    pay_org_no: str
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.reason is None


@dataclass(frozen=True, slots=True)
class RoutePreview:
    """ "Which org would this payment take?": the decision, each candidate's status, and
    the org a pay would take now (the first available candidate; None: all refuse)."""

    rule: str
    orgs: tuple[OrgStatus, ...]
    recommended: str | None

    @property
    def candidates(self) -> tuple[str, ...]:
        return tuple(o.pay_org_no for o in self.orgs)
