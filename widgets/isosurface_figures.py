"""Notebook 07's static figures: they draw what `workbench.surfaces.study` computed.

Each takes results (error tables, fits) and runs nothing; the traces are the explorer's
(`widgets.explorers.isosurfaces`), so an extraction has one colour in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from widgets import figures
from widgets.explorers.isosurfaces import COLORS, TARGET, sweep_axes, sweep_traces
from workbench.surfaces.fitting import EXTRACTORS
from workbench.surfaces.shapes import SHAPES

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from workbench.surfaces.study import FitRun


def gradient_figure(errors: pd.DataFrame, orders: Mapping[str, float]) -> go.Figure:
    """Largest relative error of each method's surface velocity against the exact shape
    derivative, vs grid resolution (log-log), with the fitted order in the legend."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for method, rows in errors.groupby("method", sort=False):
        figure.add_scatter(
            x=rows.resolution, y=rows.error, mode="lines+markers",
            name=f"{EXTRACTORS.label(method)} (order {orders[method]:.2f})",
            line={"color": COLORS[method]},
        )  # fmt: skip
    figure.update_layout(
        xaxis=figures.log_axis("grid points per axis", errors.resolution, base=2),
        yaxis=figures.log_axis("largest velocity error / largest velocity", errors.error),
        height=420, legend={"orientation": "h", "y": -0.2},
    )  # fmt: skip
    return figure


def sensitivity_figure(sweeps: Mapping[str, Sequence[FitRun]]) -> go.Figure:
    """Final Chamfer vs learning rate per extraction, one panel per (title -> fits)."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(sweeps), subplot_titles=list(sweeps))
    for column, runs in enumerate(sweeps.values(), start=1):
        for trace in sweep_traces(runs):
            trace["showlegend"] = column == 1 and trace.get("showlegend", True)
            figure.add_trace(trace, row=1, col=column)
        x, y = sweep_axes(runs)
        figure.update_xaxes(x, row=1, col=column)
        figure.update_yaxes(y if column == 1 else {**y, "title": {"text": ""}}, row=1, col=column)
    figure.update_layout(height=440, legend={"orientation": "h", "y": -0.22})
    return figure


def _outline(points: np.ndarray) -> dict:
    closed = np.concatenate([points, points[:1]])
    return {"type": "scatter", "x": closed[:, 0], "y": closed[:, 1], "mode": "lines",
            "name": "exact target", "line": {"color": TARGET, "width": 4}}  # fmt: skip


def surfaces_figure(panels: Mapping[str, Sequence[FitRun]], outlines: Mapping) -> go.Figure:
    """The final surfaces of fits (2-D) over the exact target, one panel per title; outlines
    maps each title to its target's exact points."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels))
    for column, (title, runs) in enumerate(panels.items(), start=1):
        figure.add_trace({**_outline(outlines[title]), "showlegend": column == 1}, 1, column)
        for run in runs:
            vertices, faces, _ = run.snapshots[max(run.snapshots)]
            trace = figures.polylines(vertices[faces].transpose(1, 0, 2),
                                      name=EXTRACTORS.label(run.setting.extractor),
                                      color=COLORS[run.setting.extractor], width=2)  # fmt: skip
            figure.add_trace({**trace, "showlegend": column == 1}, 1, column)
        figure.update_xaxes(range=[-0.8, 0.8], row=1, col=column)
        figure.update_yaxes(range=[-0.6, 0.6], scaleanchor=f"x{column if column > 1 else ''}",
                            row=1, col=column)  # fmt: skip
    figure.update_layout(height=420, legend={"orientation": "h", "y": -0.15})
    return figure


def volume_figure(runs: Sequence[FitRun]) -> go.Figure:
    """3-D fits' final surfaces as plotly Mesh3d, one scene per fit."""
    from plotly.subplots import make_subplots

    titles = [f"{SHAPES.label(r.setting.target)}<br>{EXTRACTORS.label(r.setting.extractor)}"
              for r in runs]  # fmt: skip
    columns = min(2, len(runs))  # two scenes a row: four in one row are too small to read
    rows = -(-len(runs) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=titles,
                           specs=[[{"type": "scene"}] * columns] * rows)  # fmt: skip
    for index, run in enumerate(runs):
        v, f, _ = run.snapshots[max(run.snapshots)]
        figure.add_trace({"type": "mesh3d", "x": v[:, 0], "y": v[:, 1], "z": v[:, 2],
                          "i": f[:, 0], "j": f[:, 1], "k": f[:, 2], "flatshading": True,
                          "color": COLORS[run.setting.extractor]},
                         index // columns + 1, index % columns + 1)  # fmt: skip
    figure.update_scenes(aspectmode="cube", xaxis_range=[-1, 1], yaxis_range=[-1, 1],
                         zaxis_range=[-1, 1])  # fmt: skip
    figure.update_layout(height=400 * rows, showlegend=False)
    return figure
