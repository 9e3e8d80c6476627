"""Notebooks 03 and 04's explorers: learning-rate sweeps across width or depth, selected live.

The sweeps and everything drawn of them are computed in workbench.scaling.studies (sweeps
cached on disk, summaries memoized); the explorer only selects from them. A learning-rate
slider (log2, one octave per step: the sweep's grid) picks a run; the sweep panel draws the
seed-averaged final loss against log2(lr), one curve per width (or depth), each optimum
starred and the current run circled; the training panel draws that run's loss per step for
every seed, with the same model at its own best grid learning rate dashed for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Control, Explorer, FigurePanel, Slider, Toggle
from widgets.lr_transfer_figures import finite_or_none, sweep_traces
from workbench.scaling import PARAMETRIZATIONS, SCALING_OPTIMIZERS
from workbench.scaling.studies import depth_study, width_study
from workbench.scaling.summaries import SMOOTHING, SweepRun, TransferSweep

CURRENT = "#e45756"
SEED_COLORS = ["#e45756", "#f58518", "#b279a2", "#9d755d"]


@dataclass(frozen=True)
class TransferView:
    """What the panels draw: a sweep's summary, the selected run, and a note if clamped."""

    summary: TransferSweep
    sweep_label: str
    note: str
    run: SweepRun


# ----------------------------------------------------------------------------- explorers
def lr_width_explorer(tables: Mapping[tuple[str, str], TransferSweep]) -> Explorer:
    """Sweep summaries keyed by (parametrization, optimizer), each across widths
    (`WidthStudy.summaries()`)."""
    parametrizations = _ordered({p for p, _ in tables}, PARAMETRIZATIONS)
    optimizers = _ordered({o for _, o in tables}, SCALING_OPTIMIZERS)
    controls: list[Control] = [
        Choice(
            "parametrization",
            "parametrization",
            PARAMETRIZATIONS.options(parametrizations),
            "mup" if "mup" in parametrizations else parametrizations[0],
        ),
        Choice(
            "optimizer",
            "optimizer",
            SCALING_OPTIMIZERS.options(optimizers),
            "adam" if "adam" in optimizers else optimizers[0],
        ),
    ]

    def key(parametrization: str, optimizer: str) -> tuple[str, str]:
        return parametrization, optimizer

    def label(parametrization: str, optimizer: str) -> str:
        return f"{PARAMETRIZATIONS.label(parametrization)}, {SCALING_OPTIMIZERS.label(optimizer)}"

    return _transfer_explorer(
        tables,
        controls,
        key,
        label,
        title="Learning-rate transfer across width",
        description=(
            "Final held-out loss after training, averaged over seeds, against the learning "
            "rate; one curve per width, stars at the fitted optima. Pick a run with the "
            "learning-rate slider and the width: its training curve is drawn on the right."
        ),
    )


def lr_depth_explorer(tables: Mapping[tuple[float, bool], TransferSweep]) -> Explorer:
    """Sweep summaries keyed by (alpha, lr_correction), each across depths of a residual MLP
    (`DepthStudy.summaries()`)."""
    alphas = sorted({a for a, _ in tables})
    if len(alphas) < 2:
        raise ValueError(f"the depth explorer needs sweeps at two or more alphas, got {alphas}")
    step = float(np.min(np.diff(alphas)))
    controls: list[Control] = [
        Slider(
            "alpha",
            "residual branch exponent alpha (branch x depth^-alpha)",
            alphas[0],
            alphas[-1],
            0.5 if 0.5 in alphas else alphas[0],
            step=step,
        ),
        Toggle("lr_correction", "depth correction of the block learning rates", True),
    ]

    def key(alpha: float, lr_correction: bool) -> tuple[float, bool]:
        exact = min(alphas, key=lambda a: abs(a - alpha))
        if abs(exact - alpha) > 1e-9:
            raise ValueError(f"alpha {alpha:g} was not swept; swept: {alphas}")
        if (exact, lr_correction) not in tables and exact == 1.0:
            lr_correction = not lr_correction  # at alpha = 1 the correction is depth**0 = 1
        if (exact, lr_correction) not in tables:
            swept = ", ".join(f"alpha {a:g} {'with' if c else 'without'}" for a, c in tables)
            raise ValueError(
                f"no sweep for alpha {exact:g} with lr_correction={lr_correction}; swept: {swept}"
            )
        return exact, lr_correction

    def label(alpha: float, lr_correction: bool) -> str:
        a, corrected = key(alpha, lr_correction)
        return f"alpha {a:g}, {'depth-corrected' if corrected else 'global'} learning rate"

    return _transfer_explorer(
        tables,
        controls,
        key,
        label,
        title="Learning-rate transfer across depth",
        description=(
            "Residual MLPs whose blocks are scaled by depth^-alpha (muP in width). Final "
            "held-out loss against the learning rate, one curve per depth, stars at the fitted "
            "optima; the training curve of the selected run on the right."
        ),
    )


def _transfer_explorer(
    tables: Mapping[Hashable, TransferSweep],
    controls: list[Control],
    key: Callable[..., Hashable],
    label: Callable[..., str],
    *,
    title: str,
    description: str,
) -> Explorer:
    if not tables:
        raise ValueError("no sweeps to explore")
    first = next(iter(tables.values()))
    axis = first.axis
    values = sorted({v for t in tables.values() for v in t.values})
    grid = np.log2(np.concatenate([t.lrs for t in tables.values()]))
    default_key = key(**{c.name: c.default for c in controls})
    default_table = tables.get(default_key, first)
    default_value = default_table.values[len(default_table.values) // 2]
    default_lr = float(np.log2(default_table.optima.loc[default_value, "grid_lr"]))
    axis_label = "width" if axis == "width" else "depth (residual blocks)"

    def compute(log2_lr: float, value: int, **config) -> TransferView:
        chosen = key(**config)
        if chosen not in tables:
            swept = "; ".join(label(**dict(zip(config, k, strict=True))) for k in tables)
            raise ValueError(f"{label(**config)} was not swept; swept: {swept}")
        table = tables[chosen]
        lr, note = table.nearest_lr(log2_lr)
        return TransferView(table, label(**config), note, table.run(value, lr))

    sweep_panel = FigurePanel(
        "sweep", "final loss vs learning rate", _sweep_traces, _sweep_layout, height=420, width=560
    )
    curve_panel = FigurePanel(
        "training", "training curve", _training_traces, _training_layout, height=420, width=520
    )
    return Explorer(
        title=title,
        description=description,
        controls=[
            *controls,
            Choice("value", axis_label, values, default_value),
            Slider(
                "log2_lr",
                "learning rate (log2)",
                float(np.floor(grid.min())),
                float(np.ceil(grid.max())),
                default_lr,
                step=1.0,
            ),
        ],
        compute=compute,
        panels=[sweep_panel, curve_panel],
    )


def _ordered(present: set, order: Sequence) -> list:
    """The names present, in the registry's order."""
    return [item for item in order if item in present]


# -------------------------------------------------------------------------------- panels
def _sweep_traces(view: TransferView) -> list[dict]:
    run = view.run
    x, y = [float(np.log2(run.lr))], finite_or_none([run.loss])
    circled = figures.ring(x, y, color=CURRENT, size=18, width=3, name="this run")
    return [*sweep_traces(view.summary, selected=run.value), circled]


def _sweep_layout(view: TransferView) -> dict:
    finite = view.summary.averaged.loss[np.isfinite(view.summary.averaged.loss)]
    top = float(min(finite.max(), 1.6 * finite.min())) if len(finite) else 1.0
    return {
        "title": {"text": f"{view.sweep_label}: final loss vs learning rate"},
        "xaxis": {"title": {"text": "learning rate (log2)"}, "dtick": 1},
        "yaxis": {
            "title": {"text": "held-out loss (seed mean)"},
            "range": [0.97 * float(finite.min()) if len(finite) else 0, top],
        },
        "legend": {"orientation": "h", "y": -0.2},
    }


def _line(steps, values, name: str, line: dict, **extra) -> dict:
    return {
        "type": "scatter",
        "x": steps,
        "y": finite_or_none(values),
        "mode": "lines",
        "name": name,
        "line": line,
        **extra,
    }


def _training_traces(view: TransferView) -> list[dict]:
    run = view.run
    steps = np.arange(run.curves.shape[1])
    traces = []
    for i, (curve, smooth) in enumerate(zip(run.curves, run.smoothed, strict=True)):
        color, group = SEED_COLORS[i % len(SEED_COLORS)], f"seed {i}"
        line = {"color": color, "width": 0.8}
        traces.append(_line(steps, curve, group, line, opacity=0.35, legendgroup=group))
        name = f"seed {i}, mean of {SMOOTHING} steps"
        traces.append(_line(steps, smooth, name, {"color": color, "width": 2.2}, legendgroup=group))
    name = f"best grid lr 2^{np.log2(run.best_lr):g} (seeds, mean of {SMOOTHING})"
    traces.append(
        _line(steps, run.best_smoothed, name, {"color": "black", "dash": "dash", "width": 1.8})
    )
    return traces


def _training_layout(view: TransferView) -> dict:
    run = view.run
    status = f"diverged at step {run.diverged_step}" if run.diverged_step >= 0 else "trained"
    title = f"{view.summary.axis} {run.value}, lr 2^{np.log2(run.lr):g}: {status}"
    if view.note:
        title += f"<br><sub>{view.note}</sub>"
    finite = np.concatenate(
        [run.best_curve[np.isfinite(run.best_curve)], run.curves[np.isfinite(run.curves)]]
    )
    low = float(finite.min()) if len(finite) else 0.0
    high = float(np.percentile(finite, 99)) if len(finite) else 1.0
    return {
        "title": {"text": title},
        "xaxis": {"title": {"text": "training step"}},
        "yaxis": {
            "title": {"text": "training loss (minibatch)"},
            "range": [0.95 * low, 1.05 * max(high, low + 1e-6)],
        },
        "legend": {"orientation": "h", "y": -0.2},
    }


def lr_width_app(smoke: bool = False) -> Explorer:
    """Notebook 03's explorer on its own (the served app), over the notebook's own sweeps:
    computed once (about a minute in full size), then read from the sweep cache."""
    return lr_width_explorer(width_study(smoke).summaries())


def lr_depth_app(smoke: bool = False) -> Explorer:
    """Notebook 04's explorer on its own (the served app), over the notebook's own sweeps."""
    return lr_depth_explorer(depth_study(smoke).summaries())
