"""The timeout lint over what really runs (:func:`stability.depmap.lint_effective`), as
the console shows it: each violation with its kind, what it is about, the limit and
what can be spent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stability.depmap import DependencyMap, TimeoutFinding, lint_effective
from stability.effective import effective_timeouts

__all__ = ["KINDS", "finding_rows", "lint_findings", "render_timeout_lint"]

#: how each kind of finding is named on the page
KINDS = {
    "declared": "map timeouts",
    "client": "client timeout",
    "budget": "link budget",
}


def lint_findings(settings: Any, dmap: DependencyMap) -> list[TimeoutFinding]:
    """The lint of a platform built from ``settings`` (its ``runtime.settings.Settings``)
    running ``dmap``: :func:`lint_effective` over :func:`effective_timeouts`."""
    return lint_effective(dmap, effective_timeouts(settings, dmap))


def finding_rows(findings: Sequence[TimeoutFinding]) -> list[dict[str, Any]]:
    """Table rows, link budgets first, then client numbers, then the map's own."""
    order = {"budget": 0, "client": 1, "declared": 2}
    return [
        {
            "kind": KINDS.get(f.kind, f.kind),
            "subject": f.subject,
            "limit_ms": f.limit_ms,
            "spend_ms": f.spend_ms,
            "message": f.message,
        }
        for f in sorted(findings, key=lambda f: (order.get(f.kind, 3), f.subject))
    ]


def render_timeout_lint(st: Any, findings: Sequence[TimeoutFinding]) -> None:
    """Show ``findings`` on a Streamlit page (``st``: the ``streamlit`` module)."""
    if not findings:
        st.success(
            "Every timeout a client uses fits its edge, and every link's calls, one after "
            "another with retries, fit the link's budget."
        )
        return
    budgets = sum(1 for f in findings if f.kind == "budget")
    st.warning(
        f"{len(findings)} timeout finding(s)"
        + (f", {budgets} over a link's budget" if budgets else "")
    )
    st.dataframe(finding_rows(findings), hide_index=True, key="timeout_lint")
