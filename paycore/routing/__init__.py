"""Routing rules as data: which pay org a payment takes, by its context, with weights and
an ordered fallback; versioned in the database, cached by the router for a second.

The pay's candidate loop (skipping orgs the guard refuses) is :mod:`paycore.pay_routing`.
"""

from .errors import RoutingError, StaleRuleSet, UnknownRuleSet
from .match import CompiledRules, matches, weighted_pick
from .model import (
    DEFAULT_RULE,
    MATCH_FIELDS,
    OrgStatus,
    RouteDecision,
    RoutePreview,
    RouteQuery,
    RouteTarget,
    RoutingRule,
    RuleSet,
    check_rules,
    rules_from_json,
    rules_to_json,
)
from .router import Router, RoutingRecorder, channel_resource, preview
from .store import RoutingStore

__all__ = [
    "DEFAULT_RULE",
    "MATCH_FIELDS",
    "CompiledRules",
    "OrgStatus",
    "RouteDecision",
    "RoutePreview",
    "RouteQuery",
    "RouteTarget",
    "Router",
    "RoutingError",
    "RoutingRecorder",
    "RoutingRule",
    "RoutingStore",
    "RuleSet",
    "StaleRuleSet",
    "UnknownRuleSet",
    "channel_resource",
    "check_rules",
    "matches",
    "preview",
    "rules_from_json",
    "rules_to_json",
    "weighted_pick",
]
