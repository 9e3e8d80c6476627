"""Notebook 06's explorer: steps, path, reflow rounds, timestep density and model of a flow on
an exact mixture, measured against the exact flow.

It declares the controls, asks `workbench.flows.study.flows_view` for what a setting shows
(samples, trajectories and error curves, computed and cached there) and builds the panels.
Only computed settings are offered: another combination is a one-line message, and the steps
slider moves between the computed step counts.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, Slider
from widgets.explorers.noised_mixture import plane_layout
from workbench.diffusion.study_findings import count_text
from workbench.flows.study import (
    FLOW_DENSITIES,
    FLOW_MODELS,
    FLOW_PATHS,
    N_PATHS,
    FlowSetting,
    FlowsView,
    flow_size,
    flows_view,
    flows_view_cost,
    offered_settings,
    setting_for,
)

PANEL = 430
MAX_ROUNDS = 3
# One color per setting of the full size, the same in every panel whatever is selected.
COLORS = figures.color_map(s.label for s in offered_settings(smoke=False))
EXACT = "black"  # the exact velocity: the reference every other curve is measured against


def flows_app(smoke: bool = False) -> Explorer:
    """The served explorer at notebook 06's SMOKE or full size (sizes from the study)."""
    return flows_explorer(smoke=smoke)


def flows_explorer(smoke: bool = False, seed: int = 0) -> Explorer:
    size = flow_size(smoke)

    def setting(path: str, rounds: int, density: str, model: str) -> FlowSetting:
        return setting_for(model, path, rounds, density)

    def compute(steps: float, path: str, rounds: int, density: str, model: str) -> FlowsView:
        return flows_view(setting(path, rounds, density, model), steps, smoke, seed)

    def cost(steps: float, path: str, rounds: int, density: str, model: str) -> float | None:
        return flows_view_cost(setting(path, rounds, density, model), smoke, seed)

    return Explorer(
        title="Flows on an exact mixture",
        description=(
            f"Every model starts from the same {size.n_samples:,} noise draws and takes Euler "
            "steps in t; errors are sliced Wasserstein distances to exact samples of the "
            "mixture. The steps slider moves between the computed step counts "
            f"({', '.join(map(str, size.steps))})."
        ),
        controls=[
            # the computed step counts only: each arrow-key press reaches the next one
            Slider(
                "steps", "solver steps (NFE)", size.steps[0], size.steps[-1], 5, stops=size.steps
            ),
            Choice("path", "probability path", FLOW_PATHS.options(size.paths), "rectified"),
            Slider("rounds", "reflow rounds", 0, MAX_ROUNDS, 0, integer=True),
            Choice(
                "density",
                "timestep density (training)",
                FLOW_DENSITIES.options(size.training.densities),
                "uniform",
            ),
            Choice("model", "model", FLOW_MODELS.options(), "exact"),
        ],
        compute=compute,
        cost=cost,
        panels=[
            FigurePanel("samples", "samples", _sample_traces, _sample_layout, height=PANEL),
            FigurePanel("paths", "trajectories", _path_traces, _path_layout, height=PANEL),
            FigurePanel(
                "errors", "error vs NFE", _error_traces, _error_layout, height=PANEL, wide=True
            ),
        ],
    )


def _color(setting: FlowSetting) -> str:
    return EXACT if setting.model == "exact" else COLORS[setting.label]


def _drawn_color(setting: FlowSetting) -> str:
    """Samples and steps in the plane: the exact velocity's black would vanish in the density
    and among the black endpoints, so its are red there."""
    return "#d62728" if setting.model == "exact" else _color(setting)


def _bounds(view: FlowsView):
    xs, ys, _ = view.density
    return (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))


def _sample_traces(view: FlowsView) -> list[dict]:
    xs, ys, log_p = view.density
    setting = view.run.setting
    return [
        figures.heatmap(
            xs, ys, np.maximum(log_p, log_p.max() - 12), name="log p_0", colorscale="Greys"
        ),
        figures.points(
            view.run.samples[view.steps],
            name=setting.label,
            color=_drawn_color(setting),
            size=2.5,
            opacity=0.5,
        ),
    ]


def _sample_layout(view: FlowsView) -> dict:
    title = f"{view.run.setting.label}: {count_text(view.steps, 'step')}, over the true log p_0"
    return plane_layout(_bounds(view), title)


def _path_traces(view: FlowsView) -> list[dict]:
    run, color = view.run, _drawn_color(view.run.setting)
    return [
        figures.polylines(run.ode_path, name="ODE trajectory", color="#999999", width=1.5),
        figures.polylines(
            run.paths[view.steps],
            name=f"{count_text(view.steps, 'Euler step')}",
            color=color,
            markers=True,
        ),
        figures.points(run.ode_path[-1], name="ODE endpoint", color="black", size=6, opacity=0.9),
    ]


def _path_layout(view: FlowsView) -> dict:
    return {
        **plane_layout((-3.5, 3.5, -3.5, 3.5), f"{N_PATHS} trajectories from the same noise"),
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.15},
    }


def _error_traces(view: FlowsView) -> list[dict]:
    traces = []
    for run in view.compared:
        setting = run.setting
        exact = setting.model == "exact"
        selected = setting == view.run.setting
        traces.append({
            "type": "scatter",
            "x": run.curve.nfe.to_numpy(),
            "y": run.curve.sw.to_numpy(),
            "mode": "lines+markers",
            "name": setting.label + (" (no model error)" if exact else ""),
            "line": {"color": _color(setting), "dash": "dash" if exact else "solid",
                     "width": 3 if selected else 1.5},
        })  # fmt: skip
    current = view.run.curve[view.run.curve.steps == view.steps]
    traces.append(
        figures.ring(current.nfe.to_numpy(), current.sw.to_numpy(), color=_color(view.run.setting))
    )
    nfes = [int(view.compared[0].curve.nfe.min()), int(view.compared[0].curve.nfe.max())]
    traces.append({
        "type": "scatter", "x": nfes, "y": [view.run.sw_floor] * 2, "mode": "lines",
        "name": "exact samples (the exact ODE endpoints)",
        "line": {"color": "#999999", "dash": "dot"},
    })  # fmt: skip
    return traces


def _error_layout(view: FlowsView) -> dict:
    errors = np.concatenate(
        [run.curve.sw.to_numpy() for run in view.compared] + [[view.run.sw_floor]]
    )
    nfes = np.concatenate([run.curve.nfe.to_numpy() for run in view.compared])
    path = FLOW_PATHS.label(view.run.setting.path)
    return {
        "xaxis": figures.log_axis("NFE (model calls)", nfes),
        "yaxis": figures.log_axis("sliced Wasserstein to exact samples", errors),
        "title": {"text": f"error vs NFE on the {path} path"},
    }
