"""Notebook 01's explorer: solvers x steps x grid on an exact mixture, errors against the truth."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, MultiChoice, Slider
from workbench.diffusion import GRIDS, SOLVERS, VPSchedule
from workbench.diffusion.study import SolverStudy, solver_names
from workbench.metrics import empirical_order
from workbench.toy import GaussianMixture
from workbench.toy.fields import evaluation_grid, plot_bounds

PROBLEMS = {
    "8-mode ring (std 0.1)": GaussianMixture.ring,
    "unequal widths and weights": GaussianMixture.unequal,
}
# "default" rather than None: ipywidgets reads a None value as "nothing selected"
ORDERS = {"solver default": "default", "1": 1, "2": 2, "3": 3}
COLORS = ["#e45756", "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d", "#17becf", "#bab0ac"]
PANEL = 430
N_SHOWN = 1500  # samples drawn per solver: enough to see mass, few enough to see through
N_PATHS = 24


@dataclass(frozen=True)
class SolverView:
    problem: str
    study: SolverStudy
    solvers: tuple[str, ...]
    orders: dict[str, int]
    steps: int
    grid: str
    samples: dict[str, np.ndarray]
    paths: dict[str, np.ndarray]  # (steps + 1, N_PATHS, 2)
    curves: pd.DataFrame
    table: pd.DataFrame
    nfe: dict[str, int]


@lru_cache(maxsize=4)
def study_for(problem: str, n_samples: int, seed: int) -> SolverStudy:
    return SolverStudy(PROBLEMS[problem](), VPSchedule.linear_ddpm(), n_samples, seed)


def order_for(solver: str, requested: int | str) -> int:
    """The requested order where the solver has it, else the solver's default."""
    spec = SOLVERS[solver]
    return requested if requested in spec.orders else spec.default_order


def solver_steps_explorer(n_samples: int = 4000, seed: int = 0) -> Explorer:
    names = solver_names()
    defaults = tuple(s for s in ("ddim", "dpmpp_2m", "unipc_bh2", "dpm_solver_v3") if s in names)

    def compute(problem: str, solvers: tuple, steps: int, grid: str, order) -> SolverView:
        study = study_for(problem, n_samples, seed)
        orders = {s: order_for(s, order) for s in solvers}
        results = {s: study.solve(s, steps, grid, orders[s]) for s in solvers}
        curves = pd.concat([study.error_curve(s, grid, orders[s]) for s in solvers])
        return SolverView(
            problem=problem,
            study=study,
            solvers=solvers,
            orders=orders,
            steps=steps,
            grid=grid,
            samples={s: r.x[:N_SHOWN].numpy() for s, r in results.items()},
            paths={
                s: np.stack([p[:N_PATHS].numpy() for p in r.trajectory]) for s, r in results.items()
            },
            curves=curves,
            table=study.table(solvers, grid),
            nfe={s: r.nfe for s, r in results.items()},
        )

    return Explorer(
        title="Solver steps on an exact mixture",
        description=(
            f"Every solver starts from the same {n_samples:,} noise draws; errors are mean L2 "
            "distances to the exact probability-flow ODE solution (DOP853, tolerance 1e-11)."
        ),
        controls=[
            Choice("problem", "problem", list(PROBLEMS), "8-mode ring (std 0.1)"),
            MultiChoice("solvers", "solvers", names, defaults),
            Slider("steps", "solver steps", 1, 50, 10, integer=True),
            Choice("grid", "time grid", list(GRIDS), "logsnr"),
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


@lru_cache(maxsize=4)
def _density_image(problem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mixture = PROBLEMS[problem]()
    bounds = plot_bounds(mixture, margin=3.0, at_least=2.5)
    xs, ys, points = evaluation_grid(bounds, 150)
    return xs.numpy(), ys.numpy(), mixture.log_prob(points).reshape(150, 150).numpy()


def _sample_traces(view: SolverView) -> list[dict]:
    xs, ys, log_p = _density_image(view.problem)
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


def _bounds(view: SolverView):
    xs, ys, _ = _density_image(view.problem)
    return (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))


def _sample_layout(view: SolverView) -> dict:
    return {
        **figures.square_axes(_bounds(view)),
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.08},
        "title": {"text": f"samples after {view.steps} steps over the true log p_0"},
    }


def _path_traces(view: SolverView) -> list[dict]:
    reference = view.study.reference[:N_PATHS].numpy()
    traces = [figures.points(reference, name="exact endpoint", color="black", size=7, opacity=0.9)]
    for color, solver in zip(COLORS, view.solvers, strict=False):
        traces.append(figures.polylines(view.paths[solver], name=solver, color=color, markers=True))
    return traces


def _path_layout(view: SolverView) -> dict:
    return {
        **figures.square_axes((-3.5, 3.5, -3.5, 3.5)),
        "showlegend": False,
        "title": {"text": f"{N_PATHS} trajectories, x_T to x_0"},
    }


def _error_traces(view: SolverView) -> list[dict]:
    traces = []
    for color, solver in zip(COLORS, view.solvers, strict=False):
        curve = view.curves[view.curves.solver == solver]
        fit = empirical_order(curve.nfe.to_numpy(), curve.error.to_numpy(), asymptotic="auto")
        traces.append(
            {
                "type": "scatter",
                "x": curve.nfe.to_numpy(),
                "y": curve.error.to_numpy(),
                "mode": "lines+markers",
                "name": f"{solver} (order {view.orders[solver]}, fitted {fit.order:.2f})",
                "line": {"color": color},
            }
        )
        current = curve[curve.steps == view.steps]
        if len(current):
            traces.append(
                {
                    "type": "scatter",
                    "x": current.nfe.to_numpy(),
                    "y": current.error.to_numpy(),
                    "mode": "markers",
                    "showlegend": False,
                    "marker": {
                        "color": color,
                        "size": 13,
                        "symbol": "circle-open",
                        "line": {"width": 2},
                    },
                }
            )
    return traces


def _error_layout(view: SolverView) -> dict:
    return {
        "xaxis": {"type": "log", "title": {"text": "NFE (model calls)"}},
        "yaxis": {"type": "log", "title": {"text": "mean L2 error to the exact solution"}},
        "legend": {"x": 0.01, "y": 0.01, "bgcolor": "rgba(255,255,255,0.7)"},
        "title": {"text": f"error vs NFE, {view.grid} grid"},
    }


def _table_traces(view: SolverView) -> list[dict]:
    table = view.table
    cells = [list(table.index)] + [[f"{v:.2e}" for v in table[c]] for c in table.columns]
    # Non-breaking spaces: plotly 7's FigureWidget in JupyterLab drops table strings that
    # contain a plain space (seen for "NFE 5"; static plotly renders them fine).
    header = [name.replace(" ", "\u00a0") for name in ("solver", *table.columns)]
    return [{"type": "table", "header": {"values": header}, "cells": {"values": cells}}]
