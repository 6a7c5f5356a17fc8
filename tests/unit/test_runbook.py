"""docs/runbook.md cannot drift from what the product ships.

Every alert the default rules can raise has its own section (a ``### <alert>``
heading, so the rule's name is also the anchor), and no section describes an alert
that no longer exists. Every resource of the seeded dependency map and every default
limit rule is in the dependency table, with the grade the seed gives it and, for weak
dependencies, their fallback. Per-pay-org names are written generically
(``slo_channel_call_success_<org>``, ``channel.<ORG>``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alerts.defaults import WEAK_SLOS, build_default_rules, org_slug
from stability.depmap_seed import DEFAULT_PAY_ORGS, default_map
from stability.policy import default_rules

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


DEPENDENCY_BURN = "slo_dependency_success_<resource>"


def generic(name: str) -> str:
    """A per-pay-org name as the runbook writes it."""
    for org in DEFAULT_PAY_ORGS:
        name = name.replace(org_slug(org), "<org>").replace(org, "<ORG>")
    for res in WEAK_SLOS:  # one section for the weak dependencies' burn-rate rules
        name = name.replace(f"slo_dependency_success_{org_slug(res)}", DEPENDENCY_BURN)
    return name


@pytest.fixture(scope="module")
def text() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The body of a ``##``/``###`` section, up to the next heading of its level or above."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    nxt = re.compile(rf"^#{{1,{len(level)}}} ", re.M).search(text, start + len(heading) + 1)
    return text[start : nxt.start() if nxt else len(text)]


def test_every_shipped_alert_has_a_section_and_no_section_is_stale(text):
    shipped = {
        generic(n) for rule in build_default_rules(DEFAULT_PAY_ORGS) for n in rule.alert_names()
    }
    assert {"slo_pay_success", "trial_balance_broken_absent"} <= shipped  # the rules load
    alerts = section(text, "## Alerts")
    documented = set(re.findall(r"^### (\S+)$", alerts, re.M))
    assert shipped - documented == set(), "alerts without a runbook section"
    assert documented - shipped == set(), "runbook sections for alerts that do not exist"
    for name in documented:  # each section says what it means and what to do
        body = section(alerts, f"### {name}")
        assert "**Means.**" in body and ("**Act.**" in body), name


def test_every_seeded_dependency_and_limit_is_in_the_switch_table(text):
    table = section(text, "### The dependencies and what you may switch")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    dmap = default_map(DEFAULT_PAY_ORGS, redis_lock=True)
    for resource in dmap.resources:
        name = generic(resource.name)
        row = next((r for r in rows if f"`{name}`" in r.split("|")[1]), None)
        assert row is not None, f"{name} is not in the runbook's dependency table"
        grades = {e.grade for e in dmap.edges if e.callee == resource.name}
        for grade in grades:
            assert grade in row, (name, grade)
        for edge in dmap.edges:
            if edge.callee == resource.name and edge.grade == "weak":
                assert edge.fallback and edge.fallback in row, (name, edge.fallback)
                assert f"degrade {name}" in row, name
    for rule in default_rules(DEFAULT_PAY_ORGS):
        assert f"`{generic(rule.name)}`" in section(text, "## Flipping a switch"), rule.name
