"""Notebook 08's static figures: they draw what `workbench.models.study` computed, run nothing."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from widgets import figures
from workbench.diffusion.sampling import SOLVERS
from workbench.models.study import EXACT, model_label

HEIGHT = 380


def _smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """A running mean over `window` steps (the loss of one batch is noisy)."""
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def training_figure(networks: Mapping[str, object], window: int = 50) -> go.Figure:
    """Every network's denoising loss per training step (running mean), one line each."""
    colors = figures.color_map(networks)
    figure = go.Figure()
    for model_id, net in networks.items():
        loss = _smoothed(np.asarray(net.losses, dtype=float), window)
        figure.add_trace(
            go.Scatter(
                x=np.arange(len(loss)) + window,
                y=loss,
                mode="lines",
                name=model_label(model_id),
                line={"color": colors[model_id]},
            )
        )
    figure.update_layout(
        height=HEIGHT,
        title={"text": f"denoising loss E|ε_θ − ε|² (running mean of {window} steps)"},
        xaxis={"title": {"text": "training step"}},
        yaxis={"title": {"text": "loss"}},
    )
    return figure


def solvers_figure(table: pd.DataFrame, model_id: str) -> go.Figure:
    """Total error vs NFE of every solver, on the exact model (dashed) and on one network
    (solid), with the network's model error as a floor."""
    colors = figures.color_map(table.solver.unique())
    figure = go.Figure()
    for (shown, rows), dash in (
        ((EXACT, table[table.model_id == EXACT]), "dash"),
        ((model_id, table[table.model_id == model_id]), "solid"),
    ):
        for solver, curve in rows.groupby("solver", sort=False):
            figure.add_trace(
                go.Scatter(
                    x=curve.nfe,
                    y=curve.total,
                    mode="lines+markers",
                    name=f"{SOLVERS.label(solver)}, {model_label(shown)}",
                    legendgroup=solver,
                    line={"color": colors[solver], "dash": dash},
                )
            )
    floor = float(table[table.model_id == model_id].model.iloc[0])
    nfes = [int(table.nfe.min()), int(table.nfe.max())]
    figure.add_trace(
        go.Scatter(
            x=nfes,
            y=[floor] * 2,
            mode="lines",
            name="the network's model error",
            line={"color": "black", "dash": "dot"},
        )
    )
    figure.update_layout(
        height=460,
        title={"text": f"total error vs NFE: exact model (dashed), {model_label(model_id)}"},
        xaxis=figures.log_axis("NFE (model calls)", table.nfe),
        yaxis=figures.log_axis("E|x_k − x*|² (x*: the exact model's ODE)", table.total),
        legend={"font": {"size": 10}},
    )
    return figure


def score_figure(scores: pd.DataFrame) -> go.Figure:
    """Every network's relative score error per noise level."""
    colors = figures.color_map(scores.model_id.unique())
    figure = go.Figure()
    for model_id, rows in scores.groupby("model_id", sort=False):
        figure.add_trace(
            go.Scatter(
                x=rows.ve_sigma,
                y=rows.relative,
                mode="lines+markers",
                name=model_label(model_id),
                line={"color": colors[model_id]},
            )
        )
    figure.update_layout(
        height=HEIGHT,
        title={"text": "relative score error E_{p_t}|s_θ − s*|² / E|s*|² by noise level"},
        xaxis=figures.log_axis("noise level σ/α", scores.ve_sigma),
        yaxis=figures.log_axis("relative score error", scores.relative),
    )
    return figure


def statistics_figure(statistics: pd.DataFrame) -> go.Figure:
    """DPM-Solver-v3's l, s, b per log-SNR (the mean over dimensions): the network's own
    (solid) against the exact model's (dashed), from the same draws and noise."""
    from plotly.subplots import make_subplots

    names = ("l", "s", "b")
    figure = make_subplots(rows=1, cols=3, subplot_titles=[f"{n}(λ)" for n in names])
    for column, name in enumerate(names, start=1):
        for source, dash, color in (("network", "solid", "#d62728"), ("exact", "dash", "black")):
            figure.add_trace(
                go.Scatter(
                    x=statistics["lambda"],
                    y=statistics[f"{name}_{source}"],
                    mode="lines",
                    name=f"{source} model's" if source == "exact" else "the network's own",
                    legendgroup=source,
                    showlegend=column == 1,
                    line={"color": color, "dash": dash},
                ),
                row=1,
                col=column,
            )
        figure.update_xaxes(title_text="log-SNR λ", row=1, col=column)
    figure.update_layout(
        height=HEIGHT, title={"text": "DPM-Solver-v3's model statistics (mean over dimensions)"}
    )
    return figure
