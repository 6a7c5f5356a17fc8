"""Routing rules: matching on every context field, inclusive amount bounds, priority,
disabled rules, the default, the grants filter, the seeded weighted pick (70/30 over 10k
decisions) and the fallback order; rules from JSON refused with clear errors."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from paycore.routing import (
    CompiledRules,
    RouteQuery,
    RouteTarget,
    RoutingError,
    RoutingRule,
    rules_from_json,
    rules_to_json,
)

ALL = frozenset({"A", "B", "C", "D"})


def q(**kw) -> RouteQuery:
    base = dict(
        merchant_id="M1",
        order_type="goods",
        sub_type="physical",
        amount=1000,
        currency="CNY",
        user_segment=None,
        default_org="D",
        granted=ALL,
    )
    return RouteQuery(**(base | kw))


def rule(name="r", priority=10, targets=(("A", 1),), **kw) -> RoutingRule:
    return RoutingRule(
        name=name,
        priority=priority,
        targets=tuple(RouteTarget(o, w) for o, w in targets),
        **kw,
    )


def decide(rules, query=None, seed=1):
    return CompiledRules(rules).decide(query or q(), random.Random(seed))


@pytest.mark.parametrize(
    ("field", "value", "other"),
    [
        ("merchant_id", "M1", "M2"),
        ("order_type", "goods", "services"),
        ("sub_type", "physical", "virtual"),
        ("currency", "CNY", "USD"),
        ("user_segment", "vip", "new"),
    ],
)
def test_each_context_field_matches_only_its_value(field, value, other) -> None:
    rules = [rule(**{field: value})]
    assert decide(rules, q(**{field: value})).candidates == ("A",)
    miss = decide(rules, q(**{field: other}))
    assert (miss.rule, miss.candidates) == ("default", ("D",))


def test_a_rule_for_a_segment_does_not_match_a_payer_without_one() -> None:
    assert decide([rule(user_segment="vip")], q(user_segment=None)).rule == "default"


def test_amount_bounds_are_inclusive() -> None:
    rules = [rule(amount_min=100, amount_max=200)]
    for amount, hit in [(99, False), (100, True), (150, True), (200, True), (201, False)]:
        assert (decide(rules, q(amount=amount)).rule == "r") is hit, amount
    assert decide([rule(amount_min=500)], q(amount=10**9)).rule == "r"
    assert decide([rule(amount_max=500)], q(amount=501)).rule == "default"


def test_lower_priority_first_then_published_order() -> None:
    rules = [
        rule("late", 20, (("B", 1),)),
        rule("first", 5, (("A", 1),)),
        rule("tie_a", 10, (("C", 1),)),
        rule("tie_b", 10, (("D", 1),)),
    ]
    assert decide(rules).rule == "first"
    assert decide(rules[:1] + rules[2:]).rule == "tie_a"


def test_disabled_rules_never_match() -> None:
    rules = [rule("off", 1, (("B", 1),), enabled=False), rule("on", 2)]
    assert decide(rules).rule == "on"
    assert decide(rules[:1]).rule == "default"


def test_no_rules_take_the_trades_org() -> None:
    d = decide([])
    assert (d.rule, d.candidates) == ("default", ("D",))


def test_grants_filter_candidates_and_pass_over_a_rule_with_none() -> None:
    rules = [rule("r", 1, (("A", 70), ("B", 30)), fallback=("C",))]
    d = decide(rules, q(granted=frozenset({"B", "C"})))
    assert d.candidates == ("B", "C")
    d = decide(rules, q(granted=frozenset({"C"})))
    assert d.candidates == ("C",)  # only the fallback is granted
    # none of its orgs granted: the rule cannot route this merchant, the next one does
    rules.append(rule("next", 2, (("D", 1),)))
    assert decide(rules, q(granted=frozenset({"D"}))).rule == "next"
    assert decide(rules[:1], q(granted=frozenset({"D"}))).candidates == ("D",)  # default


def test_weights_split_10k_decisions_70_30_within_2_percent() -> None:
    compiled = CompiledRules([rule("split", 1, (("A", 70), ("B", 30)))])
    rng = random.Random(20261207)
    firsts = Counter(compiled.decide(q(), rng).candidates[0] for _ in range(10_000))
    assert abs(firsts["A"] / 10_000 - 0.70) <= 0.02, firsts
    assert abs(firsts["B"] / 10_000 - 0.30) <= 0.02, firsts
    # seeded: the same seed gives the same sequence
    again = random.Random(20261207)
    seq = [compiled.decide(q(), again).candidates[0] for _ in range(50)]
    rng = random.Random(20261207)
    assert seq == [compiled.decide(q(), rng).candidates[0] for _ in range(50)]


def test_candidates_are_the_pick_then_targets_by_weight_then_fallback() -> None:
    rules = [rule("r", 1, (("A", 10), ("B", 60), ("C", 30)), fallback=("D",))]
    seen = set()
    for seed in range(200):
        c = decide(rules, seed=seed).candidates
        assert len(c) == 4 and c[-1] == "D", c
        rest = [o for o in ("B", "C", "A") if o != c[0]]  # by weight, the pick left out
        assert list(c[1:3]) == rest, c
        seen.add(c[0])
    assert seen == {"A", "B", "C"}


def test_a_zero_weight_target_is_standby_only() -> None:
    rules = [rule("r", 1, (("A", 100), ("B", 0)))]
    assert {decide(rules, seed=s).candidates for s in range(100)} == {("A", "B")}
    # the weighted target not granted: the standby one is still tried
    assert decide(rules, q(granted=frozenset({"B"}))).candidates == ("B",)


def test_rules_round_trip_through_json() -> None:
    rules = (
        rule("a", 1, (("A", 70), ("B", 30)), fallback=("C",), amount_min=1, currency="CNY"),
        rule("b", 2, enabled=False, user_segment="vip"),
    )
    assert rules_from_json(rules_to_json(rules)) == rules
    assert rules_from_json('{"rules": []}') == ()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "not valid JSON"),
        ('{"a": 1}', "JSON list"),
        ('[{"name": "r", "priority": 1}]', "required"),
        ('[{"name": "r", "priority": 1, "targets": [], "colour": "red"}]', "unknown field"),
        ('[{"name": "r", "priority": 1, "targets": []}]', "1-16 targets"),
        (
            '[{"name": "r", "priority": 1, "targets": [{"pay_org_no": "A", "weight": 0}]}]',
            "above 0",
        ),
        (
            '[{"name": "r", "priority": 1, "targets": [{"pay_org_no": "A", "weight": -1}]}]',
            "weight",
        ),
        ('[{"name": "r", "priority": 1, "targets": [{"pay_org_no": "A"}]}]', "weight"),
        (
            '[{"name": "r", "priority": "1", "targets": [{"pay_org_no": "A", "weight": 1}]}]',
            "priority",
        ),
        (
            '[{"name": "r", "priority": 1, "amount_min": 5, "amount_max": 4,'
            ' "targets": [{"pay_org_no": "A", "weight": 1}]}]',
            "amount_min is above",
        ),
        (
            '[{"name": "r", "priority": 1, "fallback": ["A"],'
            ' "targets": [{"pay_org_no": "A", "weight": 1}]}]',
            "at most once",
        ),
        (
            '[{"name": "r", "priority": 1, "currency": "XXX",'
            ' "targets": [{"pay_org_no": "A", "weight": 1}]}]',
            "unknown currency",
        ),
        (
            '[{"name": "bad name", "priority": 1, "targets": [{"pay_org_no": "A", "weight": 1}]}]',
            "rule name",
        ),
        (
            '[{"name": "r", "priority": 1, "targets": [{"pay_org_no": "A", "weight": 1}]},'
            ' {"name": "r", "priority": 2, "targets": [{"pay_org_no": "B", "weight": 1}]}]',
            "unique",
        ),
    ],
)
def test_invalid_rules_are_refused_with_a_clear_error(text, says) -> None:
    with pytest.raises(RoutingError) as err:
        rules_from_json(text)
    assert says in str(err.value)
    assert err.value.http_status == 400
