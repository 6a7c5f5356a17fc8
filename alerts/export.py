"""Export rules as a Prometheus rule file (``promtool check rules`` accepts it).

Burn-rate rules (the SLO spec's objectives) first become recording rules, Sloth's
names, each series labelled ``slo="<alert>"`` (plus its ``by`` labels):

* ``slo:sli_error:ratio_rate<w>``: the SLI's error ratio over every window its pairs use
  and over the 30-day budget period;
* ``slo:sli_requests:rate<w>``: its traffic over each long window (the min-traffic guard);
* ``slo:objective:ratio`` and ``slo:error_budget:remaining`` (1 − 30-day error ratio ÷
  budget: 1 untouched, 0 spent, below 0 overspent).

Then one alert per severity whose expression is the OR of that severity's window pairs
over the recorded series (SRE workbook form, each pair guarded by the minimum traffic);
missing-data rules become ``absent_over_time(...)`` alerts in their own group. The
YAML is written with PyYAML when it is installed, else by a small built-in emitter
(every scalar as a JSON string, which is valid YAML).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .base import BurnWindow, Rule
from .burnrate import BurnRateRule
from .slo_spec import BUDGET_PERIOD_S
from .spec import duration, number, selector, sum_by

GROUPS = (
    "paywatch-slo-sli",
    "paywatch-slo-burn-rate",
    "paywatch-thresholds",
    "paywatch-missing-data",
)
ERROR_RATIO = "slo:sli_error:ratio_rate"
REQUESTS_RATE = "slo:sli_requests:rate"
OBJECTIVE = "slo:objective:ratio"
BUDGET_REMAINING = "slo:error_budget:remaining"


def recorded(name: str, rule: BurnRateRule) -> str:
    """The selector of one of ``rule``'s recorded series."""
    return selector(name, {"slo": rule.name})


def recording_rules(rule: BurnRateRule) -> list[dict[str, Any]]:
    """The recording rules a burn-rate rule's alerts (and dashboards) read."""
    label = {"slo": rule.name}
    wins = sorted({s for w in rule.windows for s in (w.long_s, w.short_s)} | {BUDGET_PERIOD_S})
    out = [
        {"record": ERROR_RATIO + duration(s), "expr": rule._ratio_promql(s), "labels": label}
        for s in wins
    ]
    if rule.min_traffic_rps is not None:
        total = selector(rule.metric, rule.match)
        for s in sorted({w.long_s for w in rule.windows}):
            expr = sum_by(rule.by, f"rate({total}[{duration(s)}])")
            out.append({"record": REQUESTS_RATE + duration(s), "expr": expr, "labels": label})
    period = recorded(ERROR_RATIO + duration(BUDGET_PERIOD_S), rule)
    out += [
        {"record": OBJECTIVE, "expr": f"vector({number(rule.slo)})", "labels": label},
        {
            "record": BUDGET_REMAINING,
            "expr": f"1 - {period} / {number(rule.budget)}",
            "labels": label,
        },
    ]
    return out


def _pair(rule: BurnRateRule, w: BurnWindow) -> str:
    t = f"({number(w.factor)} * {number(rule.budget)})"
    lines = [
        "(",
        f"  {recorded(ERROR_RATIO + duration(w.long_s), rule)} > {t}",
        "and",
        f"  {recorded(ERROR_RATIO + duration(w.short_s), rule)} > {t}",
    ]
    if rule.min_traffic_rps is not None:
        traffic = recorded(REQUESTS_RATE + duration(w.long_s), rule)
        lines += ["and", f"  {traffic} >= {number(rule.min_traffic_rps)}"]
    return "\n".join([*lines, ")"])


def burn_alerts(rule: BurnRateRule) -> list[dict[str, Any]]:
    """The burn-rate alerts over the recorded series: one per severity, its pairs OR'ed;
    labels and annotations as :meth:`BurnRateRule.to_prometheus` gives them."""
    own = [i for i in rule.to_prometheus() if i["alert"] == rule.name]
    out = []
    for item in own:
        pairs = [_pair(rule, w) for w in rule.windows if w.severity == item["labels"]["severity"]]
        # without the recorded series' slo label: the alert's labels are the engine's
        expr = "max without (slo) (\n" + "\nor\n".join(pairs) + "\n)\n"
        out.append({**item, "expr": expr})
    return out


def rule_groups(rules: Iterable[Rule], prefix: str = "") -> dict[str, Any]:
    """The rule file as a plain document: ``{"groups": [{"name", "rules": [...]}]}``."""
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in GROUPS}
    for rule in rules:
        if isinstance(rule, BurnRateRule):
            groups[GROUPS[0]] += recording_rules(rule)
            groups[GROUPS[1]] += burn_alerts(rule)
        for item in rule.to_prometheus():
            if item["alert"].endswith("_absent") and item["alert"] != rule.name:
                groups[GROUPS[3]].append(item)
            elif not isinstance(rule, BurnRateRule):
                groups[GROUPS[2]].append(item)
    return {
        "groups": [
            {"name": prefix + name, "rules": items} for name, items in groups.items() if items
        ]
    }


def to_prometheus_rules(rules: Iterable[Rule], prefix: str = "") -> str:
    """The rules as a Prometheus rule file (YAML text)."""
    doc = rule_groups(rules, prefix)
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is usually present
        return emit_yaml(doc)
    return _pyyaml(yaml, doc)


def _pyyaml(yaml: Any, doc: dict[str, Any]) -> str:
    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True  # rules share label dicts; a rule file reads better without &id

    def text(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    out: str = yaml.dump(
        doc, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )
    return out


def emit_yaml(doc: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars, without PyYAML."""
    return "".join(_emit(doc, indent))


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)


def _emit(node: Any, indent: int) -> Iterable[str]:
    pad = " " * indent
    if isinstance(node, dict):
        if not node:
            yield pad + "{}\n"
        for key, value in node.items():
            if isinstance(value, dict | list) and value:
                yield f"{pad}{_scalar(key)}:\n"
                yield from _emit(value, indent + 2)
            else:
                yield f"{pad}{_scalar(key)}: {_flow(value)}\n"
    elif isinstance(node, list):
        for item in node:
            lines = (
                "".join(_emit(item, indent + 2))
                if isinstance(item, dict | list) and item
                else f"{pad}  {_flow(item)}\n"
            )
            yield pad + "- " + lines[indent + 2 :]
    else:
        yield pad + _flow(node) + "\n"


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{}" if not value else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[]" if not value else json.dumps(value, ensure_ascii=False)
    return _scalar(value)
