"""docs/runbook.md by section: what an alert's ``runbook`` annotation points at."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
#: the Switches page, where a plan is run (``?plan=`` preselects it)
PLANS_PAGE = "/sre_switches"
#: the runbook's plan paragraph: ``**Plan.** `channel <ORG> outage` ...``
_PLAN_LINE = re.compile(r"\*\*Plan\.\*\*(.*?)(?:\n\n|\Z)", re.S)
#: placeholders in a plan name and the alert label that fills each
PLACEHOLDERS = {"<ORG>": "pay_org", "<resource>": "resource"}


@dataclass(frozen=True)
class RunbookSection:
    """One ``### name`` section of docs/runbook.md: its heading, anchor and text."""

    heading: str
    anchor: str
    text: str


def heading_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading:
    ``slo_channel_call_success_<org>`` → ``slo_channel_call_success_org``."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


@functools.cache
def runbook_sections(path: Path = RUNBOOK) -> dict[str, RunbookSection]:
    """The runbook's sections by anchor (empty when the file is not there)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    out: dict[str, RunbookSection] = {}
    head: str | None = None
    body: list[str] = []
    fenced = False

    def close() -> None:
        if head is not None:
            out[heading_anchor(head)] = RunbookSection(
                head, heading_anchor(head), "\n".join(body).strip()
            )

    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"(#{1,3}) (.+)", line)
        if m:
            close()
            head, body = (m.group(2), []) if len(m.group(1)) == 3 else (None, [])
        elif head is not None:
            body.append(line)
    close()
    return out


def runbook_section(link: str, rule: str = "", *, path: Path = RUNBOOK) -> RunbookSection | None:
    """The section an alert's ``runbook`` annotation (``docs/runbook.md#anchor``) names, if
    the runbook has it; a section named after the alert's own rule (``…_absent``) first."""
    if not link.startswith("docs/runbook.md#"):
        return None
    sections = runbook_sections(path)
    return sections.get(rule) or sections.get(link.split("#", 1)[1])


def plan_url(name: str) -> str:
    """Where plan ``name`` is run: ``/sre_switches?plan=channel+SANDBOX_A+outage``."""
    return f"{PLANS_PAGE}?plan={quote_plus(name)}"


def section_plans(text: str, labels: Mapping[str, str] | None = None) -> list[str]:
    """The plans a runbook section's ``**Plan.**`` paragraph names (in backticks), with
    ``<ORG>``/``<resource>`` filled from an alert's labels; a name whose placeholder the
    labels cannot fill is left out unless no labels are given."""
    names: list[str] = []
    for para in _PLAN_LINE.findall(text):
        for name in re.findall(r"`([^`]+)`", para):
            for holder, label in PLACEHOLDERS.items():
                if holder in name and labels is not None:
                    name = name.replace(holder, labels.get(label, holder))
            if labels is not None and any(h in name for h in PLACEHOLDERS):
                continue
            if name not in names:
                names.append(name)
    return names


def plans_in_runbook(path: Path = RUNBOOK) -> dict[str, list[str]]:
    """``{plan name (with placeholders): [runbook anchors naming it]}``."""
    out: dict[str, list[str]] = {}
    for anchor, section in runbook_sections(path).items():
        for name in section_plans(section.text):
            out.setdefault(name, []).append(anchor)
    return out


def runbook_anchors_for(plan: str, path: Path = RUNBOOK) -> list[str]:
    """The runbook sections that name ``plan`` (``channel SANDBOX_A outage`` matches the
    runbook's ``channel <ORG> outage``)."""
    out = []
    for pattern, anchors in plans_in_runbook(path).items():
        rx = re.escape(pattern)
        for holder in PLACEHOLDERS:
            rx = rx.replace(re.escape(holder), r"[^ ]+")
        if re.fullmatch(rx, plan):
            out += [a for a in anchors if a not in out]
    return out
