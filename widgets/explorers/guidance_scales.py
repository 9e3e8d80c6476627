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
from workbench.claims import readable
from workbench.diffusion.guidance import GUIDANCE
from workbench.diffusion.guidance_experiments import TARGET_LABELS, study_for
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
    ViewGrids,
    guidance_view,
    view_seconds,
)
from workbench.diffusion.sampling import SOLVERS
from workbench.diffusion.smc import ParticleResult

PANEL = 460  # the samples and trade-off panels: room for a three-line title over a square plot
LOG_DENSITY_DEPTH = 10.0
TARGET_COLOR = "#444444"  # the exact targets: the reference every method is drawn against
CLASS_ERROR_FLOOR = 1e-9
ERROR_RANGE = (-3.5, 0.5)  # log10 colour range of the error heatmaps
TITLE_FONT = {"size": 13}


def method_colors() -> dict[str, str]:
    """One color per guidance method, the same in the explorer and the notebook's figures."""
    return figures.color_map(GUIDANCE)


def guidance_explorer(
    study: GuidanceStudy,
    *,
    heatmap_scales=HEATMAP_SCALES,
    heatmap_nfes=HEATMAP_NFES,
    curve_scales=CURVE_SCALES,
) -> Explorer:
    """The explorer over `study`; the grids set what the error heatmap and the
    precision-diversity curve cover."""
    grids = ViewGrids(tuple(heatmap_scales), tuple(heatmap_nfes), tuple(curve_scales))

    def compute(scale: float, method: str, solver: str, steps: int) -> GuidanceView:
        return guidance_view(study, grids, method, scale, solver, steps)

    def cost(scale: float, method: str, solver: str, steps: int) -> float | None:
        return view_seconds(study, grids, method, scale, solver, steps)

    return Explorer(
        title="Guidance scales on an exact class-conditional mixture",
        description=(
            "Class 1 of two overlapping classes (4 Gaussian components), "
            f"{study.n_samples:,} samples from fixed noise. The grey image is the exact "
            "tilted target p(<i>x</i> | <i>c</i>)<sup><i>w</i></sup> "
            "p(<i>x</i>)<sup>1−<i>w</i></sup> (autoguidance: "
            "p<sub>good</sub><sup><i>w</i></sup> p<sub>bad</sub><sup>1−<i>w</i></sup>); "
            "errors are mean L2 distances to the exact guided ODE solution. Particle methods "
            "(SMC, SVDD) step their own reverse SDE and ignore the solver. A first visit of a "
            "method or solver computes exact references (seconds; DPM-Solver-v3 also its "
            "statistics per scale, up to minutes), then everything is selected from a cache."
        ),
        controls=[
            Slider("scale", "guidance scale w", 0.0, 15.0, 3.0, step=0.5),
            Choice("method", "guidance method", GUIDANCE.options(), "cfg"),
            Choice("solver", "ODE solver", SOLVERS.options(HEATMAP_SOLVERS), "dpmpp_2m"),
            Slider("steps", "solver steps (NFE)", 1, 200, 20, integer=True),
        ],
        compute=compute,
        cost=cost,
        panels=[
            FigurePanel("samples", "samples", _sample_traces, _sample_layout, height=PANEL),
            FigurePanel(
                "tradeoff",
                "precision vs diversity",
                _tradeoff_traces,
                _tradeoff_layout,
                height=PANEL,
            ),
            FigurePanel("errors", "solver error", _error_traces, _error_layout, height=420),
            FigurePanel("ess", "FK-SMC", _ess_traces, _ess_layout, height=420),
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


def tradeoff_axes(frames) -> dict:
    """Class error on a reversed log axis with ticks fitted to the plotted `frames`."""
    errors = np.concatenate([class_error(frame) for frame in frames])
    xaxis = figures.log_axis("class error 1 − E p(c | x)  (more precise →)", errors)
    return {
        "xaxis": {**xaxis, "autorange": "reversed"},
        "yaxis": {"title": {"text": "diversity: within-class spread"}},
    }


def error_heatmap_trace(errors: pd.DataFrame, showscale: bool = True) -> dict:
    """Solver error over scale (rows) x NFE (columns), log colour, value printed per cell."""
    values = errors.to_numpy(dtype=float)
    powers = range(math.ceil(ERROR_RANGE[0]), math.floor(ERROR_RANGE[1]) + 1)
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
        "colorbar": {
            "title": {"text": "error"},
            "tickvals": list(powers),
            "ticktext": [readable(10.0**k) for k in powers],
        },
        "hoverinfo": "skip",
    }


def _error_text(value: float) -> str:
    return "div." if math.isnan(value) else f"{value:.0e}".replace("e-0", "e-")


def ess_traces(result: ParticleResult, schedule, name: str, color: str) -> list[dict]:
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


def _title(*lines: str) -> dict:
    """A panel title of one or more lines, with the top margin to hold them."""
    return {
        "title": {"text": "<br>".join(lines), "font": TITLE_FONT},
        "margin": {"t": 30 + 18 * len(lines)},
    }


# ---------------------------------------------------------------- the explorer's panels
def _sample_traces(view: GuidanceView) -> list[dict]:
    traces = [density_trace(view.panel.density)]
    if view.panel.samples is not None:
        color = method_colors()[view.method]
        points = figures.points(view.panel.samples, name=view.label, color=color, size=2.5)
        traces.append({**points, "marker": {**points["marker"], "opacity": 0.5}})
    return traces


def _sample_layout(view: GuidanceView) -> dict:
    xs, ys, _ = view.panel.density
    bounds = (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))
    heading = f"{view.label}, w = {view.scale:g}"
    if view.panel.diverged:
        lines = (heading, f"diverged ({view.panel.diverged[:60]})")
    else:
        m, t = view.metrics, view.target_metrics
        spread = "n/a (no class samples)" if math.isnan(m["spread"]) else readable(m["spread"])
        lines = (
            heading,
            f"precision {readable(m['precision'])}, spread {spread} "
            f"(target {readable(t['spread'])})",
            f"sliced W to the target {readable(m['sliced W'])} "
            f"(two exact sets: {readable(t['sliced W'])})",
        )
    layout, title = figures.square_axes(bounds), _title(*lines)
    return {**layout, "title": title["title"], "margin": layout["margin"] | title["margin"]}


def _tradeoff_traces(view: GuidanceView) -> list[dict]:
    color = method_colors()[view.method]
    traces = [
        curve_trace(view.target_curve, view.target_label, TARGET_COLOR, "dot"),
        curve_trace(view.curve, view.label, color),
    ]
    if not view.panel.diverged:
        current = pd.DataFrame([view.metrics], index=[view.scale])
        traces.append(figures.ring(class_error(current), current["spread"].to_numpy(), color=color))
    return traces


def _tradeoff_layout(view: GuidanceView) -> dict:
    return {
        **tradeoff_axes([view.curve, view.target_curve]),
        "legend": {"orientation": "h", "x": 0, "y": -0.22},
        **_title("precision vs diversity as w sweeps (labels: w)", f"{view.steps} steps"),
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
    whose = f"{GUIDANCE.label(view.errors_method)}, {SOLVERS.label(view.solver)}"
    if view.particle:
        why = f"({view.label} samples an SDE: no ODE error of its own)"
        lines = (whose, f"error to the exact guided ODE solution {why}")
    else:
        lines = (whose, "error to the exact guided ODE solution")
    return {
        "xaxis": {"title": {"text": "NFE"}, "type": "category"},
        "yaxis": {"title": {"text": "guidance scale w"}, "type": "category"},
        **_title(*lines),
    }


def _ess_traces(view: GuidanceView) -> list[dict]:
    color = method_colors()["fk_smc"]
    return ess_traces(view.smc, view.schedule, "ESS / N", color)


def _ess_layout(view: GuidanceView) -> dict:
    count = int(view.smc.resampled.sum())
    times = "once" if count == 1 else f"{count} times"
    return {
        **ESS_AXES,
        "showlegend": False,
        **_title(
            f"{GUIDANCE.label('fk_smc')}, w = {view.scale:g}, {view.steps} steps",
            f"resampled {times} (x marks), final ESS / N {readable(view.smc.final_ess)}",
        ),
    }


# ---------------------------------------------------------------- the notebook's figures
def samples_figure(panels: list[SamplePanel], method: str):
    """`method`'s samples over the tilted target's density, one square panel per scale
    (`guidance_views.sample_panels`), in one row that reads down to ~850 px."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    label, color = GUIDANCE.label(method), method_colors()[method]
    titles = [f"w = {p.scale:g}" for p in panels]
    fig = make_subplots(1, len(panels), subplot_titles=titles, horizontal_spacing=0.03)
    for column, panel in enumerate(panels, start=1):
        fig.add_trace(go.Heatmap(density_trace(panel.density)), 1, column)
        if panel.samples is not None:
            points = figures.points(panel.samples, name=label, color=color, size=2)
            fig.add_trace(go.Scattergl(points), 1, column)
        bounds = [-PLOT_HALF_WIDTH, PLOT_HALF_WIDTH]
        fig.update_xaxes(range=bounds, row=1, col=column)
        anchor = f"x{column if column > 1 else ''}"  # each panel square on its own x axis
        fig.update_yaxes(range=bounds, scaleanchor=anchor, row=1, col=column)
    fig.update_layout(
        height=300,
        showlegend=False,
        title={"text": f"{label}: samples over the exact tilted target", "font": TITLE_FONT},
        margin={"l": 30, "r": 10, "t": 60, "b": 30},
    )
    return fig


def tradeoff_figure(curves: dict[str, pd.DataFrame], target: pd.DataFrame):
    """Precision vs diversity of several methods (by id) and of the exact target, as w sweeps."""
    import plotly.graph_objects as go

    colors = method_colors()
    fig = go.Figure(curve_trace(target, TARGET_LABELS["exact_target"], TARGET_COLOR, "dot"))
    for method, frame in curves.items():
        fig.add_trace(curve_trace(frame, GUIDANCE.label(method), colors[method]))
    fig.update_layout(
        **tradeoff_axes([target, *curves.values()]),
        height=560,
        legend={"orientation": "h", "x": 0, "y": -0.18},
        margin={"t": 30},
    )
    return fig


def heatmaps_figure(grids: dict[tuple[str, str], pd.DataFrame]):
    """Solver error heatmaps: one column per method, one row per solver (two columns read at
    ~850 px with every cell's value legible)."""
    from plotly.subplots import make_subplots

    methods = list(dict.fromkeys(method for method, _ in grids))
    solvers = list(dict.fromkeys(solver for _, solver in grids))
    fig = make_subplots(
        len(solvers),
        len(methods),
        column_titles=[GUIDANCE.label(m) for m in methods],
        row_titles=[SOLVERS.label(s) for s in solvers],
        shared_xaxes=True,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        vertical_spacing=0.03,
    )
    for (method, solver), errors in grids.items():
        row, col = solvers.index(solver) + 1, methods.index(method) + 1
        trace = error_heatmap_trace(errors, showscale=row == col == 1)
        trace["colorbar"] |= {"orientation": "h", "y": -0.12 * 4 / len(solvers), "len": 0.6}
        fig.add_trace(trace, row, col)
        fig.update_xaxes(type="category", row=row, col=col)
        fig.update_yaxes(type="category", title_text="w" if col == 1 else None, row=row, col=col)
    fig.update_xaxes(title_text="NFE", row=len(solvers))
    fig.update_layout(height=250 * len(solvers) + 90, margin={"t": 40, "b": 110, "r": 40})
    return fig


def ess_figure(results: dict[str, ParticleResult], schedule):
    """FK-SMC's ESS / N at each step, one line per run (keyed by its name, e.g. "w = 3")."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for (name, result), color in zip(results.items(), figures.palette(len(results)), strict=True):
        for trace in ess_traces(result, schedule, name, color):
            fig.add_trace(trace)
    fig.update_layout(**ESS_AXES, height=360, margin={"t": 30})
    return fig


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
