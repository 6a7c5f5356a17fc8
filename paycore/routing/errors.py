"""Errors of the routing rules.

They derive from the pay core's tree (:mod:`paycore.errors`), so the API and the
console map them like every other error. ::

    RoutingError (InvalidRequest)   400  invalid_routing_rules
    ├── StaleRuleSet (Conflict)     409  stale_rule_set
    └── UnknownRuleSet (NotFound)   404  unknown_rule_set
"""

from __future__ import annotations

from ..errors import Conflict, InvalidRequest, NotFound


class RoutingError(InvalidRequest):
    """A rule set is invalid (a field, a weight, an amount range, the JSON itself);
    the message names the rule and the field. Nothing was written."""

    code = "invalid_routing_rules"
    http_status = 400


class StaleRuleSet(RoutingError, Conflict):
    """A publish based on a version that is no longer the current one (someone else
    published meanwhile): read the current rules again and re-apply the change."""

    code = "stale_rule_set"
    http_status = 409


class UnknownRuleSet(RoutingError, NotFound):
    """No rule set has this version."""

    code = "unknown_rule_set"
    http_status = 404
