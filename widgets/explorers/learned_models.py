"""Notebook 08's explorer: solver, steps and training budget of a denoiser trained on the exact
ring, with its error split into the model's part and the steps' part.

It declares the controls, asks `workbench.models.study.models_view` for what a setting shows
(samples, the split at every step count, the networks' score errors; computed and cached
there) and builds the panels. The steps slider moves between the computed step counts.
"""

from __future__ import annotations

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, Slider, number_text
from widgets.explorers.noised_mixture import plane_layout
from workbench.diffusion.sampling import SOLVERS
from workbench.diffusion.study_findings import count_text
from workbench.models.study import (
    EXACT,
    SCALES,
    ModelsView,
    budget_id,
    model_ids,
    model_label,
    models_size,
    models_view,
    models_view_cost,
)

PANEL = 430
# one color per model id of either size, the same in every panel whatever is selected
COLORS = figures.color_map((*model_ids(smoke=False)[1:], *model_ids(smoke=True)[1:])) | {
    EXACT: "black"
}
PARTS = (  # the split's terms, as stacked shares of the total (see workbench.models.decomposition)
    ("model", "model error (infinitely many steps would still miss it)", "#1f77b4"),
    ("step", "step error (the solver on the model's own ODE)", "#ff7f0e"),
    ("interaction", "interaction 2E⟨a, b⟩ (negative: they cancel)", "#2ca02c"),
)


def learned_models_app(smoke: bool = False) -> Explorer:
    """The served explorer at notebook 08's SMOKE or full size (sizes from the study)."""
    return learned_models_explorer(smoke=smoke)


def learned_models_explorer(smoke: bool = False, seed: int = 0) -> Explorer:
    size = models_size(smoke)

    def compute(steps: float, solver: str, model: str, scale: float) -> ModelsView:
        return models_view(model, solver, steps, scale, smoke, seed)

    def cost(steps: float, solver: str, model: str, scale: float) -> float | None:
        return models_view_cost(model, smoke, seed)

    return Explorer(
        title="Trained denoisers: model error against step error",
        description=(
            f"Every model starts from the same {size.n_points:,} noise draws; errors are mean "
            "squared distances to where the exact model's ODE takes the same noise, split into "
            "the model's part and the solver's part. The steps slider moves between the "
            f"computed step counts ({', '.join(map(str, size.steps))}). The guidance scale "
            "moves CFG and autoguidance of the conditional networks on notebook 02's two-class "
            "mixture."
        ),
        controls=[
            Slider(
                "steps", "solver steps (NFE)", size.steps[0], size.steps[-1], 10, stops=size.steps
            ),
            Choice("solver", "solver", {SOLVERS.label(s): s for s in size.solvers}, "dpmpp_2m"),
            Choice(
                "model",
                "model (training steps × width)",
                {model_label(m): m for m in model_ids(smoke)},
                budget_id(size.default),
            ),
            Slider("scale", "guidance scale w", SCALES[0], SCALES[-1], 2.0, stops=SCALES),
        ],
        compute=compute,
        cost=cost,
        panels=[
            FigurePanel("samples", "samples", _sample_traces, _sample_layout, height=PANEL),
            FigurePanel("scores", "score error", _score_traces, _score_layout, height=PANEL),
            FigurePanel(
                "split", "error split", _split_traces, _split_layout, height=PANEL, wide=True
            ),
            FigurePanel("guided", "guided samples", _guided_traces, _guided_layout, height=PANEL),
            FigurePanel(
                "matched", "matched distance", _matched_traces, _matched_layout, height=PANEL
            ),
        ],
    )


def _sample_traces(view: ModelsView) -> list[dict]:
    xs, ys, log_p = view.density
    return [
        figures.heatmap(
            xs, ys, np.maximum(log_p, log_p.max() - 12), name="log p_0", colorscale="Greys"
        ),
        figures.points(
            view.fine, name="its own ODE's endpoint", color="#1f77b4", size=2.5, opacity=0.35
        ),
        figures.points(
            view.samples,
            name=f"{model_label(view.model_id)}, {count_text(view.steps, 'step')}",
            color="#d62728",
            size=3,
            opacity=0.6,
        ),
    ]


def _sample_layout(view: ModelsView) -> dict:
    xs, ys, _ = view.density
    title = f"{SOLVERS.label(view.solver)}, {count_text(view.steps, 'step')}"
    return {
        **plane_layout((float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])), title),
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.15},
    }


def _split_traces(view: ModelsView) -> list[dict]:
    rows = view.rows
    nfe = [str(n) for n in rows.nfe]
    total = rows.total.to_numpy()
    traces = [
        {
            "type": "bar",
            "x": nfe,
            "y": rows[part].to_numpy() / total,
            "name": name,
            "marker": {"color": color},
            "hovertemplate": "%{y:.3f} of the total<extra></extra>",
        }
        for part, name, color in PARTS
    ]
    traces.append(
        {
            "type": "scatter",
            "x": nfe,
            "y": total,
            "yaxis": "y2",
            "mode": "lines+markers",
            "name": "total error E|x_k − x*|² (right axis)",
            "line": {"color": "black"},
        }
    )
    current = rows[rows.steps == view.steps]
    traces.append(
        {
            **figures.ring(
                [str(n) for n in current.nfe], current.total.to_numpy(), color="#d62728"
            ),
            "yaxis": "y2",
        }
    )
    return traces


def _split_layout(view: ModelsView) -> dict:
    return {
        "barmode": "relative",
        "xaxis": {"title": {"text": "NFE (model calls)"}, "type": "category"},
        "yaxis": {"title": {"text": "share of the total error"}},
        "yaxis2": {
            **figures.log_axis("total error", view.rows.total),
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
        },
        "legend": {"orientation": "h", "y": -0.2},
        "title": {"text": f"{SOLVERS.label(view.solver)} on the {model_label(view.model_id)}"},
    }


def _score_traces(view: ModelsView) -> list[dict]:
    traces = []
    for model_id, rows in view.scores.groupby("model_id", sort=False):
        selected = model_id == view.model_id
        traces.append(
            {
                "type": "scatter",
                "x": rows.ve_sigma.to_numpy(),
                "y": rows.relative.to_numpy(),
                "mode": "lines+markers",
                "name": model_label(model_id),
                "line": {"color": COLORS[model_id], "width": 3.5 if selected else 1.5},
            }
        )
    return traces


def _score_layout(view: ModelsView) -> dict:
    scores = view.scores
    return {
        "xaxis": figures.log_axis("noise level σ/α", scores.ve_sigma),
        "yaxis": figures.log_axis("E|s_θ − s*|² / E|s*|²", scores.relative),
        "legend": {"orientation": "h", "y": -0.2},
        "title": {"text": "the networks' relative score error (the exact model's is 0)"},
    }


METHOD_COLORS = {"cfg": "#1f77b4", "autoguidance": "#d62728"}
METHOD_LABELS = {"cfg": "CFG", "autoguidance": "autoguidance (weaker network)"}


def _guided_traces(view: ModelsView) -> list[dict]:
    xs, ys, log_p = view.class_density
    traces = [
        figures.heatmap(
            xs, ys, np.maximum(log_p, log_p.max() - 12), name="log p(x | c)", colorscale="Greys"
        )
    ]
    for method, run in view.guided.items():
        traces.append(
            figures.points(
                run.samples, name=METHOD_LABELS[method], color=METHOD_COLORS[method], size=3
            )
        )
    return traces


def _guided_layout(view: ModelsView) -> dict:
    xs, ys, _ = view.class_density
    precisions = ", ".join(
        f"{METHOD_LABELS[m].split(' ')[0]} {r.precision:.3f}" for m, r in view.guided.items()
    )
    title = f"w = {number_text(view.scale)} over the exact p(x | c); precision: {precisions}"
    return {
        **plane_layout((float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])), title),
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.15},
    }


def _matched_traces(view: ModelsView) -> list[dict]:
    traces = []
    for method, rows in view.guided_table.groupby("method", sort=False):
        rows = rows.dropna(subset=["sw_matched"])
        traces.append(
            {
                "type": "scatter",
                "x": rows.precision.to_numpy(),
                "y": rows.sw_matched.to_numpy(),
                "mode": "lines+markers",
                "name": METHOD_LABELS[method],
                "text": [f"w = {number_text(w)}" for w in rows.scale],
                "line": {"color": METHOD_COLORS[method]},
            }
        )
    for method, run in view.guided.items():
        if np.isfinite(run.sw_matched):
            traces.append(
                figures.ring([run.precision], [run.sw_matched], color=METHOD_COLORS[method])
            )
    floor = view.guided_table.dropna(subset=["sw_floor"])
    traces.append(
        {
            "type": "scatter",
            "x": floor.precision.to_numpy(),
            "y": floor.sw_floor.to_numpy(),
            "mode": "markers",
            "name": "two exact sample sets (the floor)",
            "marker": {"color": "#999999", "symbol": "x"},
        }
    )
    return traces


def _matched_layout(view: ModelsView) -> dict:
    return {
        "xaxis": {"title": {"text": "class precision (mean exact p(c | x))"}},
        "yaxis": figures.log_axis(
            "sliced W to the tilted target of equal precision",
            view.guided_table[["sw_matched", "sw_floor"]].to_numpy(),
        ),
        "legend": {"orientation": "h", "y": -0.2},
        "title": {"text": "distance to the exact target at the same precision (CFG past it: none)"},
    }
