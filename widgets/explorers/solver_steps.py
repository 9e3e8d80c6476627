"""Notebook 01's explorer: solvers x steps x grid on an exact mixture, errors against the truth.

It declares the controls, asks `workbench.diffusion.study.solver_steps` for everything a
setting shows (solves, curves, fitted orders, table: computed and memoized there) and builds
the panels from that result.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, MultiChoice, Slider
from widgets.explorers.noised_mixture import plane_layout
from workbench.claims import readable
from workbench.diffusion import GRIDS, SOLVERS
from workbench.diffusion.study import (
    CURVE_STEPS,
    N_PATHS,
    SOLVER_PROBLEMS,
    SolverSteps,
    solver_names,
    solver_steps,
    solver_steps_cost,
    study_size,
)
from workbench.diffusion.study_findings import count_text

# "default" rather than None: ipywidgets reads a None value as "nothing selected"
ORDERS = {"solver default": "default", "1": 1, "2": 2, "3": 3}
PANEL = 430
TABLE_ROW = 26  # px per table row: the table panel grows with the selection, never clips it
DEFAULT_SOLVERS = ("ddim", "dpmpp_2m", "unipc_bh2", "dpm_solver_v3")
# One color per solver over every solver one can select: a solver keeps its color whatever
# else is selected, in every panel.
COLORS = figures.color_map(solver_names())


def solver_steps_app(smoke: bool = False) -> Explorer:
    """The served explorer at notebook 01's SMOKE or full size (sizes from the study)."""
    size = study_size(smoke)
    return solver_steps_explorer(n_samples=size.n_samples, curve_steps=size.curve_steps)


def solver_steps_explorer(
    n_samples: int = 4000, seed: int = 0, curve_steps: tuple[int, ...] = CURVE_STEPS
) -> Explorer:
    names = solver_names()
    defaults = tuple(s for s in DEFAULT_SOLVERS if s in names)
    sizes = {"n_samples": n_samples, "seed": seed, "curve_steps": curve_steps}

    def compute(problem: str, solvers: tuple, steps: int, grid: str, order) -> SolverSteps:
        return solver_steps(problem, solvers, steps, grid, order, **sizes)

    def cost(problem: str, solvers: tuple, steps: int, grid: str, order) -> float | None:
        return solver_steps_cost(problem, solvers, steps, grid, order, **sizes)

    return Explorer(
        title="Solver steps on an exact mixture",
        description=(
            f"Every solver starts from the same {n_samples:,} noise draws; errors are mean L2 "
            "distances to the exact probability-flow ODE solution (DOP853, tolerance 1e-11)."
        ),
        controls=[
            Choice("problem", "problem", SOLVER_PROBLEMS.options(), "ring"),
            MultiChoice("solvers", "solvers", SOLVERS.options(names), defaults),
            Slider("steps", "solver steps (= NFE for multistep solvers)", 1, 50, 10, integer=True),
            Choice("grid", "time grid", GRIDS.options(), "logsnr"),
            Choice("order", "order (where supported)", ORDERS, "default"),
        ],
        compute=compute,
        cost=cost,
        panels=[
            FigurePanel("samples", "samples", _sample_traces, _sample_layout, height=PANEL),
            FigurePanel("paths", "trajectories", _path_traces, _path_layout, height=PANEL),
            # a row of its own: eleven curves and their legend need the width
            FigurePanel(
                "errors", "error vs NFE", _error_traces, _error_layout, height=PANEL, wide=True
            ),
            FigurePanel("table", "error at NFE 5/10/20", _table_traces, _table_layout, wide=True),
        ],
    )


def _sample_traces(view: SolverSteps) -> list[dict]:
    xs, ys, log_p = view.density
    traces = [
        figures.heatmap(
            xs, ys, np.maximum(log_p, log_p.max() - 12), name="log p_0", colorscale="Greys"
        )
    ]
    for solver in view.solvers:
        traces.append(
            figures.points(
                view.samples[solver],
                name=SOLVERS.label(solver),
                color=COLORS[solver],
                size=2.5,
                opacity=0.5,
            )
        )
    return traces


def _bounds(view: SolverSteps):
    xs, ys, _ = view.density
    return (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))


def _sample_layout(view: SolverSteps) -> dict:
    title = f"samples after {count_text(view.steps, 'step')} over the true log p_0"
    return {
        **plane_layout(_bounds(view), title),
        "showlegend": True,
        # constant item size: the legend's markers readable though the samples' are tiny
        "legend": {"orientation": "h", "y": -0.15, "itemsizing": "constant"},
    }


def _path_traces(view: SolverSteps) -> list[dict]:
    traces = [
        figures.points(view.exact_ends, name="exact endpoint", color="black", size=7, opacity=0.9)
    ]
    for solver in view.solvers:
        traces.append(
            figures.polylines(
                view.paths[solver], name=SOLVERS.label(solver), color=COLORS[solver], markers=True
            )
        )
    return traces


def _path_layout(view: SolverSteps) -> dict:
    return plane_layout((-3.5, 3.5, -3.5, 3.5), f"{N_PATHS} trajectories, x_T to x_0")


def _error_traces(view: SolverSteps) -> list[dict]:
    traces = []
    for solver in view.solvers:
        curve = view.curves[view.curves.solver == solver]
        fitted = view.fitted_orders[solver]
        color = COLORS[solver]
        traces.append(
            {
                "type": "scatter",
                "x": curve.nfe.to_numpy(),
                "y": curve.error.to_numpy(),
                "mode": "lines+markers",
                "name": (
                    f"{SOLVERS.label(solver)} (order {view.orders[solver]}, fitted {fitted:.2f})"
                ),
                "line": {"color": color},
            }
        )
        current = curve[curve.steps == view.steps]
        if len(current):
            x, y = current.nfe.to_numpy(), current.error.to_numpy()
            traces.append(figures.ring(x, y, color=color, size=13))
    return traces


def _error_layout(view: SolverSteps) -> dict:
    return {
        "xaxis": figures.log_axis("NFE (model calls)", view.curves.nfe),
        "yaxis": figures.log_axis("mean L2 error to the exact solution", view.curves.error),
        "title": {"text": f"error vs NFE, {GRIDS.label(view.grid)} grid"},
    }


def _table_traces(view: SolverSteps) -> list[dict]:
    table = view.table
    labels = [_no_break(SOLVERS.label(s)) for s in table.index]
    numbers = [[readable(v) for v in table[c]] for c in table.columns]
    header = [_no_break(name) for name in ("solver", *table.columns)]
    return [
        {
            "type": "table",
            "columnwidth": [2] + [1] * len(table.columns),  # labels need more room than numbers
            "header": {"values": header, "height": TABLE_ROW},
            "cells": {"values": [labels, *numbers], "height": TABLE_ROW},
        }
    ]


def _no_break(text: str) -> str:
    # Non-breaking spaces: plotly 7's FigureWidget in JupyterLab drops table strings that
    # contain a plain space (seen for "NFE 5"; static plotly renders them fine).
    return text.replace(" ", "\u00a0")


def _table_layout(view: SolverSteps) -> dict:
    rows = len(view.table) + 1  # and the header
    margin = {"t": 40, "b": 10, "l": 10, "r": 10}
    return {"height": margin["t"] + margin["b"] + TABLE_ROW * rows + 20, "margin": margin}
