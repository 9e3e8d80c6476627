"""Notebook 09's static figures: they draw what `workbench.inverse.study` computed, run nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from widgets import figures
from workbench.composition import SAMPLERS
from workbench.inverse.problems import PROBLEMS
from workbench.inverse.study import method_label

HEIGHT = 380


def posteriors_figure(panels: dict) -> go.Figure:
    """Per problem: the exact posterior's log density with exact draws (white) and the exact
    posterior model's ODE samples (red). `panels`: problem -> (density, exact, model)."""
    from plotly.subplots import make_subplots

    titles = [PROBLEMS.label(p) for p in panels]
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=titles)
    for column, (density, exact, model) in enumerate(panels.values(), start=1):
        xs, ys, log_p = density
        shown = np.maximum(log_p, log_p.max() - 12)
        figure.add_trace(
            go.Heatmap(figures.heatmap(xs, ys, shown, name="log p(x | y)", colorscale="Greys")),
            row=1,
            col=column,
        )
        figure.add_trace(
            go.Scattergl(figures.points(exact, name="exact draws", color="#1f77b4", size=2.5)),
            row=1,
            col=column,
        )
        figure.add_trace(
            go.Scattergl(
                figures.points(model, name="exact posterior model, ODE", color="#d62728", size=2.5)
            ),
            row=1,
            col=column,
        )
        figure.update_xaxes(range=[xs[0], xs[-1]], row=1, col=column)
        figure.update_yaxes(range=[ys[0], ys[-1]], row=1, col=column)
    figure.update_layout(
        height=HEIGHT,
        showlegend=False,
        title={"text": "exact draws (blue), the exact posterior model's ODE (red)"},
    )
    return figure


def terms_figure(terms: pd.DataFrame) -> go.Figure:
    """Relative guidance-term error per noise level, a column per problem, a line per method."""
    from plotly.subplots import make_subplots

    problems = list(dict.fromkeys(terms.problem))
    colors = figures.color_map(terms.method.unique())
    figure = make_subplots(
        rows=1, cols=len(problems), subplot_titles=[PROBLEMS.label(p) for p in problems]
    )
    for column, problem in enumerate(problems, start=1):
        for method, rows in terms[terms.problem == problem].groupby("method", sort=False):
            figure.add_trace(
                go.Scatter(
                    x=rows.sigma / rows.alpha,
                    y=rows.relative,
                    mode="lines+markers",
                    name=method_label(method),
                    legendgroup=method,
                    showlegend=column == 1,
                    line={"color": colors[method]},
                ),
                row=1,
                col=column,
            )
        figure.update_xaxes(
            figures.log_axis("noise level σ/α", terms.sigma / terms.alpha), row=1, col=column
        )
        figure.update_yaxes(
            figures.log_axis("E|g − g*|² / E|g*|²", terms.relative), row=1, col=column
        )
    figure.update_layout(
        height=HEIGHT, title={"text": "term error vs the exact grad log p_t(y | x_t)"}
    )
    return figure


def tfg_figure(tfg: pd.DataFrame) -> go.Figure:
    """TFG's mean relative term error per strength, a line per problem."""
    colors = figures.color_map(tfg.problem.unique())
    figure = go.Figure()
    for problem, rows in tfg.groupby("problem", sort=False):
        figure.add_trace(
            go.Scatter(
                x=rows.strength,
                y=rows.relative,
                mode="lines+markers",
                name=PROBLEMS.label(problem),
                line={"color": colors[problem]},
            )
        )
    figure.update_layout(
        height=HEIGHT,
        title={"text": "TFG's term error against its strength"},
        xaxis={"title": {"text": "strength (rho = mu = sigma-bar scale)"}},
        yaxis=figures.log_axis("mean relative term error", tfg.relative),
    )
    return figure


def composition_figure(table: pd.DataFrame) -> go.Figure:
    """Distance to the exact product (above the floor) per score evaluation, a line per sampler."""
    colors = figures.color_map(table.sampler.unique())
    figure = go.Figure()
    for sampler, rows in table.groupby("sampler", sort=False):
        figure.add_trace(
            go.Scatter(
                x=rows.evaluations,
                y=rows.gap.clip(lower=1e-3),
                mode="lines+markers",
                name=SAMPLERS.label(sampler),
                text=rows.knobs,
                line={"color": colors[sampler]},
            )
        )
    floor = float(table.floor.iloc[0])
    figure.add_hline(y=floor, line_dash="dot", annotation_text="the floor (two exact sets)")
    figure.update_layout(
        height=HEIGHT,
        title={"text": "product of two mixtures: gap vs compute"},
        xaxis=figures.log_axis("score evaluations per sample", table.evaluations),
        yaxis=figures.log_axis("sliced W − floor", table.gap.clip(lower=1e-3)),
    )
    return figure
