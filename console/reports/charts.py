"""Pure plotly chart builders for the manager pages (no Streamlit; tested directly).

Each builder returns None when there is nothing to draw: the page then says "No data for
this period" instead of drawing empty axes. Amounts are plotted in the currency's major
unit with the exact text (``213,575.66 CNY``) on hover; labels that come from users
(names, dimension values) are HTML-escaped, since plotly reads a few HTML tags in text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

from .funds import FundReport, GroupRow, format_money, major_units
from .sla import SlaRow, percent, target_text

MET, MISSED, TARGET = "#2e7d32", "#c62828", "#263238"
NO_DATA = "No data for this period"


def label(text: object) -> str:
    """User text as plotly shows it verbatim (no tags, no links)."""
    return html.escape(str(text), quote=False)


def _money_bar(name: str, x: list[str], minor: list[int], currency: str) -> go.Bar:
    return go.Bar(
        name=name,
        x=x,
        y=[major_units(v, currency) for v in minor],
        customdata=[format_money(v, currency) for v in minor],
        hovertemplate="%{x}<br>" + name + ": %{customdata}<extra></extra>",
    )


def subject_chart(report: FundReport, currency: str = "CNY") -> go.Figure | None:
    """Income and outgo per accounting subject (grouped bars); None without movement."""
    rows = [r for r in report.subjects if r.currency == currency and (r.income or r.outgo)]
    if not rows:
        return None
    names = [label(f"{r.subject_code} {r.subject_name}") for r in rows]
    fig = go.Figure(
        [
            _money_bar("income", names, [r.income for r in rows], currency),
            _money_bar("outgo", names, [r.outgo for r in rows], currency),
        ]
    )
    fig.update_layout(
        barmode="group",
        title=f"By subject ({currency})",
        yaxis_title=f"amount ({currency})",
        yaxis_tickformat=",",
    )
    return fig


def dimension_chart(groups: Sequence[GroupRow], currency: str = "CNY") -> go.Figure | None:
    """Net movement per dimension value, one bar series per subject; None without
    movement."""
    rows = [g for g in groups if g.currency == currency and (g.income or g.outgo)]
    if not rows:
        return None
    dim = rows[0].dimension
    subjects = sorted({(g.subject_code, g.subject_name) for g in rows})
    values = sorted({g.value for g in rows})
    fig = go.Figure()
    for code, name in subjects:
        net = {g.value: g.net for g in rows if g.subject_code == code}
        fig.add_trace(
            _money_bar(
                label(f"{code} {name}"),
                [label(v) for v in values],
                [net.get(v, 0) for v in values],
                currency,
            )
        )
    fig.update_layout(
        barmode="group",
        title=f"Net by {dim} ({currency})",
        xaxis_title=dim,
        yaxis_title=f"net ({currency})",
        yaxis_tickformat=",",
    )
    return fig


def sla_chart(rows: Sequence[SlaRow]) -> go.Figure | None:
    """Availability against target per link step / dependency (rows with traffic):
    green bars met the target, red bars missed it; None when no row had traffic."""
    live = [r for r in rows if r.availability is not None]
    if not live:
        return None
    fig = go.Figure()
    for status, colour in (("met", MET), ("missed", MISSED)):
        part = [r for r in live if bool(r.met) == (status == "met")]
        if not part:
            continue
        fig.add_bar(
            name=status,
            x=[label(f"{r.kind}:{r.name}") for r in part],
            y=[(r.availability or 0.0) * 100 for r in part],
            marker_color=colour,
            text=[percent(r.availability) for r in part],
            textposition="outside",
            customdata=[target_text(r.slo) for r in part],
            hovertemplate="%{x}<br>availability %{text}<br>target %{customdata}"
            "<extra>" + status + "</extra>",
        )
    fig.add_scatter(
        name="target",
        x=[label(f"{r.kind}:{r.name}") for r in live],
        y=[r.slo * 100 for r in live],
        mode="markers",
        marker={"symbol": "line-ew-open", "size": 28, "color": TARGET, "line": {"width": 3}},
    )
    low = min(min(r.availability or 0.0 for r in live), min(r.slo for r in live)) * 100
    floor = max(0.0, low - max((100.0 - low) * 0.5, 0.05))
    order = [label(f"{r.kind}:{r.name}") for r in live]
    fig.update_layout(
        title="Availability against target",
        yaxis_title="availability (%)",
        yaxis_range=[floor, 100.0 + (100.0 - floor) * 0.08],
        xaxis={"categoryorder": "array", "categoryarray": order},
    )
    return fig
