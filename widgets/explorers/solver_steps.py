"""Notebook 01's explorer: solvers x steps x grid on an exact mixture, errors against the truth.

It declares the controls, asks `workbench.diffusion.study.solver_steps` for everything a
setting shows (solves, curves, fitted orders, table: computed and memoized there) and builds
the panels from that result.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, MultiChoice, Slider
from workbench.diffusion import GRIDS, SOLVERS
from workbench.diffusion.study import (
    CURVE_STEPS,
    N_PATHS,
    SOLVER_PROBLEMS,
    SolverSteps,
    solver_names,
    solver_steps,
    study_size,
)

# "default" rather than None: ipywidgets reads a None value as "nothing selected"
ORDERS = {"solver default": "default", "1": 1, "2": 2, "3": 3}
COLORS = ["#e45756", "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d", "#17becf", "#bab0ac"]
PANEL = 430
DEFAULT_SOLVERS = ("ddim", "dpmpp_2m", "unipc_bh2", "dpm_solver_v3")


def solver_steps_app(smoke: bool = False) -> Explorer:
    """The served explorer at notebook 01's SMOKE or full size (sizes from the study)."""
    size = study_size(smoke)
    return solver_steps_explorer(n_samples=size.n_samples, curve_steps=size.curve_steps)


def solver_steps_explorer(
    n_samples: int = 4000, seed: int = 0, curve_steps: tuple[int, ...] = CURVE_STEPS
) -> Explorer:
    names = solver_names()
    defaults = tuple(s for s in DEFAULT_SOLVERS if s in names)

    def compute(problem: str, solvers: tuple, steps: int, grid: str, order) -> SolverSteps:
        return solver_steps(
            problem, solvers, steps, grid, order,
            n_samples=n_samples, seed=seed, curve_steps=curve_steps,
        )  # fmt: skip

    return Explorer(
        title="Solver steps on an exact mixture",
        description=(
            f"Every solver starts from the same {n_samples:,} noise draws; errors are mean L2 "
            "distances to the exact probability-flow ODE solution (DOP853, tolerance 1e-11)."
        ),
        controls=[
            Choice("problem", "problem", SOLVER_PROBLEMS.options(), "ring"),
            MultiChoice("solvers", "solvers", SOLVERS.options(names), defaults),
            Slider("steps", "solver steps", 1, 50, 10, integer=True),
            Choice("grid", "time grid", GRIDS.options(), "logsnr"),
            Choice("order", "order (where supported)", ORDERS, "default"),
        ],
        compute=compute,
        panels=[
            FigurePanel(
                "samples", "samples", _sample_traces, _sample_layout, height=PANEL, width=PANEL
            ),
            FigurePanel(
                "paths", "trajectories", _path_traces, _path_layout, height=PANEL, width=PANEL
            ),
            FigurePanel(
                "errors", "error vs NFE", _error_traces, _error_layout, height=PANEL, width=520
            ),
            FigurePanel(
                "table",
                "error at NFE 5/10/20",
                _table_traces,
                {"margin": {"t": 40}},
                height=260,
                width=520,
            ),
        ],
    )


def _sample_traces(view: SolverSteps) -> list[dict]:
    xs, ys, log_p = view.density
    traces = [
        figures.heatmap(
            xs, ys, np.maximum(log_p, log_p.max() - 12), name="log p_0", colorscale="Greys"
        )
    ]
    for color, solver in zip(COLORS, view.solvers, strict=False):
        traces.append(
            figures.points(view.samples[solver], name=solver, color=color, size=2.5, opacity=0.5)
        )
    return traces


def _bounds(view: SolverSteps):
    xs, ys, _ = view.density
    return (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))


def _sample_layout(view: SolverSteps) -> dict:
    return {
        **figures.square_axes(_bounds(view)),
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.08},
        "title": {"text": f"samples after {view.steps} steps over the true log p_0"},
    }


def _path_traces(view: SolverSteps) -> list[dict]:
    traces = [
        figures.points(view.exact_ends, name="exact endpoint", color="black", size=7, opacity=0.9)
    ]
    for color, solver in zip(COLORS, view.solvers, strict=False):
        traces.append(figures.polylines(view.paths[solver], name=solver, color=color, markers=True))
    return traces


def _path_layout(view: SolverSteps) -> dict:
    return {
        **figures.square_axes((-3.5, 3.5, -3.5, 3.5)),
        "showlegend": False,
        "title": {"text": f"{N_PATHS} trajectories, x_T to x_0"},
    }


def _error_traces(view: SolverSteps) -> list[dict]:
    traces = []
    for color, solver in zip(COLORS, view.solvers, strict=False):
        curve = view.curves[view.curves.solver == solver]
        fitted = view.fitted_orders[solver]
        traces.append(
            {
                "type": "scatter",
                "x": curve.nfe.to_numpy(),
                "y": curve.error.to_numpy(),
                "mode": "lines+markers",
                "name": f"{solver} (order {view.orders[solver]}, fitted {fitted:.2f})",
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
        "xaxis": {"type": "log", "title": {"text": "NFE (model calls)"}},
        "yaxis": {"type": "log", "title": {"text": "mean L2 error to the exact solution"}},
        "legend": {"x": 0.01, "y": 0.01, "bgcolor": "rgba(255,255,255,0.7)"},
        "title": {"text": f"error vs NFE, {view.grid} grid"},
    }


def _table_traces(view: SolverSteps) -> list[dict]:
    table = view.table
    cells = [list(table.index)] + [[f"{v:.2e}" for v in table[c]] for c in table.columns]
    # Non-breaking spaces: plotly 7's FigureWidget in JupyterLab drops table strings that
    # contain a plain space (seen for "NFE 5"; static plotly renders them fine).
    header = [name.replace(" ", "\u00a0") for name in ("solver", *table.columns)]
    return [{"type": "table", "header": {"values": header}, "cells": {"values": cells}}]
