"""The overview's charts: a step's sparkline and one link's rate, failures and p99."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go

from console.views.health import BAD, HEALTH_COLOURS


def sparkline(
    points: list[tuple[float, Any]], *, colour: str = "#1f77b4", height: int = 60
) -> go.Figure:
    """A tiny axis-less line chart."""
    fig = go.Figure(
        go.Scatter(
            x=[t for t, _ in points],
            y=[v for _, v in points],
            mode="lines+markers",  # a lone point still shows
            line={"color": colour, "width": 1.5},
            marker={"color": colour, "size": 3},
            hoverinfo="y",
        )
    )
    fig.update_layout(
        height=height,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        xaxis={"visible": False},
        yaxis={"visible": False},
        showlegend=False,
    )
    return fig


#: the shade of a chart annotation (a switch plan in force)
ANNOTATION_COLOUR = "rgba(255, 127, 14, 0.12)"


def annotate(
    fig: go.Figure, notes: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> go.Figure:
    """Shade each annotation's span (``at`` until ``ends_at``, or ``now`` while open or
    not yet over) with its text on top: what was done to the platform, on its charts."""
    now = now or datetime.now(UTC)
    for note in notes:
        end = note.get("ends_at") or now
        fig.add_vrect(
            x0=note["at"],
            x1=min(end, now),
            fillcolor=ANNOTATION_COLOUR,
            line_width=0,
            annotation_text=str(note["text"]),
            annotation_position="top left",
        )
    return fig


def link_chart(
    series: dict[str, list[tuple[float, Any]]],
    title: str = "",
    notes: Iterable[Mapping[str, Any]] = (),
) -> go.Figure:
    """Rate and failures (left axis) with p99 (right axis) of one link; lines with markers,
    so a series of one point (or points between gaps) still shows. ``notes``: chart
    annotations (:func:`stability.plan_steps.annotations_between`) shaded over it."""

    def trace(key: str, name: str, **style: Any) -> go.Scatter:
        pts = series.get(key, [])
        return go.Scatter(
            x=[datetime.fromtimestamp(t, UTC) for t, _ in pts],
            y=[v for _, v in pts],
            name=name,
            mode="lines+markers",
            marker={"size": 6},
            **style,
        )

    fig = go.Figure(
        [
            trace("rate", "req/s"),
            trace("failed", "failed/s", line={"color": HEALTH_COLOURS[BAD]}),
            trace("p99", "p99 s", yaxis="y2", line={"dash": "dot", "color": "#9467bd"}),
        ]
    )
    fig.update_layout(
        title=title,
        height=360,
        margin={"l": 40, "r": 40, "t": 60, "b": 30},
        legend={
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1.02,
            "yanchor": "bottom",
        },  # above the plot, clear of the right axis
        yaxis={"title": "per second", "rangemode": "tozero"},
        yaxis2={"title": "p99 s", "overlaying": "y", "side": "right", "rangemode": "tozero"},
    )
    return annotate(fig, notes)
