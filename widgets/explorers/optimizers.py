"""Notebook 05's explorer: the optimizer race on a quadratic, per condition number and basis.

Every control selects from learning-rate sweeps computed once per (condition number, rotated,
frequency) by ``OptimizerStudy`` (the first visit to a new setting computes its sweep, a few
seconds; after that an update only slices arrays). The learning-rate control is relative: it
moves every selected optimizer the same number of octaves away from its own tuned rate, so one
slider shows how sharp each method's optimum is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from widgets.explorer import Choice, Explorer, FigurePanel, MultiChoice, Slider, Toggle
from workbench.optim.race import LRSweep, Run, Trace, steps_to_target
from workbench.optim.registry import OPTIMIZERS, optimizer_spec
from workbench.optim.study import OptimizerStudy

if TYPE_CHECKING:
    import plotly.graph_objects as go

COLORS = dict(
    zip(
        OPTIMIZERS,
        ["#9d755d", "#4c78a8", "#bab0ac", "#e45756", "#f58518", "#b279a2", "#54a24b", "#17becf"],
        strict=False,
    )
)
# "default" rather than None: ipywidgets reads a None value as "nothing selected"
FREQUENCIES = {
    "each method's default": "default",
    "every step": 1,
    "every 10 steps": 10,
    "every 100 steps": 100,
}
DEFAULT_SELECTION = ("sgd", "adam", "shampoo", "soap", "soap_adam_betas", "psgd_kron", "muon")
DIVERGED_Y = 10.0  # where a diverged run's final loss is drawn (losses are relative, start 1)


@dataclass(frozen=True)
class Entry:
    """One optimizer in one update: its tuned rate and the run the slider selects (if swept)."""

    optimizer: str
    tuned_lr_log2: int
    run: Run | None  # None: tuned rate x 2^shift is outside the swept grid
    runs: list[Run]  # every swept rate, for the sensitivity curve
    seconds_per_step: float


@dataclass(frozen=True)
class OptimizerView:
    kappa: float
    rotated: bool
    frequency: int | None
    lr_shift: int
    target: float
    entries: list[Entry]


@lru_cache(maxsize=4)
def study_for(steps: int, lr_log2: tuple[int, int], seed: int) -> OptimizerStudy:
    """One study per configuration, shared by the notebook and its explorer."""
    return OptimizerStudy(steps=steps, lr_log2=lr_log2, seed=seed)


def optimizer_explorer(
    steps: int = 200,
    lr_log2: tuple[int, int] = (-12, 2),
    seed: int = 0,
    kappa: float = 1e3,
) -> Explorer:
    study = study_for(steps, tuple(lr_log2), seed)

    def compute(optimizers, lr_shift, kappa, rotated, frequency) -> OptimizerView:
        frequency = None if frequency == "default" else frequency
        sweep = study.sweep(kappa, rotated, frequency)
        entries = []
        for name in optimizers:
            tuned = sweep.tuned_lr_log2(name)
            runs = sweep.runs(name)
            chosen = [r for r in runs if r.lr_log2 == tuned + lr_shift]
            entries.append(
                Entry(
                    optimizer=name,
                    tuned_lr_log2=tuned,
                    run=chosen[0] if chosen else None,
                    runs=runs,
                    seconds_per_step=study.seconds_per_step(name, frequency, kappa, rotated),
                )
            )
        return OptimizerView(kappa, rotated, frequency, lr_shift, study.target, entries)

    return Explorer(
        title="Optimizers on a quadratic with a Kronecker-factored Hessian",
        description=(
            "f(W) = 1/2 <W - W*, A (W - W*) B> on 16 x 16 matrices, eigenvalues spread over "
            "[1/kappa, 1]; rotated: A and B in random bases. Each optimizer's learning rate is "
            f"tuned on the grid 2^{lr_log2[0]}..2^{lr_log2[1]} for the lowest final loss after "
            f"{steps} steps; the slider moves all of them by the same factor."
        ),
        controls=[
            MultiChoice(
                "optimizers",
                "optimizers",
                {OPTIMIZERS[o].label: o for o in OPTIMIZERS},
                DEFAULT_SELECTION,
            ),
            Slider("lr_shift", "learning rate: log2(lr / tuned lr)", -4, 4, 0, integer=True),
            Slider("kappa", "condition number kappa", 1e1, 1e5, kappa, step=1, log=True),
            Toggle("rotated", "rotated Hessian (random bases)", True),
            Choice("frequency", "preconditioner refresh", FREQUENCIES, "default"),
        ],
        compute=compute,
        panels=[
            FigurePanel(
                "sensitivity",
                "final loss vs learning rate",
                _sensitivity_traces,
                _sensitivity_layout,
                width=520,
            ),
            FigurePanel("steps", "loss vs steps", _step_traces, _step_layout, width=520),
            FigurePanel("clock", "loss vs wall clock", _clock_traces, _clock_layout, width=520),
            FigurePanel(
                "table",
                "at the selected learning rate",
                _table_traces,
                {"margin": {"t": 40, "l": 10, "r": 10}},
                height=300,
                width=760,
            ),
        ],
    )


def _unswept_text(view: OptimizerView) -> str:
    """Which selected optimizers the shift takes off the swept grid (drawn nowhere)."""
    missing = [e.optimizer for e in view.entries if e.run is None]
    return f" (off the grid: {', '.join(missing)})" if missing else ""


def _selected_lr_text(view: OptimizerView) -> str:
    if view.lr_shift == 0:
        return "each at its tuned learning rate"
    return f"each at its tuned learning rate x 2^{view.lr_shift}"


def sensitivity_traces(
    optimizer: str, runs: list[Run], selected: Run | None = None, showlegend: bool = True
) -> list[dict]:
    """Final loss against learning rate, diverged runs as x at the top, the selected circled."""
    color = COLORS[optimizer]
    lrs = np.array([r.lr for r in runs])
    finals = np.array([r.final_loss for r in runs])
    finite = np.isfinite(finals)
    traces = [
        {
            "type": "scatter",
            "x": lrs[finite],
            "y": finals[finite],
            "mode": "lines+markers",
            "name": optimizer,
            "legendgroup": optimizer,
            "showlegend": showlegend,
            "line": {"color": color},
            "marker": {"size": 5},
        }
    ]
    if (~finite).any():
        traces.append(
            {
                "type": "scatter",
                "x": lrs[~finite],
                "y": np.full(int((~finite).sum()), DIVERGED_Y),
                "mode": "markers",
                "name": f"{optimizer} diverged",
                "legendgroup": optimizer,
                "showlegend": False,
                "marker": {"color": color, "symbol": "x", "size": 7},
            }
        )
    if selected is not None:
        traces.append(
            {
                "type": "scatter",
                "x": [selected.lr],
                "y": [DIVERGED_Y if selected.diverged else selected.final_loss],
                "mode": "markers",
                "legendgroup": optimizer,
                "showlegend": False,
                "marker": {
                    "color": color,
                    "size": 14,
                    "symbol": "circle-open",
                    "line": {"width": 2},
                },
            }
        )
    return traces


def loss_trace(optimizer: str, x: np.ndarray, losses: np.ndarray, showlegend: bool = True) -> dict:
    return {
        "type": "scatter",
        "x": x,
        "y": np.maximum(losses, 1e-30),  # a loss of exactly 0 has no place on a log axis
        "mode": "lines",
        "name": optimizer,
        "legendgroup": optimizer,
        "showlegend": showlegend,
        "line": {"color": COLORS[optimizer]},
    }


def _sensitivity_traces(view: OptimizerView) -> list[dict]:
    return [
        trace
        for entry in view.entries
        for trace in sensitivity_traces(entry.optimizer, entry.runs, entry.run)
    ]


def _kappa_text(view: OptimizerView) -> str:
    basis = "rotated" if view.rotated else "axis-aligned"
    return f"kappa = {view.kappa:.0e}, {basis}"


def _sensitivity_layout(view: OptimizerView) -> dict:
    return {
        "xaxis": {"type": "log", "title": {"text": "learning rate"}},
        "yaxis": {
            "type": "log",
            "title": {"text": "final loss / initial (x = diverged)"},
            "exponentformat": "power",
        },
        "legend": {"orientation": "h", "y": -0.25},
        "title": {"text": f"final loss vs learning rate ({_kappa_text(view)})"},
    }


def _curve_traces(view: OptimizerView, clock: bool) -> list[dict]:
    traces = []
    for entry in view.entries:
        if entry.run is not None:
            steps = np.arange(len(entry.run.losses))
            x = steps * entry.seconds_per_step if clock else steps
            traces.append(loss_trace(entry.optimizer, x, entry.run.losses))
    if traces:
        end = max(float(t["x"][-1]) for t in traces)
        traces.append(_target_trace(view.target, end))
    return traces


def _target_trace(target: float, end: float, showlegend: bool = True) -> dict:
    return {
        "type": "scatter",
        "x": [0, end],
        "y": [target, target],
        "mode": "lines",
        "name": f"target {target:g}",
        "showlegend": showlegend,
        "line": {"color": "black", "dash": "dot", "width": 1},
    }


def _step_traces(view: OptimizerView) -> list[dict]:
    return _curve_traces(view, clock=False)


def _clock_traces(view: OptimizerView) -> list[dict]:
    return _curve_traces(view, clock=True)


def _loss_axis() -> dict:
    return {"type": "log", "title": {"text": "loss / initial loss"}, "exponentformat": "power"}


def _step_layout(view: OptimizerView) -> dict:
    return {
        "xaxis": {"title": {"text": "step"}},
        "yaxis": _loss_axis(),
        "legend": {"orientation": "h", "y": -0.25},
        "title": {"text": f"loss vs steps, {_selected_lr_text(view)}{_unswept_text(view)}"},
    }


def _clock_layout(view: OptimizerView) -> dict:
    return {
        "xaxis": {"title": {"text": "wall clock (s): measured seconds per step x steps"}},
        "yaxis": _loss_axis(),
        "showlegend": False,
        "title": {"text": "loss vs wall clock"},
    }


def _format_steps(run: Run | None, target: float) -> str:
    if run is None:
        return "not swept"
    reached = steps_to_target(run.losses, target)
    return "not reached" if reached is None else str(reached)


def _table_traces(view: OptimizerView) -> list[dict]:
    rows = []
    for entry in view.entries:
        run = entry.run
        reached = None if run is None else steps_to_target(run.losses, view.target)
        seconds = "-" if reached is None else f"{reached * entry.seconds_per_step:.3f}"
        rows.append(
            [
                optimizer_spec(entry.optimizer).label,
                f"2^{entry.tuned_lr_log2}",
                "-" if run is None else f"2^{run.lr_log2}",
                "-" if run is None else ("diverged" if run.diverged else f"{run.final_loss:.1e}"),
                _format_steps(run, view.target),
                seconds,
                f"{1e3 * entry.seconds_per_step:.2f}",
                "-" if run is None else f"{run.state_bytes:,}",
            ]
        )
    header = [
        "optimizer",
        "tuned lr",
        "this lr",
        "final loss",
        f"steps to {view.target:g}",
        "seconds to target",
        "ms per step",
        "state (bytes)",
    ]
    # Non-breaking spaces: plotly 7's FigureWidget in JupyterLab drops table strings that
    # contain a plain space (see widgets/explorers/solver_steps.py).
    cells = [[str(v).replace(" ", "\u00a0") for v in column] for column in zip(*rows, strict=True)]
    if not rows:
        cells = [[] for _ in header]
    return [
        {
            "type": "table",
            "header": {"values": [h.replace(" ", "\u00a0") for h in header]},
            "cells": {"values": cells},
            "columnwidth": [2.6, 1, 1, 1.1, 1.2, 1.3, 1, 1.1],
        }
    ]


# ------------------------------------------------------------------ the notebook's static figures


def sensitivity_figure(sweeps: dict[str, LRSweep]) -> go.Figure:
    """Final loss vs learning rate per optimizer, one panel per problem (title -> sweep)."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(sweeps), subplot_titles=list(sweeps))
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


def race_figure(races: dict[str, dict[str, Trace]], targets: dict[str, float]) -> go.Figure:
    """Loss vs steps and vs measured wall clock, one row per problem (title -> traces)."""
    from plotly.subplots import make_subplots

    titles = [f"{problem}: {axis}" for problem in races for axis in ("steps", "wall clock")]
    figure = make_subplots(rows=len(races), cols=2, subplot_titles=titles, vertical_spacing=0.14)
    for row, (problem, traces) in enumerate(races.items(), start=1):
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
            figure.add_trace(
                _target_trace(targets[problem], end, showlegend=False), row=row, col=column
            )
        figure.update_yaxes(
            type="log", exponentformat="power", title_text="loss / initial", row=row, col=1
        )
        figure.update_yaxes(type="log", exponentformat="power", row=row, col=2)
        figure.update_xaxes(title_text="step", row=row, col=1)
        figure.update_xaxes(title_text="wall clock (s)", row=row, col=2)
    figure.update_layout(height=380 * len(races), width=1000, margin={"t": 60})
    return figure


def gd_rate_figure(eigenvalues: np.ndarray, lrs: np.ndarray, measured: np.ndarray) -> go.Figure:
    """Gradient descent's contraction per step against its step size: theory and measurement."""
    import plotly.graph_objects as go

    stable = 2 / eigenvalues.max()  # beyond this the largest component grows
    grid = np.linspace(0.0, stable, 400)
    theory = np.abs(1 - np.outer(grid, eigenvalues)).max(axis=1)
    best = 2 / (eigenvalues.max() + eigenvalues.min())
    figure = go.Figure()
    figure.add_scatter(x=grid, y=theory, mode="lines", name="max |1 - lr lambda| (theory)")
    figure.add_scatter(
        x=lrs, y=measured, mode="markers", name="measured |W - W*| ratio", marker={"size": 9}
    )
    figure.add_scatter(
        x=[best, best],
        y=[theory.min(), 1.0],
        mode="lines",
        name="2 / (lambda_max + lambda_min)",
        line={"dash": "dot", "color": "black"},
    )
    figure.update_layout(
        xaxis={"title": {"text": "step size lr"}, "range": [0, stable]},
        yaxis_title="contraction per step",
        height=360,
        width=700,
        legend={"x": 0.02, "y": 0.05},
    )
    return figure
