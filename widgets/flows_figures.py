"""Notebook 06's static figures: they draw what `workbench.flows.study` computed, run nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from widgets import figures
from workbench.diffusion.study_findings import count_text

if TYPE_CHECKING:
    from workbench.flows.study import FlowRun

HEIGHT = 360
GREYS = "Greys"


def _density_trace(density) -> dict:
    xs, ys, log_p = density
    return figures.heatmap(xs, ys, np.maximum(log_p, log_p.max() - 12), name="log p_0",
                           colorscale=GREYS)  # fmt: skip


def _square(figure: go.Figure, density, columns: int) -> None:
    """Equal x/y scale over the density's window in every column."""
    xs, ys, _ = density
    for column in range(1, columns + 1):
        suffix = "" if column == 1 else str(column)
        figure.layout[f"xaxis{suffix}"].update(range=[xs[0], xs[-1]], constrain="domain")
        figure.layout[f"yaxis{suffix}"].update(
            range=[ys[0], ys[-1]], scaleanchor=f"x{suffix}", constrain="domain"
        )


def velocity_field_figure(fields: Sequence[tuple[float, np.ndarray, np.ndarray]], density):
    """The exact velocity at a few times (one column each): arrows over log p_0, scaled per
    column so the longest spans most of a grid cell (the factor is in each title: the field is
    much larger near t = 0, between the modes, than at t = 1)."""
    from plotly.subplots import make_subplots

    spacing = float(fields[0][1][1, 0] - fields[0][1][0, 0]) or 1.0
    scaled = [(t, points, *figures.fit_arrows(v, spacing)) for t, points, v in fields]
    titles = [f"t = {t:g} (arrows x{factor:.2g})" for t, _, _, factor in scaled]
    figure = make_subplots(rows=1, cols=len(fields), subplot_titles=titles)
    for column, (_, points, arrows, _) in enumerate(scaled, start=1):
        figure.add_trace(go.Heatmap(_density_trace(density)), row=1, col=column)
        figure.add_trace(
            go.Scatter(figures.arrows(points, arrows, name="u_t(x)", color="#1f77b4")),
            row=1, col=column,
        )  # fmt: skip
    _square(figure, density, len(fields))
    title = {"text": "the exact velocity u_t(x) of the rectified path"}
    figure.update_layout(height=HEIGHT, showlegend=False, title=title)
    return figure


def samples_figure(run: FlowRun, steps: Sequence[int], density):
    """The setting's samples after each of `steps` steps (Euler's; MeanFlow's jumps), one
    column each, over log p_0."""
    from plotly.subplots import make_subplots

    titles = [count_text(k, "step") for k in steps]
    figure = make_subplots(rows=1, cols=len(steps), subplot_titles=titles)
    for column, k in enumerate(steps, start=1):
        figure.add_trace(go.Heatmap(_density_trace(density)), row=1, col=column)
        points = figures.points(run.samples[k], name=f"{k} steps", color="#d62728", size=2.5)
        figure.add_trace(go.Scattergl(points), row=1, col=column)
    _square(figure, density, len(steps))
    figure.update_layout(height=HEIGHT, showlegend=False, title={"text": run.setting.label})
    return figure


def trajectories_figure(runs: Sequence[FlowRun], steps: int):
    """Each setting's ODE trajectories (grey) and its `steps`-step paths from the same noise
    (one column per setting): curved flows bend, straight ones are one segment."""
    from plotly.subplots import make_subplots

    titles = [run.setting.label for run in runs]
    figure = make_subplots(rows=1, cols=len(runs), subplot_titles=titles)
    for column, run in enumerate(runs, start=1):
        ode = figures.polylines(run.ode_path, name="ODE trajectory", color="#999999")
        jumps = figures.polylines(run.paths[steps], name=count_text(steps, "step"),
                                  color="#d62728", markers=True)  # fmt: skip
        for trace in (ode, jumps):
            trace["showlegend"] = column == 1
            figure.add_trace(go.Scatter(trace), row=1, col=column)
    bounds = (np.array([-3.5, 3.5]), np.array([-3.5, 3.5]), None)
    _square(figure, bounds, len(runs))
    figure.update_layout(height=HEIGHT + 40, legend={"orientation": "h", "y": -0.12},
                         title={"text": "trajectories from the same noise"})  # fmt: skip
    return figure


def reflow_figure(trained: pd.DataFrame, densities: Sequence[str], labels: dict[str, str]):
    """Straightness and transport cost of each round's coupling, one line per timestep
    density (`trained` from `trained_metrics`; `labels` maps a density id to its label)."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=["straightness S", "E|x_1 - x_0|^2"])
    colors = figures.color_map(densities)
    for density in densities:
        rows = trained[trained.index.str.startswith(f"{density}.r")]
        rounds = [int(i.rsplit(".r", 1)[1]) for i in rows.index]
        for column, metric in enumerate(("straightness", "transport_cost"), start=1):
            figure.add_scatter(
                x=rounds, y=rows[metric].to_numpy(), name=labels[density], row=1, col=column,
                mode="lines+markers", line={"color": colors[density]}, showlegend=column == 1,
            )  # fmt: skip
    figure.update_xaxes(title_text="reflow rounds", dtick=1)
    figure.update_yaxes(type="log", col=1)
    figure.update_layout(height=HEIGHT, legend={"orientation": "h", "y": -0.25},
                         title={"text": "each round's coupling"})  # fmt: skip
    return figure


def flow_vs_diffusion_figure(table: pd.DataFrame):
    """Mean L2 to each sampler's exact ODE endpoint at each NFE: rectified flow's Euler on the
    exact velocity against the best of notebook 01's diffusion solvers there (`table` from
    `diffusion_comparison`)."""
    figure = go.Figure()
    nfe = table.index.to_numpy()
    flow = table.flow_l2.to_numpy()
    figure.add_scatter(x=nfe, y=flow, name="rectified flow, Euler (exact velocity)",
                       mode="lines+markers")  # fmt: skip
    figure.add_scatter(
        x=nfe, y=table.diffusion_l2.to_numpy(), mode="lines+markers+text",
        name="best diffusion solver of notebook 01 (VP, logSNR grid)",
        text=list(table.solver_label), textposition="top center",
    )  # fmt: skip
    values = np.concatenate([flow, table.diffusion_l2.to_numpy()])
    figure.update_layout(
        height=HEIGHT, title={"text": "error at equal NFE, the same mixture"},
        xaxis=figures.log_axis("NFE (model calls)", nfe),
        yaxis=figures.log_axis("mean L2 to the exact ODE endpoint", values),
        legend={"orientation": "h", "y": -0.25},
    )  # fmt: skip
    return figure
