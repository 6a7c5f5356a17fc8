"""The impact query counts the routing rules' alternatives (issue #21): a payment routed to
a down pay org whose rule names another org that is up has somewhere to go."""

from __future__ import annotations

from dataclasses import replace

from seeded_map import contract_map

from stability.impact_traffic import RecentTraffic, RoutedTraffic, traffic_impact

A, B, C = "channel.SANDBOX_A", "channel.SANDBOX_B", "channel.SANDBOX_C"


def _traffic(routed: RoutedTraffic | None) -> RecentTraffic:
    """link.pay 40/s: A 30/s, B 10/s; two merchants on A, one granted B too."""
    return RecentTraffic(
        {"link.pay": {"SANDBOX_A": 30.0, "SANDBOX_B": 10.0}},
        {"SANDBOX_A": {"m1": 10, "m2": 5}, "SANDBOX_B": {"m3": 4}},
        {
            "m1": frozenset({"SANDBOX_A", "SANDBOX_B"}),
            "m2": frozenset({"SANDBOX_A"}),
            "m3": frozenset({"SANDBOX_B"}),
        },
        routed,
    )


#: "split" sends to A or B (fallback C); "only_a" has A alone; "default" matched no rule
ROUTED = RoutedTraffic(
    decisions={
        "split": {"SANDBOX_A": 60.0, "SANDBOX_B": 40.0},
        "only_a": {"SANDBOX_A": 20.0},
        "default": {"SANDBOX_A": 20.0},
    },
    candidates={
        "split": ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C"),
        "only_a": ("SANDBOX_A",),
    },
)


def _pay(failed, routed, **kw):
    out = {i.link: i for i in traffic_impact(contract_map(), failed, _traffic(routed), **kw)}
    return out["link.pay"]


def test_channel_down_counts_the_routed_payments_with_another_org():
    pay = _pay([A], ROUTED)
    # of the 100 decisions that chose A, the 60 of "split" have B or C left
    assert pay.routed_share == 0.6
    assert pay.fallback_orgs == ("SANDBOX_B", "SANDBOX_C")
    assert pay.message.endswith(
        "60% of its routed payments have an alternative org "
        "(routing falls back to SANDBOX_B, SANDBOX_C)"
    )
    # grants are counted as before, beside the rules
    assert pay.merchants_affected == 2 and pay.merchants_with_alternative == 1


def test_an_unhealthy_org_is_no_alternative():
    pay = _pay([A], ROUTED, unhealthy=[B])
    assert pay.fallback_orgs == ("SANDBOX_C",) and pay.routed_share == 0.6
    pay = _pay([A], ROUTED, unhealthy=[B, C])
    assert pay.fallback_orgs == () and pay.routed_share == 0.0
    assert "0% of its routed payments have an alternative org (routing falls back to no other" in (
        pay.message
    )


def test_down_org_without_routed_payments_still_lists_the_fallback():
    pay = _pay([C], ROUTED)
    assert pay.routed_share is None and pay.fallback_orgs == ("SANDBOX_A", "SANDBOX_B")
    assert pay.message.endswith(
        "routing falls back to SANDBOX_A, SANDBOX_B (no routed payments in the window)"
    )


def test_no_rule_naming_the_down_org_says_nothing_of_routing():
    only_c = RoutedTraffic({"r": {"SANDBOX_C": 5.0}}, {"r": ("SANDBOX_C",)})
    pay = _pay([A], only_c)
    assert pay.routed_share is None and pay.fallback_orgs is None
    assert "routing" not in pay.message
    assert _pay([A], RoutedTraffic()).fallback_orgs is None  # no rules published


def test_without_routing_known_the_answer_is_unchanged():
    plain = _pay([A], None)
    assert plain.routed_share is None and plain.fallback_orgs is None
    assert "routing" not in plain.message
    assert replace(_pay([A], ROUTED), routed_share=None, fallback_orgs=None) == plain
    # only link.pay is routed: refunds go back through the pay's own org
    out = {i.link: i for i in traffic_impact(contract_map(), [A], _traffic(ROUTED))}
    assert out["link.refund"].fallback_orgs is None
