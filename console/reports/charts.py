"""Pure plotly chart builders for the manager pages (no Streamlit; tested directly)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from .funds import FundReport, GroupRow
from .sla import SlaRow


def subject_chart(report: FundReport, currency: str = "CNY") -> go.Figure:
    """Income and outgo per accounting subject (grouped bars)."""
    rows = [r for r in report.subjects if r.currency == currency]
    names = [f"{r.subject_code} {r.subject_name}" for r in rows]
    fig = go.Figure([
        go.Bar(name="income", x=names, y=[r.income for r in rows]),
        go.Bar(name="outgo", x=names, y=[r.outgo for r in rows]),
    ])  # fmt: skip
    fig.update_layout(barmode="group", title=f"By subject ({currency}, minor units)",
                      yaxis_title="amount")  # fmt: skip
    return fig


def dimension_chart(groups: Sequence[GroupRow], currency: str = "CNY") -> go.Figure:
    """Net movement per dimension value, one bar series per subject."""
    rows = [g for g in groups if g.currency == currency]
    dim = rows[0].dimension if rows else ""
    subjects = sorted({(g.subject_code, g.subject_name) for g in rows})
    values = sorted({g.value for g in rows})
    fig = go.Figure()
    for code, name in subjects:
        net = {g.value: g.net for g in rows if g.subject_code == code}
        fig.add_bar(name=f"{code} {name}", x=values, y=[net.get(v, 0) for v in values])
    fig.update_layout(barmode="group", title=f"Net by {dim or 'dimension'} ({currency})",
                      xaxis_title=dim, yaxis_title="net")  # fmt: skip
    return fig


def sla_chart(rows: Sequence[SlaRow]) -> go.Figure:
    """Availability against target per link step / dependency (rows with traffic)."""
    live = [r for r in rows if r.availability is not None]
    names = [f"{r.kind}:{r.name}" for r in live]
    fig = go.Figure([
        go.Bar(name="availability", x=names, y=[r.availability for r in live]),
        go.Scatter(name="target", x=names, y=[r.slo for r in live], mode="markers"),
    ])  # fmt: skip
    fig.update_layout(title="Availability against target", yaxis_title="ratio")
    return fig
