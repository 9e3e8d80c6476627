"""Notebooks 03 and 04's explorers: learning-rate sweeps across width or depth, selected live.

The sweeps are computed once (workbench.scaling.lr_sweep, cached on disk); the explorer only
selects from them. A learning-rate slider (log2, one octave per step: the sweep's grid) picks
a run; the sweep panel draws the seed-averaged final loss against log2(lr), one curve per
width (or depth), each optimum starred and the current run circled; the training panel draws
that run's loss per step for every seed, with the same model at its own best grid learning
rate dashed for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from widgets.explorer import Choice, Control, Explorer, FigurePanel, Slider, Toggle
from workbench.scaling import PARAMETRIZATIONS, CoordCheck, optimal_lr, seed_averaged
from workbench.scaling.optimizers import OPTIMIZER_LABELS
from workbench.scaling.studies import DEPTH_CONFIGS, depth_sweeps, width_sweeps

# light to dark: wider / deeper models are darker
PALETTE = ["#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b", "#041c40"]
CURRENT = "#e45756"


@dataclass(frozen=True)
class SweepTable:
    """One sweep, indexed for selection: averaged curves, optima and every training curve."""

    axis: str
    values: tuple[int, ...]  # the widths or depths swept
    lrs: np.ndarray  # the learning-rate grid, ascending
    averaged: pd.DataFrame  # axis value, lr, loss (seed mean; inf if any seed diverged)
    optima: pd.DataFrame  # optimal_lr, indexed by the axis value
    curves: Mapping[tuple[int, float], np.ndarray]  # (value, lr) -> (seeds, steps)
    diverged_step: Mapping[tuple[int, float], int]  # earliest divergence among seeds, -1 if none

    @classmethod
    def from_sweep(cls, df: pd.DataFrame, axis: str) -> SweepTable:
        if df.empty:
            raise ValueError("an empty sweep has nothing to explore")
        other = "depth" if axis == "width" else "width"
        if df[other].nunique() != 1:
            raise ValueError(f"a sweep across {axis} must hold one {other}; got {set(df[other])}")
        optima = optimal_lr(df).reset_index().set_index(axis)
        curves, diverged = {}, {}
        for (value, lr), group in df.groupby([axis, "lr"], sort=True):
            group = group.sort_values("seed")
            curves[(int(value), float(lr))] = np.stack(group.curve.to_numpy())
            steps = group.diverged_step[group.diverged]
            diverged[(int(value), float(lr))] = int(steps.min()) if len(steps) else -1
        return cls(
            axis=axis,
            values=tuple(int(v) for v in sorted(df[axis].unique())),
            lrs=np.sort(df.lr.unique()),
            averaged=seed_averaged(df),
            optima=optima,
            curves=curves,
            diverged_step=diverged,
        )

    def nearest_lr(self, log2_lr: float) -> tuple[float, str]:
        """The grid learning rate nearest to 2**log2_lr, and a note when it had to be clamped."""
        grid = np.log2(self.lrs)
        lr = float(self.lrs[int(np.argmin(np.abs(grid - log2_lr)))])
        note = ""
        if not grid[0] - 0.5 <= log2_lr <= grid[-1] + 0.5:
            note = (
                f"2^{log2_lr:g} is outside this sweep (2^{grid[0]:g} to 2^{grid[-1]:g}); "
                f"showing 2^{np.log2(lr):g}"
            )
        return lr, note


@dataclass(frozen=True)
class TransferView:
    table: SweepTable
    sweep_label: str
    value: int
    lr: float
    note: str
    curves: np.ndarray  # (seeds, steps) at (value, lr)
    best_lr: float  # this value's best grid lr
    best_curve: np.ndarray  # seed mean of the training curve at best_lr
    diverged_step: int


def _view(table: SweepTable, label: str, value: int, log2_lr: float) -> TransferView:
    if value not in table.values:
        raise ValueError(f"{table.axis} {value} was not swept; swept: {list(table.values)}")
    lr, note = table.nearest_lr(log2_lr)
    own = table.averaged[table.averaged[table.axis] == value]
    best_lr = float(own.lr.iloc[int(np.argmin(own.loss.to_numpy()))])
    return TransferView(
        table=table,
        sweep_label=label,
        value=value,
        lr=lr,
        note=note,
        curves=table.curves[(value, lr)],
        best_lr=best_lr,
        best_curve=np.nanmean(table.curves[(value, best_lr)], axis=0),
        diverged_step=table.diverged_step[(value, lr)],
    )


# ----------------------------------------------------------------------------- explorers
def lr_width_explorer(sweeps: Mapping[tuple[str, str], pd.DataFrame]) -> Explorer:
    """Sweeps keyed by (parametrization, optimizer), each across widths (lr_sweep frames)."""
    tables = {key: SweepTable.from_sweep(df, "width") for key, df in sweeps.items()}
    parametrizations = _ordered({p for p, _ in tables}, list(PARAMETRIZATIONS))
    optimizers = _ordered({o for _, o in tables}, list(OPTIMIZER_LABELS))
    controls: list[Control] = [
        Choice(
            "parametrization",
            "parametrization",
            {PARAMETRIZATIONS[p].label: p for p in parametrizations},
            "mup" if "mup" in parametrizations else parametrizations[0],
        ),
        Choice(
            "optimizer",
            "optimizer",
            {OPTIMIZER_LABELS[o]: o for o in optimizers},
            "adam" if "adam" in optimizers else optimizers[0],
        ),
    ]

    def key(parametrization: str, optimizer: str) -> tuple[str, str]:
        return parametrization, optimizer

    def label(parametrization: str, optimizer: str) -> str:
        return f"{PARAMETRIZATIONS[parametrization].label}, {OPTIMIZER_LABELS[optimizer]}"

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


def lr_depth_explorer(sweeps: Mapping[tuple[float, bool], pd.DataFrame]) -> Explorer:
    """Sweeps keyed by (alpha, lr_correction), each across depths of a residual MLP."""
    tables = {key: SweepTable.from_sweep(df, "depth") for key, df in sweeps.items()}
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
    tables: Mapping[Hashable, SweepTable],
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
        return _view(tables[chosen], label(**config), value, log2_lr)

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
    return [item for item in order if item in present]


# ------------------------------------------------------------------------------- figures
def _finite_or_none(values: np.ndarray) -> list:
    """Plotly draws None as a gap: diverged points break the curve instead of spiking it."""
    return [float(v) if np.isfinite(v) else None for v in values]


def _sweep_traces(view: TransferView) -> list[dict]:
    table, traces = view.table, []
    for i, value in enumerate(table.values):
        own = table.averaged[table.averaged[table.axis] == value].sort_values("lr")
        selected = value == view.value
        traces.append(
            {
                "type": "scatter",
                "x": np.log2(own.lr.to_numpy()),
                "y": _finite_or_none(own.loss.to_numpy()),
                "mode": "lines+markers",
                "name": f"{table.axis} {value}",
                "line": {"color": PALETTE[i % len(PALETTE)], "width": 3.5 if selected else 1.5},
                "marker": {"size": 5},
                "connectgaps": False,
            }
        )
    optima = table.optima
    traces.append(
        {
            "type": "scatter",
            "x": optima.log2_lr.to_numpy(),
            "y": optima.loss.to_numpy(),
            "mode": "markers",
            "name": "fitted optimum",
            "marker": {"symbol": "star", "size": 13, "color": "black"},
            "text": [
                f"{table.axis} {v}: edge {e}" if e else f"{table.axis} {v}"
                for v, e in zip(optima.index, optima.edge, strict=True)
            ],
        }
    )
    current = table.averaged[
        (table.averaged[table.axis] == view.value) & (table.averaged.lr == view.lr)
    ].loss.to_numpy()
    traces.append(
        {
            "type": "scatter",
            "x": [float(np.log2(view.lr))],
            "y": _finite_or_none(current),
            "mode": "markers",
            "name": "this run",
            "marker": {"symbol": "circle-open", "size": 18, "color": CURRENT, "line": {"width": 3}},
        }
    )
    return traces


def _sweep_layout(view: TransferView) -> dict:
    finite = view.table.averaged.loss[np.isfinite(view.table.averaged.loss)]
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


SMOOTHING = 10  # steps in the running mean drawn over the noisy minibatch losses
SEED_COLORS = ["#e45756", "#f58518", "#b279a2", "#9d755d"]


def _running_mean(curve: np.ndarray) -> np.ndarray:
    """Mean over the last SMOOTHING steps; NaN (after a divergence) stays NaN."""
    smooth = pd.Series(curve).rolling(SMOOTHING, min_periods=1).mean().to_numpy()
    return np.where(np.isfinite(curve), smooth, np.nan)


def _training_traces(view: TransferView) -> list[dict]:
    steps = np.arange(view.curves.shape[1])
    traces = []
    for i, curve in enumerate(view.curves):
        color = SEED_COLORS[i % len(SEED_COLORS)]
        traces.append(
            {
                "type": "scatter",
                "x": steps,
                "y": _finite_or_none(curve),
                "mode": "lines",
                "name": f"seed {i}",
                "line": {"color": color, "width": 0.8},
                "opacity": 0.35,
                "legendgroup": f"seed {i}",
            }
        )
        traces.append(
            {
                "type": "scatter",
                "x": steps,
                "y": _finite_or_none(_running_mean(curve)),
                "mode": "lines",
                "name": f"seed {i}, mean of {SMOOTHING} steps",
                "line": {"color": color, "width": 2.2},
                "legendgroup": f"seed {i}",
            }
        )
    traces.append(
        {
            "type": "scatter",
            "x": steps,
            "y": _finite_or_none(_running_mean(view.best_curve)),
            "mode": "lines",
            "name": f"best grid lr 2^{np.log2(view.best_lr):g} (seeds, mean of {SMOOTHING})",
            "line": {"color": "black", "dash": "dash", "width": 1.8},
        }
    )
    return traces


def _training_layout(view: TransferView) -> dict:
    status = f"diverged at step {view.diverged_step}" if view.diverged_step >= 0 else "trained"
    title = f"{view.table.axis} {view.value}, lr 2^{np.log2(view.lr):g}: {status}"
    if view.note:
        title += f"<br><sub>{view.note}</sub>"
    finite = np.concatenate(
        [view.best_curve[np.isfinite(view.best_curve)], view.curves[np.isfinite(view.curves)]]
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


# ------------------------------------------------------------------ notebook figures
LAYER_COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2", "#9d755d"]


def sweep_figure(
    sweeps: Mapping[str, pd.DataFrame], axis: str = "width", height: int = 380, cols: int = 3
):
    """Panels (up to `cols` a row), one per sweep: final loss vs log2 lr, one curve per width /
    depth, fitted optima starred (the explorer's sweep panel, without a selected run)."""
    from plotly.subplots import make_subplots

    cols = min(cols, len(sweeps))
    rows = -(-len(sweeps) // cols)
    figure = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(sweeps),
        shared_yaxes=True,
        horizontal_spacing=0.04,
        vertical_spacing=0.16,
    )
    for i, df in enumerate(sweeps.values()):
        row, col = i // cols + 1, i % cols + 1
        table = SweepTable.from_sweep(df, axis)
        view = _view(table, "", table.values[0], float(np.log2(table.lrs[0])))
        for trace in _sweep_traces(view)[:-1]:  # all but the selected-run marker
            trace["showlegend"] = i == 0
            trace["legendgroup"] = trace["name"]
            if trace["name"].startswith(axis):
                trace["line"]["width"] = 1.8
            figure.add_trace(trace, row=row, col=col)
        figure.update_xaxes(title_text="learning rate (log2)", dtick=2, row=row, col=col)
        figure.update_yaxes(title_text="held-out loss" if col == 1 else None, row=row, col=col)
    finite = np.concatenate([d.final_loss[np.isfinite(d.final_loss)] for d in sweeps.values()])
    low = float(finite.min()) if len(finite) else 0.0
    figure.update_yaxes(range=[0.97 * low, 1.5 * low])
    figure.update_layout(
        height=height * rows,
        width=330 * cols + 80,
        legend={"orientation": "h", "y": -0.25 / rows},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure


def coord_check_figure(checks: Mapping[str, CoordCheck], height: int = 360):
    """Side-by-side panels, one per coordinate check: activation RMS against width (or depth),
    log-log, one colour per layer; solid after the first update, dotted at initialization."""
    from plotly.subplots import make_subplots

    # one y range for all panels: a flat check should look flat next to a growing one
    figure = make_subplots(
        rows=1,
        cols=len(checks),
        subplot_titles=list(checks),
        shared_yaxes=True,
        horizontal_spacing=0.04,
    )
    for col, check in enumerate(checks.values(), start=1):
        table = check.table
        for i, layer in enumerate(dict.fromkeys(table.layer)):
            color = LAYER_COLORS[i % len(LAYER_COLORS)]
            for step, dash in ((0, "dot"), (1, "solid")):
                rows = table[(table.layer == layer) & (table.step == step)].sort_values("axis")
                figure.add_trace(
                    {
                        "type": "scatter",
                        "x": rows.axis.to_numpy(),
                        "y": rows.rms.to_numpy(),
                        "mode": "lines+markers",
                        "name": f"{layer}" + (" (init)" if step == 0 else " (step 1)"),
                        "legendgroup": layer,
                        "showlegend": col == 1,
                        "line": {"color": color, "dash": dash},
                    },
                    row=1,
                    col=col,
                )
        axis = "width" if table.axis.equals(table.width) else "depth"
        figure.update_xaxes(
            type="log", title_text=axis, dtick=np.log10(2), tickformat="d", row=1, col=col
        )
        figure.update_yaxes(type="log", tickformat=".2g", row=1, col=col)
    figure.update_yaxes(title_text="activation RMS", row=1, col=1)
    figure.update_layout(
        height=height,
        width=330 * len(checks) + 80,
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure


def lr_width_app(smoke: bool = False) -> Explorer:
    """Notebook 03's explorer on its own (the served app), over the notebook's own sweeps:
    computed once (about a minute in full size), then read from the sweep cache."""
    return lr_width_explorer(width_sweeps(smoke=smoke))


def lr_depth_app(smoke: bool = False) -> Explorer:
    """Notebook 04's explorer on its own (the served app), over the notebook's own sweeps."""
    sweeps = depth_sweeps(smoke=smoke)
    return lr_depth_explorer({DEPTH_CONFIGS[name]: df for name, df in sweeps.items()})
