"""Notebook 09's explorer: problem, measurement noise, guidance method, strength and steps of
training-free guidance for a linear inverse problem, against the exact posterior.

It declares the controls, asks `workbench.inverse.study.inverse_view` for what a setting shows
(computed and cached there) and builds the panels. Only computed settings are offered.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, Slider, number_text
from widgets.explorers.noised_mixture import plane_layout
from workbench.inverse.problems import PROBLEMS
from workbench.inverse.study import (
    METHODS,
    InverseView,
    inverse_size,
    inverse_view,
    inverse_view_cost,
    method_label,
)

PANEL = 430
COLORS = figures.color_map(METHODS)


def inverse_problems_app(smoke: bool = False) -> Explorer:
    """The served explorer at notebook 09's SMOKE or full size (sizes from the study)."""
    return inverse_problems_explorer(smoke=smoke)


def inverse_problems_explorer(smoke: bool = False, seed: int = 0) -> Explorer:
    size = inverse_size(smoke)

    def compute(strength, method, steps, problem, noise) -> InverseView:
        return inverse_view(problem, noise, method, strength, steps, smoke, seed)

    def cost(strength, method, steps, problem, noise) -> float | None:
        return inverse_view_cost(problem, noise, method, strength, steps, smoke, seed)

    return Explorer(
        title="Training-free guidance against the exact posterior",
        description=(
            f"Every run starts from the same {size.n:,} noise draws and solves with "
            "DPM-Solver++(2M); distances are sliced Wasserstein to exact posterior draws, in "
            "multiples of the floor two exact sets of the same size reach. The exact method "
            "is exact at strength 1 and is shown there only."
        ),
        controls=[
            Slider(
                "strength",
                "guidance strength",
                size.strengths[0],
                size.strengths[-1],
                0.5,  # inside both sizes, with a stop above it to move to
                stops=size.strengths,
            ),
            Choice("method", "method", {method_label(m): m for m in METHODS}, "dps"),
            Choice("steps", "solver steps (NFE)", list(size.steps), size.steps[-1]),
            Choice(
                "problem",
                "problem",
                {PROBLEMS.label(p): p for p in size.problems},
                size.problems[0],
            ),
            Choice("noise", "measurement noise std", list(size.noise_stds), size.noise_stds[0]),
        ],
        compute=compute,
        cost=cost,
        panels=[
            FigurePanel("samples", "samples", _sample_traces, _sample_layout, height=PANEL),
            FigurePanel("distance", "distance", _distance_traces, _distance_layout, height=PANEL),
            FigurePanel("terms", "term error", _term_traces, _term_layout, height=PANEL, wide=True),
        ],
    )


def _sample_traces(view: InverseView) -> list[dict]:
    xs, ys, log_p = view.density
    traces = [
        figures.heatmap(
            xs, ys, np.maximum(log_p, log_p.max() - 12), name="log p(x | y)", colorscale="Greys"
        ),
        figures.points(
            view.exact, name="exact posterior draws", color="#1f77b4", size=2, opacity=0.3
        ),
    ]
    if view.run.samples is not None:
        traces.append(
            figures.points(
                view.run.samples, name=method_label(view.method), color="#d62728", size=3
            )
        )
    return traces


def _sample_layout(view: InverseView) -> dict:
    xs, ys, _ = view.density
    shown = "diverged"
    if not view.run.diverged:
        floor = float(view.curves.floor_max.iloc[0])
        shown = f"SW {view.run.sw:.3g} to the exact posterior ({view.run.sw / floor:.2g} floors)"
    title = f"{method_label(view.method)}, strength {number_text(view.strength)}: {shown}"
    return {
        **plane_layout((float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])), title),
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.15},
    }


def _distance_traces(view: InverseView) -> list[dict]:
    traces = []
    for method, rows in view.curves.groupby("method", sort=False):
        rows = rows.dropna(subset=["ratio"])
        mode = "markers" if method == "exact" else "lines+markers"
        traces.append(
            {
                "type": "scatter",
                "x": rows.strength.to_numpy(),
                "y": rows.ratio.to_numpy(),
                "mode": mode,
                "name": method_label(method),
                "line": {"color": COLORS[method], "width": 3 if method == view.method else 1.5},
                "marker": {"size": 10 if method == "exact" else 6},
            }
        )
    if not view.run.diverged:
        strength = 1.0 if view.method == "exact" else view.strength
        ratio = view.curves[
            (view.curves.method == view.method) & (view.curves.strength == strength)
        ].ratio
        traces.append(figures.ring([strength], ratio.to_numpy(), color=COLORS[view.method]))
    traces.append(
        {
            "type": "scatter",
            "x": [view.curves.strength.min(), view.curves.strength.max()],
            "y": [1, 1],
            "mode": "lines",
            "name": "the floor (exact sets)",
            "line": {"color": "#999999", "dash": "dot"},
        }
    )
    return traces


def _distance_layout(view: InverseView) -> dict:
    return {
        "xaxis": {"title": {"text": "guidance strength"}},
        "yaxis": figures.log_axis(
            "sliced W to the exact posterior / floor",
            [*view.curves.ratio.dropna().to_numpy().tolist(), 1],
        ),
        "legend": {"orientation": "h", "y": -0.2},
        "title": {"text": f"distance per strength at {view.steps} NFE"},
    }


def _term_traces(view: InverseView) -> list[dict]:
    traces = []
    for method, rows in view.terms.groupby("method", sort=False):
        traces.append(
            {
                "type": "scatter",
                "x": (rows.sigma / rows.alpha).to_numpy(),
                "y": rows.relative.to_numpy(),
                "mode": "lines+markers",
                "name": method_label(method),
                "line": {"color": COLORS[method], "width": 3 if method == view.method else 1.5},
            }
        )
    return traces


def _term_layout(view: InverseView) -> dict:
    terms = view.terms
    return {
        "xaxis": figures.log_axis("noise level σ/α", terms.sigma / terms.alpha),
        "yaxis": figures.log_axis("E|g − g*|² / E|g*|²", terms.relative),
        "legend": {"orientation": "h", "y": -0.2},
        "title": {
            "text": f"guidance-term error at strength {number_text(view.strength)} (the "
            "exact term is 0)"
        },
    }
