"""Notebook 05's static figures and table styles: they draw what the study computed.

Each takes results (sweeps, race results, a gradient-descent scan) from ``workbench.optim``
and runs nothing; the traces are the explorer's (``widgets.explorers.optimizers``), so a
method has one colour in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from widgets.explorers.optimizers import loss_trace, sensitivity_traces, target_trace

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from pandas.io.formats.style import Styler

    from workbench.optim.race import LRSweep
    from workbench.optim.study import RaceResult
    from workbench.optim.theory import GDStepScan

RACE_TABLE_FORMATS = {
    "lr": "{:.3g}",
    "final loss": "{:.1e}",
    "steps to target": "{:.0f}",
    "seconds to target": "{:.3f}",
    "ms per step": "{:.2f}",
    "step overhead vs adam": "{:.1f}x",
    "state bytes": "{:,}",
    "state / params": "{:.2f}",
}


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
        figure.update_xaxes(type="log", title_text="learning rate", row=1, col=column)
        figure.update_yaxes(type="log", exponentformat="power", row=1, col=column)
    figure.update_yaxes(title_text="final loss / initial (x = diverged)", row=1, col=1)
    figure.update_layout(height=420, width=1000, margin={"t": 60})
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
        figure.update_yaxes(
            type="log", exponentformat="power", title_text="loss / initial", row=row, col=1
        )
        figure.update_yaxes(type="log", exponentformat="power", row=row, col=2)
        figure.update_xaxes(title_text="step", row=row, col=1)
        figure.update_xaxes(title_text="wall clock (s)", row=row, col=2)
    figure.update_layout(height=380 * len(races), width=1000, margin={"t": 60})
    return figure


def race_table_style(race: RaceResult) -> Styler:
    """A race's table for display: numbers formatted, "not reached" where a target was not."""
    return race.table.style.format(RACE_TABLE_FORMATS, na_rep="not reached")


def gd_rate_figure(scan: GDStepScan) -> go.Figure:
    """Gradient descent's contraction per step against its step size: theory and measurement."""
    import plotly.graph_objects as go

    theory = scan.theory
    figure = go.Figure()
    figure.add_scatter(x=scan.grid, y=theory, mode="lines", name="max |1 - lr lambda| (theory)")
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
        name="2 / (lambda_max + lambda_min)",
        line={"dash": "dot", "color": "black"},
    )
    figure.update_layout(
        xaxis={"title": {"text": "step size lr"}, "range": [0, scan.stable]},
        yaxis_title="contraction per step",
        height=360,
        width=700,
        legend={"x": 0.02, "y": 0.05},
    )
    return figure
