"""Export rules as a Prometheus rule file (``promtool check rules`` accepts it).

Burn-rate rules become one alert per severity whose expression is the OR of that
severity's window pairs (SRE workbook form, each pair guarded by the minimum traffic);
missing-data rules become ``absent_over_time(...)`` alerts in their own group. The
YAML is written with PyYAML when it is installed, else by a small built-in emitter
(every scalar as a JSON string, which is valid YAML).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .base import Rule
from .burnrate import BurnRateRule

GROUPS = ("paywatch-slo-burn-rate", "paywatch-thresholds", "paywatch-missing-data")


def rule_groups(rules: Iterable[Rule], prefix: str = "") -> dict[str, Any]:
    """The rule file as a plain document: ``{"groups": [{"name", "rules": [...]}]}``."""
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in GROUPS}
    for rule in rules:
        for item in rule.to_prometheus():
            if item["alert"].endswith("_absent") and item["alert"] != rule.name:
                groups[GROUPS[2]].append(item)
            elif isinstance(rule, BurnRateRule):
                groups[GROUPS[0]].append(item)
            else:
                groups[GROUPS[1]].append(item)
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
        pass

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
