"""Notebook 05's explorer: the optimizer race on a quadratic, per condition number and basis.

Every control selects from learning-rate sweeps computed once per (condition number, rotated,
frequency) by ``OptimizerStudy.view`` (the first visit to a new setting computes its sweep, a few
seconds; after that an update only slices arrays). The learning-rate control is relative: it
moves every selected optimizer the same number of octaves away from its own tuned rate, so one
slider shows how sharp each method's optimum is; a shift past the swept grid selects the grid's
end for that optimizer and the step panel's title names it, so every slider position draws every
selected optimizer. ``cost`` tells the front ends how long a first visit will take. The
notebook's own figures are in ``widgets.optimizer_figures``.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, MultiChoice, Slider, Toggle
from workbench.claims import readable
from workbench.optim.race import Run
from workbench.optim.registry import OPTIMIZERS
from workbench.optim.study import OptimizerStudy, OptimizerView, study_for, study_size

COLORS = figures.color_map(OPTIMIZERS)  # one color per optimizer, in every panel
# "default" rather than None: ipywidgets reads a None value as "nothing selected"
FREQUENCIES = {
    "each method's default": "default",
    "every step": 1,
    "every 10 steps": 10,
    "every 100 steps": 100,
}
DEFAULT_SELECTION = ("sgd", "adam", "shampoo", "soap", "soap_adam_betas", "psgd_kron", "muon")
DIVERGED_Y = 10.0  # where a diverged run's final loss is drawn (losses are relative, start 1)
LOSS_FLOOR = 1e-30  # where a loss of exactly 0 is drawn (a log axis has no 0)
MAX_LR_SHIFT = 4  # octaves either way from each tuned rate (fewer if the grid is narrower)
MAX_NAMED_IN_TITLE = 3
TWO_LINE_TITLE_MARGIN = 70  # px above the plot: a title and its smaller second line


def optimizers_app(smoke: bool = False) -> Explorer:
    """Notebook 05's explorer at its full or SMOKE size (the served page)."""
    size = study_size(smoke)
    return optimizer_explorer(study_for(size), kappa=size.race_kappa)


def _frequency(value) -> int | None:
    return None if value == "default" else value


def optimizer_explorer(study: OptimizerStudy | None = None, kappa: float = 1e3) -> Explorer:
    """The explorer over ``study``'s sweeps (default: 200 steps, lr 2^-12..2^2, seed 0),
    starting at condition number ``kappa``."""
    study = study or OptimizerStudy()
    steps, lr_log2 = study.steps, study.lr_log2
    shift = min(MAX_LR_SHIFT, study.max_lr_shift)

    def compute(optimizers, lr_shift, kappa, rotated, frequency) -> OptimizerView:
        return study.view(optimizers, lr_shift, kappa, rotated, _frequency(frequency))

    def cost(optimizers, lr_shift, kappa, rotated, frequency) -> float | None:
        return study.first_visit_seconds(optimizers, kappa, rotated, _frequency(frequency))

    return Explorer(
        title="Optimizers on a quadratic with a Kronecker-factored Hessian",
        description=(
            "f(W) = 1/2 <W - W*, A (W - W*) B> on 16 x 16 matrices, eigenvalues spread over "
            "[1/κ, 1]; rotated: A and B in random bases. Each optimizer's learning rate is "
            f"tuned on the grid 2^{lr_log2[0]}..2^{lr_log2[1]} for the lowest final loss after "
            f"{steps} steps; the slider moves all of them by the same factor, and a rate past "
            "the grid shows the grid's end (the table says which)."
        ),
        controls=[
            MultiChoice("optimizers", "optimizers", OPTIMIZERS.options(), DEFAULT_SELECTION),
            Slider(
                "lr_shift",
                "learning rate: tuned rate x 2^k (k, octaves)",
                -shift,
                shift,
                0,
                integer=True,
            ),
            Slider("kappa", "condition number κ = λmax / λmin", 1e1, 1e5, kappa, step=1, log=True),
            Toggle("rotated", "rotated Hessian (random bases)", True),
            Choice("frequency", "preconditioner refresh (steps)", FREQUENCIES, "default"),
        ],
        compute=compute,
        cost=cost,
        panels=[
            FigurePanel(
                "sensitivity",
                "final loss vs learning rate",
                _sensitivity_traces,
                _sensitivity_layout,
                wide=True,
            ),
            FigurePanel("steps", "loss vs steps", _step_traces, _step_layout),
            FigurePanel("clock", "loss vs wall clock", _clock_traces, _clock_layout),
            FigurePanel(
                "table",
                "at the selected learning rate",
                _table_traces,
                {"margin": {"t": 40, "l": 10, "r": 10}},
                height=300,
                wide=True,
            ),
        ],
    )


def _clamped_text(view: OptimizerView) -> str:
    """Which selected optimizers the shift takes past the swept grid (shown at its end), on a
    second, smaller title line."""
    clamped = [OPTIMIZERS.label(e.optimizer) for e in view.entries if e.clamped]
    if not clamped:
        return ""
    if len(clamped) > MAX_NAMED_IN_TITLE:  # a longer list runs off a half-width panel
        which = f"{len(clamped)} of {len(view.entries)} optimizers (the table says which)"
    else:
        which = ", ".join(clamped)
    return f"<br><sub>past the swept grid, at its end: {which}</sub>"


def _selected_lr_text(view: OptimizerView) -> str:
    if view.lr_shift == 0:
        return "each at its tuned learning rate"
    return f"each at its tuned learning rate x 2<sup>{view.lr_shift}</sup>"


def sensitivity_traces(
    optimizer: str, runs: list[Run], selected: Run | None = None, showlegend: bool = True
) -> list[dict]:
    """Final loss against learning rate, diverged runs as x at the top, the selected circled."""
    color, label = COLORS[optimizer], OPTIMIZERS.label(optimizer)
    lrs = np.array([r.lr for r in runs])
    finals = np.array([r.final_loss for r in runs])
    finite = np.isfinite(finals)
    traces = [
        {
            "type": "scatter",
            "x": lrs[finite],
            "y": finals[finite],
            "mode": "lines+markers",
            "name": label,
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
                "name": f"{label} diverged",
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
        "y": np.maximum(losses, LOSS_FLOOR),
        "mode": "lines",
        "name": OPTIMIZERS.label(optimizer),
        "legendgroup": optimizer,
        "showlegend": showlegend,
        "line": {"color": COLORS[optimizer]},
    }


def sensitivity_axes(runs: list[Run]) -> tuple[dict, dict]:
    """The learning-rate axis (powers of 2) and the final-loss axis of a sensitivity plot."""
    finals = [r.final_loss for r in runs if np.isfinite(r.final_loss)]
    x = figures.log_axis("learning rate", [r.lr for r in runs], base=2)
    y = figures.log_axis("final loss / initial (x: diverged)", [*finals, DIVERGED_Y])
    return x, y


def loss_axis(curves: list[np.ndarray], title: str = "loss / initial loss") -> dict:
    """A log axis over the drawn loss curves (floored as ``loss_trace`` draws them)."""
    values = np.concatenate([np.maximum(c, LOSS_FLOOR) for c in curves]) if curves else None
    return figures.log_axis(title, values)


def _sensitivity_traces(view: OptimizerView) -> list[dict]:
    return [
        trace
        for entry in view.entries
        for trace in sensitivity_traces(entry.optimizer, entry.runs, entry.run)
    ]


def _kappa_text(view: OptimizerView) -> str:
    basis = "rotated" if view.rotated else "axis-aligned"
    return f"κ = 10<sup>{np.log10(view.kappa):.0f}</sup>, {basis}"


def _sensitivity_layout(view: OptimizerView) -> dict:
    xaxis, yaxis = sensitivity_axes([run for entry in view.entries for run in entry.runs])
    return {
        "xaxis": xaxis,
        "yaxis": yaxis,
        "legend": {"orientation": "h", "y": -0.25},
        "title": {"text": f"final loss vs learning rate ({_kappa_text(view)})"},
    }


def _curve_traces(view: OptimizerView, clock: bool) -> list[dict]:
    traces = []
    for entry in view.entries:
        steps = np.arange(len(entry.run.losses))
        x = steps * entry.seconds_per_step if clock else steps
        traces.append(loss_trace(entry.optimizer, x, entry.run.losses, showlegend=not clock))
    if traces:
        end = max(float(t["x"][-1]) for t in traces)
        traces.append(target_trace(view.target, end, showlegend=not clock))
    return traces


def target_trace(target: float, end: float, showlegend: bool = True) -> dict:
    return {
        "type": "scatter",
        "x": [0, end],
        "y": [target, target],
        "mode": "lines",
        "name": f"target {readable(target)}",
        "showlegend": showlegend,
        "line": {"color": "black", "dash": "dot", "width": 1},
    }


def _step_traces(view: OptimizerView) -> list[dict]:
    return _curve_traces(view, clock=False)


def _clock_traces(view: OptimizerView) -> list[dict]:
    return _curve_traces(view, clock=True)


def _view_loss_axis(view: OptimizerView) -> dict:
    return loss_axis([e.run.losses for e in view.entries] + [np.array([view.target])])


def _step_layout(view: OptimizerView) -> dict:
    return {
        "xaxis": {"title": {"text": "step"}},
        "yaxis": _view_loss_axis(view),
        "legend": {"orientation": "h", "y": -0.25},
        "title": {"text": f"loss vs steps, {_selected_lr_text(view)}{_clamped_text(view)}"},
        "margin": {"t": TWO_LINE_TITLE_MARGIN},  # room for the title's second line
    }


def _clock_layout(view: OptimizerView) -> dict:
    return {
        "xaxis": {"title": {"text": "wall clock (s): measured seconds per step x steps"}},
        "yaxis": _view_loss_axis(view),
        "showlegend": False,
        "title": {"text": "loss vs wall clock (colors as in loss vs steps)"},
        "margin": {"t": TWO_LINE_TITLE_MARGIN},  # level with the step panel beside it
    }


def _table_traces(view: OptimizerView) -> list[dict]:
    rows = []
    for entry in view.entries:
        run = entry.run
        steps = entry.steps_to_target
        seconds = entry.seconds_to_target
        rows.append(
            [
                OPTIMIZERS.label(entry.optimizer),
                f"2^{entry.tuned_lr_log2}",
                f"2^{run.lr_log2}" + (" (grid end)" if entry.clamped else ""),
                "diverged" if run.diverged else readable(run.final_loss),
                "not reached" if steps is None else readable(steps),
                "-" if seconds is None else readable(seconds),
                readable(1e3 * entry.seconds_per_step),
                f"{run.state_bytes:,}",
            ]
        )
    header = [
        "optimizer",
        "tuned lr",
        "this lr",
        "final loss",
        f"steps to {readable(view.target)}",
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
            "columnwidth": [2.6, 1, 1.3, 1.1, 1.2, 1.3, 1, 1.1],
        }
    ]
