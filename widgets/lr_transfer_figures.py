"""Notebooks 03 and 04's figures, and the sweep traces their explorer shares: they take the
summaries of workbench.scaling.summaries (computed there) and only draw them."""

from __future__ import annotations

import numpy as np

from workbench.scaling.summaries import CoordChecks, Transfer, TransferSweep

# light to dark: wider / deeper models are darker
PALETTE = ["#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b", "#041c40"]
LAYER_COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2", "#9d755d"]


def finite_or_none(values) -> list:
    """Plotly draws None as a gap: diverged points break the curve instead of spiking it."""
    return [float(v) if np.isfinite(v) else None for v in values]


def sweep_traces(summary: TransferSweep, selected: int | None = None, width: float = 1.5):
    """Final loss vs log2 lr, one curve per width / depth (the selected one thicker), and the
    fitted optima starred."""
    traces = []
    for i, value in enumerate(summary.values):
        log2_lrs, losses = summary.loss_curve(value)
        traces.append(
            {
                "type": "scatter",
                "x": log2_lrs,
                "y": finite_or_none(losses),
                "mode": "lines+markers",
                "name": f"{summary.axis} {value}",
                "line": {
                    "color": PALETTE[i % len(PALETTE)],
                    "width": 3.5 if value == selected else width,
                },
                "marker": {"size": 5},
                "connectgaps": False,
            }
        )
    optima = summary.optima
    traces.append(
        {
            "type": "scatter",
            "x": optima.log2_lr.to_numpy(),
            "y": optima.loss.to_numpy(),
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


def sweep_figure(transfer: Transfer, height: int = 380, cols: int = 3):
    """Panels (up to `cols` a row), one per sweep: final loss vs log2 lr, one curve per width /
    depth, fitted optima starred (the explorer's sweep panel, without a selected run)."""
    from plotly.subplots import make_subplots

    cols = min(cols, len(transfer.summaries))
    rows = -(-len(transfer.summaries) // cols)
    figure = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(transfer.labels.values()),
        shared_yaxes=True,
        horizontal_spacing=0.04,
        vertical_spacing=0.16,
    )
    for i, summary in enumerate(transfer.summaries.values()):
        row, col = i // cols + 1, i % cols + 1
        for trace in sweep_traces(summary, width=1.8):
            trace["showlegend"] = i == 0
            trace["legendgroup"] = trace["name"]
            figure.add_trace(trace, row=row, col=col)
        figure.update_xaxes(title_text="learning rate (log2)", dtick=2, row=row, col=col)
        figure.update_yaxes(title_text="held-out loss" if col == 1 else None, row=row, col=col)
    finals = [df.final_loss.to_numpy() for df in transfer.sweeps.values()]
    finite = np.concatenate([f[np.isfinite(f)] for f in finals])
    low = float(finite.min()) if len(finite) else 0.0
    figure.update_yaxes(range=[0.97 * low, 1.5 * low])
    figure.update_layout(
        height=height * rows,
        width=330 * cols + 80,
        legend={"orientation": "h", "y": -0.25 / rows},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure


def coord_check_figure(checks: CoordChecks, height: int = 360):
    """Side-by-side panels, one per coordinate check: activation RMS against width (or depth),
    log-log, one colour per layer; solid after the first update, dotted at initialization."""
    from plotly.subplots import make_subplots

    titled = checks.titled()
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
        for i, layer in enumerate(dict.fromkeys(table.layer)):
            color = LAYER_COLORS[i % len(LAYER_COLORS)]
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
                        "line": {"color": color, "dash": dash},
                    },
                    row=1,
                    col=col,
                )
        figure.update_xaxes(
            type="log", title_text=check.axis, dtick=np.log10(2), tickformat="d", row=1, col=col
        )
        figure.update_yaxes(type="log", tickformat=".2g", row=1, col=col)
    figure.update_yaxes(title_text="activation RMS", row=1, col=1)
    figure.update_layout(
        height=height,
        width=330 * len(titled) + 80,
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure
