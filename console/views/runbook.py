"""docs/runbook.md by section: what an alert's ``runbook`` annotation points at."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


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
