"""Notebook 05's static figures and table styles: they draw what the study computed.

Each takes results (sweeps, race results, a gradient-descent scan) from ``workbench.optim``
and runs nothing; the traces are the explorer's (``widgets.explorers.optimizers``), so a
method has one colour in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from widgets.explorers.optimizers import (
    loss_axis,
    loss_trace,
    sensitivity_axes,
    sensitivity_traces,
    target_trace,
)
from workbench.claims import readable
from workbench.optim.registry import OPTIMIZERS

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from pandas.io.formats.style import Styler

    from workbench.optim.race import LRSweep
    from workbench.optim.study import RaceResult
    from workbench.optim.theory import GDStepScan

RACE_TABLE_FORMATS = {
    "lr": readable,
    "final loss": readable,
    "steps to target": "{:.0f}",
    "seconds to target": readable,
    "ms per step": readable,
    "step cost vs Adam": "{:.1f}x",
    "state bytes": "{:,}",
    "state / params": readable,
}
# race_table's columns as a reader sees them (the optimizer named by its label)
RACE_COLUMN_LABELS = {"step overhead vs adam": "step cost vs Adam"}


def sensitivity_figure(
    sweeps: Mapping[str, LRSweep], titles: Mapping[str, str] | None = None
) -> go.Figure:
    """Final loss vs learning rate per optimizer, one panel per sweep (key -> sweep; the
    panel's title is ``titles[key]``, else the key)."""
    from plotly.subplots import make_subplots

    titles = [(titles or {}).get(key, key) for key in sweeps]
    figure = make_subplots(rows=1, cols=len(sweeps), subplot_titles=titles)
    for column, sweep in enumerate(sweeps.values(), start=1):
        for name in sweep.optimizers:
            for trace in sensitivity_traces(
                name, sweep.runs(name), sweep.tuned(name), showlegend=column == 1
            ):
                figure.add_trace(trace, row=1, col=column)
        xaxis, yaxis = sensitivity_axes(
            [run for name in sweep.optimizers for run in sweep.runs(name)]
        )
        if column > 1:
            yaxis["title"] = {"text": ""}  # the first panel's title names the shared quantity
        figure.update_xaxes(xaxis, row=1, col=column)
        figure.update_yaxes(yaxis, row=1, col=column)
    figure.update_layout(height=440, margin={"t": 60}, legend={"orientation": "h", "y": -0.22})
    return figure


def race_figure(races: Mapping[str, RaceResult]) -> go.Figure:
    """Loss vs steps and vs measured wall clock, one row per race (problem id -> result)."""
    from plotly.subplots import make_subplots

    titles = [
        f"{race.label}: {axis}" for race in races.values() for axis in ("steps", "wall clock")
    ]
    figure = make_subplots(rows=len(races), cols=2, subplot_titles=titles, vertical_spacing=0.14)
    for row, race in enumerate(races.values(), start=1):
        traces = race.traces
        for name, trace in traces.items():
            steps = np.arange(len(trace.losses))
            for column, x in ((1, steps), (2, trace.seconds)):
                figure.add_trace(
                    loss_trace(name, x, trace.losses, showlegend=row == 1 and column == 1),
                    row=row,
                    col=column,
                )
        for column, end in (
            (1, max(len(t.losses) - 1 for t in traces.values())),
            (2, max(float(t.seconds[-1]) for t in traces.values())),
        ):
            figure.add_trace(target_trace(race.target, end, showlegend=False), row=row, col=column)
        yaxis = loss_axis([t.losses for t in traces.values()] + [np.array([race.target])])
        figure.update_yaxes(yaxis, row=row, col=1)
        figure.update_yaxes(yaxis | {"title": {"text": ""}}, row=row, col=2)
        figure.update_xaxes(title_text="step", row=row, col=1)
        figure.update_xaxes(title_text="wall clock (s)", row=row, col=2)
    figure.update_layout(
        height=380 * len(races),
        margin={"t": 60},
        legend={"orientation": "h", "y": -0.2 / len(races)},  # below, the panels keep the width
    )
    return figure


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """A table indexed by optimizer id, indexed by the optimizers' labels instead."""
    return table.rename(index=OPTIMIZERS.label)


def race_table_style(race: RaceResult) -> Styler:
    """A race's table for display: optimizers by label, numbers formatted, "not reached"
    where a target was not."""
    table = labelled(race.table).rename(columns=RACE_COLUMN_LABELS)
    return table.style.format(RACE_TABLE_FORMATS, na_rep="not reached")


def rotation_table_style(rotation: pd.DataFrame) -> Styler:
    """The rotation table (final loss per optimizer, kappa and basis) for display."""
    return labelled(rotation).style.format(readable)


def optimizer_table_style(table: pd.DataFrame | pd.Series) -> Styler:
    """Any table or series indexed by optimizer id, by label, numbers readable."""
    frame = table.to_frame() if isinstance(table, pd.Series) else table
    return labelled(frame).style.format(readable)


def gd_rate_figure(scan: GDStepScan) -> go.Figure:
    """Gradient descent's contraction per step against its step size: theory and measurement."""
    import plotly.graph_objects as go

    theory = scan.theory
    figure = go.Figure()
    figure.add_scatter(x=scan.grid, y=theory, mode="lines", name="max |1 - lr λ| (theory)")
    figure.add_scatter(
        x=scan.lrs,
        y=scan.measured,
        mode="markers",
        name="measured |W - W*| ratio",
        marker={"size": 9},
    )
    figure.add_scatter(
        x=[scan.best, scan.best],
        y=[theory.min(), 1.0],
        mode="lines",
        name="2 / (λmax + λmin)",
        line={"dash": "dot", "color": "black"},
    )
    figure.update_layout(
        xaxis={"title": {"text": "step size lr"}, "range": [0, scan.stable]},
        yaxis_title="contraction per step",
        height=360,
        legend={"x": 0.02, "y": 0.05},
    )
    return figure
