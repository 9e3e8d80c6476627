"""Notebooks 03 and 04's explorers: learning-rate sweeps across width or depth, selected live.

The sweeps and everything drawn of them are computed in workbench.scaling.studies (sweeps
cached on disk, summaries memoized); the explorer only selects from them, so no update
computes anything slow (no `cost=`: every update is a selection of a few milliseconds). A
learning-rate slider (log2, one octave per step: the sweep's grid) picks a run; the sweep
panel draws the seed-averaged final loss against the learning rate, one curve per width (or
depth), each optimum starred and the current run circled; the training panel draws that run's
loss per step for every seed, with the same model at its own best grid learning rate dashed.

Only swept combinations are offered: notebook 03's sweep choice lists the (parametrization,
optimizer) pairs that were swept, and notebook 04's explorer refuses to be built unless every
position of its alpha slider and correction switch has a sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from widgets import figures
from widgets.explorer import Choice, Control, Explorer, FigurePanel, Slider, Toggle
from widgets.lr_transfer_figures import finite_or_none, lr_axis, sweep_traces
from workbench.scaling.studies import (
    DEPTH_CONFIGS,
    depth_config_id,
    depth_study,
    width_study,
    width_sweep_label,
)
from workbench.scaling.summaries import SMOOTHING, SweepRun, TransferSweep

CURRENT = "black"  # the selected run's ring, apart from every width's (depth's) color
# seeds of one run share its width's (depth's) color and differ by dash; the best grid
# learning rate's curve is black and dashed
SEED_DASHES = ("solid", "dot", "dashdot", "longdashdot")
TOP_MARGIN = 80  # room for a title's second line (a clamped learning rate's note)


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
    (`WidthStudy.summaries()`). The sweep choice offers exactly these pairs, by label."""
    default = ("mup", "adam") if ("mup", "adam") in tables else next(iter(tables), None)
    controls: list[Control] = [
        Choice(
            "sweep",
            "sweep",
            {width_sweep_label(key): key for key in tables},
            default,
        ),
    ]

    def key(sweep: tuple[str, str]) -> tuple[str, str]:
        return sweep

    def label(sweep: tuple[str, str]) -> str:
        return width_sweep_label(sweep)

    return _transfer_explorer(
        tables,
        controls,
        key,
        label,
        title="Learning-rate transfer across width",
        description=(
            "Final held-out loss after training, averaged over seeds, against the learning "
            "rate; one curve per width, stars at the fitted optima. Pick a run with the "
            "learning-rate slider and the width: its training curve is drawn beside it."
        ),
    )


def lr_depth_explorer(tables: Mapping[tuple[float, bool], TransferSweep]) -> Explorer:
    """Sweep summaries keyed by (alpha, lr_correction), each across depths of a residual MLP
    (`DepthStudy.summaries()`); every alpha with both learning-rate rules must be swept (at
    alpha 1 the two rules are one), so every position of the controls shows a sweep."""
    alphas = sorted({a for a, _ in tables})
    if len(alphas) < 2:
        raise ValueError(f"the depth explorer needs sweeps at two or more alphas, got {alphas}")

    def key(alpha: float, lr_correction: bool) -> tuple[float, bool]:
        config = DEPTH_CONFIGS[depth_config_id(alpha, lr_correction)]
        return config.alpha, config.lr_correction

    def label(alpha: float, lr_correction: bool) -> str:
        return DEPTH_CONFIGS.label(depth_config_id(alpha, lr_correction))

    missing = [label(a, c) for a in alphas for c in (False, True) if key(a, c) not in tables]
    if missing:
        swept = "; ".join(label(a, c) for a, c in tables)
        raise ValueError(f"{'; '.join(missing)} was not swept; swept: {swept}")
    step = float(np.min(np.diff(alphas)))
    controls: list[Control] = [
        Slider(
            "alpha",
            "α (branch × depth^-α)",
            alphas[0],
            alphas[-1],
            0.5 if 0.5 in alphas else alphas[0],
            step=step,
        ),
        Toggle("lr_correction", "depth-corrected lr (× depth^(α-1))", True),
    ]
    return _transfer_explorer(
        tables,
        controls,
        key,
        label,
        title="Learning-rate transfer across depth",
        description=(
            "Residual MLPs whose blocks are scaled by depth^-α (muP in width); with the "
            "correction each block's learning rate is scaled by depth^(α-1). Final held-out "
            "loss against the learning rate, one curve per depth, stars at the fitted optima; "
            "the training curve of the selected run beside it."
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
        table = tables[key(**config)]  # every combination the controls offer was swept
        lr, clamped = table.nearest_lr(log2_lr)
        note = _clamped_note(log2_lr, table.lrs, lr) if clamped else ""
        return TransferView(table, label(**config), note, table.run(value, lr))

    sweep_panel = FigurePanel(
        "sweep", "final loss vs learning rate", _sweep_traces, _sweep_layout, height=440
    )
    curve_panel = FigurePanel(
        "training", "training curve", _training_traces, _training_layout, height=440
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


# -------------------------------------------------------------------------------- panels
def _sweep_traces(view: TransferView) -> list[dict]:
    run = view.run
    x, y = [run.lr], finite_or_none([run.loss])
    circled = figures.ring(x, y, color=CURRENT, size=18, width=3, name="this run")
    return [*sweep_traces(view.summary, selected=run.value), circled]


def _sweep_layout(view: TransferView) -> dict:
    finite = view.summary.averaged.loss[np.isfinite(view.summary.averaged.loss)]
    top = float(min(finite.max(), 1.6 * finite.min())) if len(finite) else 1.0
    return {
        "title": {"text": f"{view.sweep_label}: final loss"},
        "xaxis": lr_axis([view.summary]),
        "yaxis": {
            "title": {"text": "held-out loss (seed mean)"},
            "range": [0.97 * float(finite.min()) if len(finite) else 0, top],
        },
        "legend": {"orientation": "h", "y": -0.22, "yanchor": "top"},
        "margin": {"t": TOP_MARGIN},
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


def _power_of_two(lr: float) -> str:
    return f"2<sup>{np.log2(lr):g}</sup>"


def _clamped_note(log2_lr: float, lrs: np.ndarray, lr: float) -> str:
    outside, low, high = _power_of_two(2.0**log2_lr), _power_of_two(lrs[0]), _power_of_two(lrs[-1])
    return f"{outside} is outside this sweep ({low} to {high}); showing {_power_of_two(lr)}"


def _training_traces(view: TransferView) -> list[dict]:
    run = view.run
    steps = np.arange(run.curves.shape[1])
    color = figures.color_map(view.summary.values)[run.value]
    traces = []
    for i, (curve, smooth) in enumerate(zip(run.curves, run.smoothed, strict=True)):
        dash, group = SEED_DASHES[i % len(SEED_DASHES)], f"seed {i}"
        line = {"color": color, "width": 0.8, "dash": dash}
        traces.append(_line(steps, curve, group, line, opacity=0.35, legendgroup=group))
        name = f"seed {i}, mean of {SMOOTHING} steps"
        line = {"color": color, "width": 2.2, "dash": dash}
        traces.append(_line(steps, smooth, name, line, legendgroup=group))
    name = f"best grid lr {_power_of_two(run.best_lr)} (seed mean, mean of {SMOOTHING})"
    traces.append(
        _line(steps, run.best_smoothed, name, {"color": "black", "dash": "dash", "width": 1.8})
    )
    return traces


def _training_layout(view: TransferView) -> dict:
    run = view.run
    status = f"diverged at step {run.diverged_step}" if run.diverged_step >= 0 else "trained"
    title = f"{view.summary.axis} {run.value}, lr {_power_of_two(run.lr)}: {status}"
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
        "legend": {"orientation": "h", "y": -0.22, "yanchor": "top"},
        "margin": {"t": TOP_MARGIN},
    }


def lr_width_app(smoke: bool = False) -> Explorer:
    """Notebook 03's explorer on its own (the served app), over the notebook's own sweeps:
    computed once (about a minute in full size), then read from the sweep cache."""
    return lr_width_explorer(width_study(smoke).summaries())


def lr_depth_app(smoke: bool = False) -> Explorer:
    """Notebook 04's explorer on its own (the served app), over the notebook's own sweeps."""
    return lr_depth_explorer(depth_study(smoke).summaries())
