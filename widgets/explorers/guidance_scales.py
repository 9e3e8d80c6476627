"""Notebook 02's explorer: guidance scale x method x solver x steps on an exact class-conditional
mixture, against the exact tilted target p(x | c)^w p(x)^(1-w). The study and everything shown
are computed in `workbench.diffusion` (`guidance_views`); this module holds the controls, the
panels and the notebook's figures, which take those results."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from widgets import figures
from widgets.explorer import Choice, Explorer, FigurePanel, Slider
from workbench.diffusion.guidance import GUIDANCE
from workbench.diffusion.guidance_experiments import study_for
from workbench.diffusion.guidance_study import (
    HEATMAP_NFES,
    HEATMAP_SCALES,
    HEATMAP_SOLVERS,
    GuidanceStudy,
    study_size,
)
from workbench.diffusion.guidance_targets import PLOT_HALF_WIDTH
from workbench.diffusion.guidance_views import (
    CURVE_SCALES,
    GuidanceView,
    SamplePanel,
    guidance_view,
)
from workbench.diffusion.smc import ParticleResult

PANEL = 430
LOG_DENSITY_DEPTH = 10.0
METHOD_COLOR, TARGET_COLOR = "#e45756", "#4c78a8"
CLASS_ERROR_FLOOR = 1e-9
ERROR_RANGE = (-3.5, 0.5)  # log10 colour range of the error heatmaps


def guidance_explorer(
    study: GuidanceStudy,
    *,
    heatmap_scales=HEATMAP_SCALES,
    heatmap_nfes=HEATMAP_NFES,
    curve_scales=CURVE_SCALES,
) -> Explorer:
    """The explorer over `study`; the grids set what the error heatmap and the
    precision-diversity curve cover."""

    def compute(scale: float, method: str, solver: str, steps: int) -> GuidanceView:
        return guidance_view(
            study,
            method,
            scale,
            solver,
            steps,
            curve_scales=curve_scales,
            heatmap_scales=heatmap_scales,
            heatmap_nfes=heatmap_nfes,
        )

    return Explorer(
        title="Guidance scales on an exact class-conditional mixture",
        description=(
            "Class 1 of two overlapping classes (4 Gaussian components), "
            f"{study.n_samples:,} samples from fixed noise. The grey image is the "
            "exact tilted target p(x|c)^w p(x)^(1-w) (autoguidance: p_good^w p_bad^(1-w)); "
            "errors are mean L2 distances to the exact guided ODE solution. Particle methods "
            "(SMC, SVDD) step their own reverse SDE and ignore the solver. First visits of a "
            "method or solver compute exact references (seconds; DPM-Solver-v3 also its "
            "statistics per scale), then everything is selected from a cache."
        ),
        controls=[
            Slider("scale", "guidance scale w", 0.0, 15.0, 3.0, step=0.5),
            Choice("method", "guidance method", GUIDANCE.options(), "cfg"),
            Choice("solver", "ODE solver", list(HEATMAP_SOLVERS), "dpmpp_2m"),
            Slider("steps", "solver steps (NFE)", 1, 200, 20, integer=True),
        ],
        compute=compute,
        panels=[
            FigurePanel(
                "samples", "samples", _sample_traces, _sample_layout, height=PANEL, width=PANEL
            ),
            FigurePanel(
                "tradeoff",
                "precision vs diversity",
                _tradeoff_traces,
                _tradeoff_layout,
                height=PANEL,
                width=PANEL,
            ),
            FigurePanel(
                "errors", "solver error", _error_traces, _error_layout, height=380, width=520
            ),
            FigurePanel("ess", "FK-SMC", _ess_traces, _ess_layout, height=300, width=520),
        ],
    )


# ---------------------------------------------------------------- trace builders
def density_trace(density: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """log p_w on its grid, clipped a fixed depth below its maximum (grey, darker = likelier)."""
    xs, ys, log_p = (np.asarray(v) for v in density)
    top = float(log_p.max())
    return figures.heatmap(
        xs,
        ys,
        np.maximum(log_p, top - LOG_DENSITY_DEPTH),
        name="log p_w (tilted target)",
        colorscale="Greys",
        zmin=top - LOG_DENSITY_DEPTH,
        zmax=top,
    )


def curve_trace(frame: pd.DataFrame, name: str, color: str, dash: str = "solid") -> dict:
    """Diversity against class error 1 - E[p(c | x)] (drawn on a reversed log axis), w as text."""
    return {
        "type": "scatter",
        "x": class_error(frame),
        "y": frame["spread"].to_numpy(),
        "mode": "lines+markers+text",
        "text": [f"{w:g}" for w in frame.index],
        "textposition": "top center",
        "textfont": {"size": 9, "color": color},
        "name": name,
        "line": {"color": color, "dash": dash},
    }


def class_error(frame: pd.DataFrame) -> np.ndarray:
    """1 - mean posterior, floored at 1e-9 for the log axis (CFG at w = 15 reaches ~1e-12)."""
    return np.maximum(1.0 - frame["mean posterior"].to_numpy(dtype=float), CLASS_ERROR_FLOOR)


TRADEOFF_AXES = {
    "xaxis": {
        "type": "log",
        "autorange": "reversed",
        "title": {"text": "class error 1 − E p(c | x)  (more precise →)"},
    },
    "yaxis": {"title": {"text": "diversity: within-class spread"}},
}


def error_heatmap_trace(errors: pd.DataFrame, showscale: bool = True) -> dict:
    """Solver error over scale (rows) x NFE (columns), log colour, value printed per cell."""
    values = errors.to_numpy(dtype=float)
    return {
        "type": "heatmap",
        "x": [str(n) for n in errors.columns],
        "y": [f"{w:g}" for w in errors.index],
        "z": np.log10(values),
        "text": [[_error_text(v) for v in row] for row in values],
        "texttemplate": "%{text}",
        "textfont": {"size": 9},
        "colorscale": "Viridis",
        "zmin": ERROR_RANGE[0],
        "zmax": ERROR_RANGE[1],
        "showscale": showscale,
        "colorbar": {"title": {"text": "log10 error"}},
        "hoverinfo": "skip",
    }


def _error_text(value: float) -> str:
    return "div." if math.isnan(value) else f"{value:.0e}".replace("e-0", "e-")


def ess_traces(result: ParticleResult, schedule, name: str = "ESS / N", color: str = "#54a24b"):
    """ESS / N before resampling at each step against log-SNR, resampling steps marked."""
    lambdas = schedule.lambda_(result.ts[1:]).numpy()
    ess, resampled = result.ess.numpy(), result.resampled.numpy()
    return [
        {
            "type": "scatter",
            "x": lambdas,
            "y": ess,
            "mode": "lines",
            "name": name,
            "line": {"color": color},
        },
        {
            "type": "scatter",
            "x": lambdas[resampled],
            "y": ess[resampled],
            "mode": "markers",
            "name": f"{name}: resampled",
            "marker": {"color": color, "size": 8, "symbol": "x", "line": {"width": 1}},
            "showlegend": False,
        },
    ]


ESS_AXES = {
    "xaxis": {"title": {"text": "log-SNR λ (noise → data)"}},
    "yaxis": {"title": {"text": "ESS / N before resampling"}, "range": [0, 1.05]},
}


# ---------------------------------------------------------------- the explorer's panels
def _sample_traces(view: GuidanceView) -> list[dict]:
    traces = [density_trace(view.panel.density)]
    if view.panel.samples is not None:
        traces.append(
            figures.points(
                view.panel.samples, name=view.method, color=METHOD_COLOR, size=2.5, opacity=0.5
            )
        )
    return traces


def _sample_layout(view: GuidanceView) -> dict:
    xs, ys, _ = view.panel.density
    bounds = (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))
    if view.panel.diverged:
        text = f"{view.method}, w={view.scale:g}: diverged ({view.panel.diverged[:60]})"
    else:
        m, t = view.metrics, view.target_metrics
        spread = "n/a (no class samples)" if math.isnan(m["spread"]) else f"{m['spread']:.2f}"
        text = (
            f"w={view.scale:g}: precision {m['precision']:.3f}, spread {spread} "
            f"(target {t['spread']:.2f})<br>sliced W to the target {m['sliced W']:.3f} "
            f"(two exact sets: {t['sliced W']:.3f})"
        )
    return {**figures.square_axes(bounds), "title": {"text": text, "font": {"size": 13}}}


def _tradeoff_traces(view: GuidanceView) -> list[dict]:
    target_name = {"guidance": "exact tilted target", "autoguidance": "exact p_good^w p_bad^(1-w)"}[
        view.target
    ]
    traces = [
        curve_trace(view.target_curve, target_name, TARGET_COLOR, "dot"),
        curve_trace(view.curve, view.method, METHOD_COLOR),
    ]
    if not view.panel.diverged:
        current = pd.DataFrame([view.metrics], index=[view.scale])
        traces.append(
            {
                "type": "scatter",
                "x": class_error(current),
                "y": current["spread"].to_numpy(),
                "mode": "markers",
                "name": f"w = {view.scale:g}",
                "marker": {"size": 14, "symbol": "circle-open", "line": {"width": 2}},
                "showlegend": False,
            }
        )
    return traces


def _tradeoff_layout(view: GuidanceView) -> dict:
    return {
        **TRADEOFF_AXES,
        "legend": {"x": 0.01, "y": 0.01, "bgcolor": "rgba(255,255,255,0.7)"},
        "title": {
            "text": f"precision vs diversity as w sweeps (labels: w), {view.steps} steps",
            "font": {"size": 13},
        },
    }


def _error_traces(view: GuidanceView) -> list[dict]:
    traces = [error_heatmap_trace(view.errors)]
    if view.steps in view.errors.columns and view.scale in view.errors.index:
        traces.append(
            {
                "type": "scatter",
                "x": [str(view.steps)],
                "y": [f"{view.scale:g}"],
                "mode": "markers",
                "marker": {
                    "size": 26,
                    "symbol": "square-open",
                    "color": "white",
                    "line": {"width": 2},
                },
                "showlegend": False,
                "hoverinfo": "skip",
            }
        )
    return traces


def _error_layout(view: GuidanceView) -> dict:
    if view.particle:
        text = f"cfg + {view.solver} error to the exact ODE solution ({view.method}: an SDE)"
    else:
        text = f"{view.method} + {view.solver}: error to the exact guided ODE solution"
    return {
        "xaxis": {"title": {"text": "NFE"}, "type": "category"},
        "yaxis": {"title": {"text": "guidance scale w"}, "type": "category"},
        "title": {"text": text, "font": {"size": 13}},
    }


def _ess_traces(view: GuidanceView) -> list[dict]:
    return ess_traces(view.smc, view.schedule)


def _ess_layout(view: GuidanceView) -> dict:
    count = int(view.smc.resampled.sum())
    return {
        **ESS_AXES,
        "showlegend": False,
        "title": {
            "text": f"FK-SMC at w={view.scale:g}, {view.steps} steps: resampled {count}x "
            f"(marked), final ESS {view.smc.final_ess:.2f}",
            "font": {"size": 13},
        },
    }


# ---------------------------------------------------------------- the notebook's figures
def samples_figure(panels: list[SamplePanel], name: str):
    """Samples over the tilted target's density, one square panel per scale
    (`guidance_views.sample_panels`)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(1, len(panels), subplot_titles=[f"w = {p.scale:g}" for p in panels])
    for column, panel in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(density_trace(panel.density)), 1, column)
        if panel.samples is not None:
            points = figures.points(panel.samples, name=name, color=METHOD_COLOR, size=2)
            fig.add_trace(go.Scattergl(points), 1, column)
        fig.update_xaxes(range=[-PLOT_HALF_WIDTH, PLOT_HALF_WIDTH], row=1, col=column)
        fig.update_yaxes(
            range=[-PLOT_HALF_WIDTH, PLOT_HALF_WIDTH],
            scaleanchor=f"x{column if column > 1 else ''}",
            row=1,
            col=column,
        )
    fig.update_layout(height=300, width=260 * len(panels) + 40, showlegend=False)
    fig.update_layout(margin={"l": 30, "r": 10, "t": 40, "b": 30})
    return fig


def tradeoff_figure(curves: dict[str, pd.DataFrame], target: pd.DataFrame):
    """Precision vs diversity of several methods and of the exact target, as w sweeps."""
    import plotly.graph_objects as go

    fig = go.Figure(curve_trace(target, "exact tilted target", "black", "dot"))
    for color, (name, frame) in zip(figures_palette(), curves.items(), strict=False):
        fig.add_trace(curve_trace(frame, name, color))
    fig.update_layout(**TRADEOFF_AXES, height=480, width=760)
    return fig


def heatmaps_figure(grids: dict[tuple[str, str], pd.DataFrame]):
    """Solver error heatmaps: one row per method, one column per solver."""
    from plotly.subplots import make_subplots

    methods = list(dict.fromkeys(method for method, _ in grids))
    solvers = list(dict.fromkeys(solver for _, solver in grids))
    titles = [f"{m} / {s}" for m in methods for s in solvers]
    fig = make_subplots(len(methods), len(solvers), subplot_titles=titles, shared_yaxes=True)
    for (method, solver), errors in grids.items():
        row, col = methods.index(method) + 1, solvers.index(solver) + 1
        fig.add_trace(error_heatmap_trace(errors, showscale=row == col == 1), row, col)
        fig.update_xaxes(
            type="category", title_text="NFE" if row == len(methods) else None, row=row, col=col
        )
        fig.update_yaxes(type="category", title_text="w" if col == 1 else None, row=row, col=col)
    fig.update_layout(height=330 * len(methods), width=300 * len(solvers) + 80)
    return fig


def ess_figure(results: dict[str, ParticleResult], schedule):
    import plotly.graph_objects as go

    fig = go.Figure()
    for color, (name, result) in zip(figures_palette(), results.items(), strict=False):
        for trace in ess_traces(result, schedule, name, color):
            fig.add_trace(trace)
    fig.update_layout(**ESS_AXES, height=340, width=720)
    return fig


def figures_palette() -> list[str]:
    return ["#e45756", "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d", "#17becf", "#bab0ac"]


def guidance_app(smoke: bool = False) -> Explorer:
    """Notebook 02's explorer on its own (the served app), at the notebook's full or SMOKE
    size: the same study settings, so the same cached solves and solver statistics."""
    size = study_size(smoke)
    return guidance_explorer(
        study_for(size),
        heatmap_scales=size.heatmap_scales,
        heatmap_nfes=size.heatmap_nfes,
        curve_scales=size.compare_scales,
    )
