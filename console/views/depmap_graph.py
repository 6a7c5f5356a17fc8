"""The dependency map drawn in layers: callers (links, jobs) left, dependencies right.

Positions are in pixels (the figure has a fixed size and its axes run 0..width, 0..height),
so the label boxes :func:`layout` returns are where the labels land: a test checks that
no two overlap. Labels are monospaced, so their width follows from their length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from stability.depmap import DependencyMap

from .health import HEALTH_COLOURS

FONT_PX = 11
CHAR_PX = 7.0  #: a monospaced character at 11 px is ~6.6 px wide; rounded up
LINE_PX = 15.0
MARKER_PX = 16.0
LABEL_GAP = 6.0  #: between a marker's edge and its label
ROW_PX = 3 * LINE_PX + 8  #: two label lines and air between rows
EDGE_SPAN_PX = 140.0  #: the least horizontal room an edge gets between columns
PAD = 12.0
DEGRADED_OUTLINE = "#9467bd"  #: a node degraded by a switch is outlined in purple
FONT = "Menlo, Consolas, 'DejaVu Sans Mono', monospace"


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in pixels."""

    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        """True when the two rectangles share some area."""
        return (
            self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1
        )


@dataclass(frozen=True)
class Layout:
    """Where each node, its marker and its label are; the figure's size."""

    pos: dict[str, tuple[float, float]]
    labels: dict[str, Box]
    markers: dict[str, Box]
    left: frozenset[str]  #: nodes labelled on their left (the first column)
    width: float
    height: float


def layers(dmap: DependencyMap) -> dict[str, int]:
    """Each resource's column: the longest caller chain above it (entry points at 0)."""
    depth: dict[str, int] = {}

    def visit(name: str, d: int) -> None:
        if depth.get(name, -1) >= d:
            return
        depth[name] = d
        for callee in dmap.callees(name):
            visit(callee, d + 1)

    for root in dmap.roots():
        visit(root, 0)
    return depth


def _columns(dmap: DependencyMap) -> list[list[str]]:
    """Names per column; the first column core links first, then the rest by name; later
    columns by the mean row of their callers (fewer crossing edges), then by name."""
    depth = layers(dmap)
    cols: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in sorted(depth):
        cols[depth[name]].append(name)
    if not cols:
        return cols
    cols[0].sort(key=lambda n: (not dmap.resource(n).core_link, n))
    row = {n: i for i, n in enumerate(cols[0])}
    for col in cols[1:]:

        def centre(n: str) -> float:
            above = [row[c] for c in dmap.callers(n) if c in row]
            return sum(above) / len(above) if above else 0.0

        col.sort(key=lambda n: (centre(n), n))
        row.update({n: i for i, n in enumerate(col)})
    return cols


def _text_width(text: str) -> float:
    return max((len(line) for line in text.split("<br>")), default=0) * CHAR_PX


def _lines(text: str) -> int:
    return text.count("<br>") + 1


def layout(dmap: DependencyMap, labels: Mapping[str, str]) -> Layout:
    """Pixel positions and label boxes for ``labels`` (name -> text, ``<br>`` between lines)."""
    cols = _columns(dmap)
    widths = [max((_text_width(labels.get(n, n)) for n in col), default=0.0) for col in cols]
    rows = max((len(c) for c in cols), default=1)
    height = 2 * PAD + ROW_PX * rows
    half = MARKER_PX / 2
    x = PAD + (widths[0] if widths else 0.0) + LABEL_GAP + half
    pos: dict[str, tuple[float, float]] = {}
    for i, col in enumerate(cols):
        top = height / 2 + ROW_PX * (len(col) - 1) / 2
        for j, name in enumerate(col):
            pos[name] = (x, top - j * ROW_PX)
        room = 0.0 if i == 0 else widths[i] + LABEL_GAP
        x += half + max(EDGE_SPAN_PX, room + EDGE_SPAN_PX / 2) + half
    last = len(cols) - 1
    width = max(p[0] for p in pos.values()) + half + LABEL_GAP + widths[last] + PAD if pos else PAD
    left = frozenset(cols[0]) if cols else frozenset()
    boxes, markers = {}, {}
    for name, (nx, ny) in pos.items():
        text = labels.get(name, name)
        w, h = _text_width(text), _lines(text) * LINE_PX
        x0 = nx - half - LABEL_GAP - w if name in left else nx + half + LABEL_GAP
        boxes[name] = Box(x0, ny - h / 2, x0 + w, ny + h / 2)
        markers[name] = Box(nx - half, ny - half, nx + half, ny + half)
    return Layout(pos, boxes, markers, left, width, height)


def graph(
    dmap: DependencyMap,
    nodes: Mapping[str, Mapping[str, Any]],
    edges: Mapping[tuple[str, str], Mapping[str, Any]],
    *,
    hit: Mapping[str, str] | None = None,
) -> go.Figure:
    """The map: ``nodes[name]`` has ``status``, ``label``, ``hover``, ``degraded``;
    ``edges[(caller, callee)]`` has ``status`` and ``hover``. Strong edges solid, weak
    dashed. ``hit``: name -> ``fails``/``partial``/``degrades`` (outlined, from the impact
    query)."""
    names = [r.name for r in dmap.resources]
    lay = layout(dmap, {n: nodes[n]["label"] for n in names})
    fig = go.Figure()
    for e in dmap.edges:
        (x0, y0), (x1, y1) = lay.pos[e.caller], lay.pos[e.callee]
        info = edges.get((e.caller, e.callee), {})
        strong = e.grade == "strong"
        fig.add_trace(
            go.Scatter(
                x=[x0, (x0 + x1) / 2, x1],
                y=[y0, (y0 + y1) / 2, y1],
                mode="lines",
                hoverinfo="text",
                hovertext=info.get("hover", f"{e.caller} → {e.callee}"),
                showlegend=False,
                line={
                    "color": HEALTH_COLOURS[info.get("status", "unknown")],
                    "width": 2.5 if strong else 1.5,
                    "dash": "solid" if strong else "dash",
                },
                name=f"{e.caller}->{e.callee}",
            )
        )
    hits = hit or {}
    outline = {"fails": "#000", "partial": "#000", "degrades": "#ff7f0e"}
    for side, where in (("left", "middle left"), ("right", "middle right")):
        shown = [n for n in names if (n in lay.left) == (side == "left")]
        fig.add_trace(
            go.Scatter(
                x=[lay.pos[n][0] for n in shown],
                y=[lay.pos[n][1] for n in shown],
                mode="markers+text",
                text=[nodes[n]["label"] for n in shown],
                textposition=where,
                textfont={"family": FONT, "size": FONT_PX},
                hovertext=[nodes[n]["hover"] for n in shown],
                hoverinfo="text",
                marker={
                    "size": MARKER_PX,
                    "color": [HEALTH_COLOURS[nodes[n]["status"]] for n in shown],
                    "line": {
                        "color": [
                            outline.get(hits.get(n, ""))
                            or (DEGRADED_OUTLINE if nodes[n].get("degraded") else "#fff")
                            for n in shown
                        ],
                        "width": 3,
                    },
                    "symbol": [
                        "diamond" if dmap.resource(n).core_link else "circle" for n in shown
                    ],
                },
                name=f"resources-{side}",
                showlegend=False,
                customdata=shown,
            )
        )
    fig.update_layout(
        width=int(lay.width),
        height=int(lay.height),
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        xaxis={"visible": False, "range": [0, lay.width], "fixedrange": True},
        yaxis={"visible": False, "range": [0, lay.height], "fixedrange": True},
        plot_bgcolor="white",
    )
    return fig
