"""Notebooks 03 and 04's figures, and the sweep traces their explorer shares: they take the
summaries of workbench.scaling.summaries (computed there) and only draw them.

Learning rates and widths are drawn on base-2 log axes (ticks 2<sup>k</sup>): the sweeps step
by octaves, so one tick per power (or per second power) is a grid point of the sweep.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from workbench.scaling.summaries import CoordChecks, Transfer, TransferSweep

LR_TITLE = "learning rate"


def finite_or_none(values) -> list:
    """Plotly draws None as a gap: diverged points break the curve instead of spiking it."""
    return [float(v) if np.isfinite(v) else None for v in values]


def lr_axis(summaries) -> dict:
    """The learning-rate axis of sweep panels: base 2, ticks fitted to the grids swept."""
    return figures.log_axis(LR_TITLE, np.concatenate([s.lrs for s in summaries]), base=2)


def sweep_traces(summary: TransferSweep, selected: int | None = None, width: float = 1.5):
    """Final loss vs learning rate, one curve per width / depth (the selected one thicker) in
    its color of `figures.color_map`, and the fitted optima starred."""
    colors = figures.color_map(summary.values)
    traces = []
    for value in summary.values:
        lrs, losses = summary.loss_curve(value)
        traces.append(
            {
                "type": "scatter",
                "x": lrs,
                "y": finite_or_none(losses),
                "mode": "lines+markers",
                "name": f"{summary.axis} {value}",
                "line": {"color": colors[value], "width": 3.5 if value == selected else width},
                "marker": {"size": 5},
                "connectgaps": False,
            }
        )
    optima = summary.optima
    traces.append(
        {
            "type": "scatter",
            "x": finite_or_none(optima.lr.to_numpy()),
            "y": finite_or_none(optima.loss.to_numpy()),
            "mode": "markers",
            "name": "fitted optimum",
            "marker": {"symbol": "star", "size": 13, "color": "black"},
            "text": [
                f"{summary.axis} {v}: edge {e}" if e else f"{summary.axis} {v}"
                for v, e in zip(optima.index, optima.edge, strict=True)
            ],
        }
    )
    return traces


def sweep_figure(transfer: Transfer, height: int = 360, cols: int = 3):
    """Panels (up to `cols` a row), one per sweep: final loss vs learning rate, one curve per
    width / depth, fitted optima starred (the explorer's sweep panel, without a selected run).
    No fixed width: the figure takes its container's."""
    from plotly.subplots import make_subplots

    cols = min(cols, len(transfer.summaries))
    rows = -(-len(transfer.summaries) // cols)
    figure = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(transfer.labels.values()),
        shared_yaxes=True,
        horizontal_spacing=0.04,
        vertical_spacing=0.22 / rows,
    )
    for i, summary in enumerate(transfer.summaries.values()):
        row, col = i // cols + 1, i % cols + 1
        for trace in sweep_traces(summary, width=1.8):
            trace["showlegend"] = i == 0
            trace["legendgroup"] = trace["name"]
            figure.add_trace(trace, row=row, col=col)
        figure.update_xaxes(**lr_axis([summary]), row=row, col=col)
        figure.update_yaxes(title_text="held-out loss" if col == 1 else None, row=row, col=col)
    finals = [df.final_loss.to_numpy() for df in transfer.sweeps.values()]
    finite = np.concatenate([f[np.isfinite(f)] for f in finals])
    low = float(finite.min()) if len(finite) else 0.0
    figure.update_yaxes(range=[0.97 * low, 1.5 * low])
    figure.update_layout(
        height=height * rows,
        legend={"orientation": "h", "y": -0.3 / rows, "yanchor": "top"},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure


def coord_check_figure(checks: CoordChecks, height: int = 380):
    """Side-by-side panels, one per coordinate check: activation RMS against width (or depth),
    log-log, one color per layer (the same in every panel); solid after the first update,
    dotted at initialization."""
    from plotly.subplots import make_subplots

    titled = checks.titled()
    tables = [check.table for check in titled.values()]
    colors = figures.color_map(layer for table in tables for layer in table.layer)
    rms = np.concatenate([table.rms.to_numpy() for table in tables])
    # one y range for all panels: a flat check should look flat next to a growing one
    figure = make_subplots(
        rows=1,
        cols=len(titled),
        subplot_titles=list(titled),
        shared_yaxes=True,
        horizontal_spacing=0.04,
    )
    for col, check in enumerate(titled.values(), start=1):
        table = check.table
        for layer in dict.fromkeys(table.layer):
            for step, dash in ((0, "dot"), (1, "solid")):
                rows = table[(table.layer == layer) & (table.step == step)].sort_values("axis")
                figure.add_trace(
                    {
                        "type": "scatter",
                        "x": rows.axis.to_numpy(),
                        "y": rows.rms.to_numpy(),
                        "mode": "lines+markers",
                        "name": f"{layer}" + (" (init)" if step == 0 else " (step 1)"),
                        "legendgroup": layer,
                        "showlegend": col == 1,
                        "line": {"color": colors[layer], "dash": dash},
                    },
                    row=1,
                    col=col,
                )
        axis_values = table.axis.to_numpy()
        figure.update_xaxes(**figures.log_axis(check.axis, axis_values, base=2), row=1, col=col)
        y_title = "activation RMS" if col == 1 else ""
        figure.update_yaxes(**figures.log_axis(y_title, rms), row=1, col=col)
    figure.update_layout(
        height=height,
        legend={"orientation": "h", "y": -0.3, "yanchor": "top"},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure
