"""Notebook 05's explorer: the optimizer race on a quadratic, per condition number and basis.

Every control selects from learning-rate sweeps computed once per (condition number, rotated,
frequency) by ``OptimizerStudy.view`` (the first visit to a new setting computes its sweep, a few
seconds; after that an update only slices arrays). The learning-rate control is relative: it
moves every selected optimizer the same number of octaves away from its own tuned rate, so one
slider shows how sharp each method's optimum is. The notebook's own figures are in
``widgets.optimizer_figures``.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, MultiChoice, Slider, Toggle
from workbench.optim.race import Run
from workbench.optim.registry import OPTIMIZERS
from workbench.optim.study import OptimizerStudy, OptimizerView, study_for, study_size

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


def optimizers_app(smoke: bool = False) -> Explorer:
    """Notebook 05's explorer at its full or SMOKE size (the served page)."""
    size = study_size(smoke)
    return optimizer_explorer(study_for(size), kappa=size.race_kappa)


def optimizer_explorer(study: OptimizerStudy | None = None, kappa: float = 1e3) -> Explorer:
    """The explorer over ``study``'s sweeps (default: 200 steps, lr 2^-12..2^2, seed 0),
    starting at condition number ``kappa``."""
    study = study or OptimizerStudy()
    steps, lr_log2 = study.steps, study.lr_log2

    def compute(optimizers, lr_shift, kappa, rotated, frequency) -> OptimizerView:
        frequency = None if frequency == "default" else frequency
        return study.view(optimizers, lr_shift, kappa, rotated, frequency)

    return Explorer(
        title="Optimizers on a quadratic with a Kronecker-factored Hessian",
        description=(
            "f(W) = 1/2 <W - W*, A (W - W*) B> on 16 x 16 matrices, eigenvalues spread over "
            "[1/kappa, 1]; rotated: A and B in random bases. Each optimizer's learning rate is "
            f"tuned on the grid 2^{lr_log2[0]}..2^{lr_log2[1]} for the lowest final loss after "
            f"{steps} steps; the slider moves all of them by the same factor."
        ),
        controls=[
            MultiChoice("optimizers", "optimizers", OPTIMIZERS.options(), DEFAULT_SELECTION),
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
        y = DIVERGED_Y if selected.diverged else selected.final_loss
        traces.append(figures.ring([selected.lr], [y], color=color, legendgroup=optimizer))
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
        traces.append(target_trace(view.target, end))
    return traces


def target_trace(target: float, end: float, showlegend: bool = True) -> dict:
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


def _table_traces(view: OptimizerView) -> list[dict]:
    rows = []
    for entry in view.entries:
        run = entry.run
        if run is None:
            reached = "not swept"
        else:
            reached = "not reached" if entry.steps_to_target is None else entry.steps_to_target
        seconds = entry.seconds_to_target
        rows.append(
            [
                OPTIMIZERS.label(entry.optimizer),
                f"2^{entry.tuned_lr_log2}",
                "-" if run is None else f"2^{run.lr_log2}",
                "-" if run is None else ("diverged" if run.diverged else f"{run.final_loss:.1e}"),
                reached,
                "-" if seconds is None else f"{seconds:.3f}",
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
