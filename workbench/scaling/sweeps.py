"""Learning-rate sweeps across width and depth, and the optimum of each sweep.

`lr_sweep` trains every (width, depth) of a grid at every learning rate and seed; the runs of
one (width, depth) train together as one batched model (workbench.scaling.training), and each
(width, depth) is one cell of `workbench.sweep.run_sweep`, cached on disk by its config.

`optimal_lr` fits a parabola in log2(lr) to log(seed-averaged loss) over the (up to 5)
points around its minimum; a minimum at the sweep's first or last learning rate, or right
below a learning rate that diverged, is reported as such (column `edge`) with the grid
learning rate, never extrapolated.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from workbench.registry import check_choice
from workbench.scaling.models import DEFAULT_DEPTH, Architecture
from workbench.scaling.optimizers import SCALING_OPTIMIZERS
from workbench.scaling.parametrizations import DEFAULT_BASE_WIDTH, PARAMETRIZATIONS
from workbench.scaling.tasks import get_task
from workbench.scaling.training import DTYPES, check_lrs, check_steps, train_runs
from workbench.sweep import run_sweep

DEFAULT_STEPS = 150
DEFAULT_BATCH = 16
FIT_HALF_WIDTH = 2  # points on each side of the minimum: a 5-point parabola
# columns that name a configuration; optimal_lr groups by those that vary in its input
CONFIG_COLUMNS = (
    "parametrization",
    "optimizer",
    "task",
    "model",
    "alpha",
    "lr_correction",
    "steps",
    "batch_size",
)


def lr_sweep(
    *,
    parametrization: str,
    widths: Sequence[int],
    lrs: Sequence[float],
    optimizer: str = "adam",
    depths: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    steps: int | None = None,
    task: str | None = None,
    model: str = "mlp",
    alpha: float | None = None,
    lr_correction: bool = True,
    batch_size: int = DEFAULT_BATCH,
    base_width: int = DEFAULT_BASE_WIDTH,
    dtype: str = "float32",
    cache: bool = True,
    progress: bool = True,
    backend=None,
) -> pd.DataFrame:
    """One row per run: the configuration, width, depth, lr, seed, final_loss (held-out loss
    after the last step, +inf if the run diverged), diverged, diverged_step and curve (the
    training loss per step, NaN after divergence).

    `depths` defaults to (2,); with model="resmlp" they are residual blocks scaled by
    depth^-alpha (alpha defaults to 1/2 there) and, unless lr_correction=False, their learning
    rates corrected for depth (see parametrizations.ResidualScaling). `task` defaults to
    "markov". The runs of one (width, depth) train as one batched model in `dtype`; the
    (width, depth) cells run on `backend` (workbench.backends: here by default, or local
    processes, or Dask workers).
    """
    PARAMETRIZATIONS.check(parametrization)
    SCALING_OPTIMIZERS.check(optimizer)
    DTYPES.check(dtype)
    spec = get_task(task)
    lrs = _increasing(check_lrs(lrs))
    steps = check_steps(DEFAULT_STEPS if steps is None else steps)
    widths = _positive_ints("widths", widths)
    depths = _positive_ints("depths", (DEFAULT_DEPTH,) if depths is None else depths)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    # validate the model configuration once, before any cell runs
    Architecture(parametrization, model, alpha, lr_correction, base_width).build(
        widths[0], depths[0], spec.d_in, spec.d_out
    )
    config = {
        "parametrization": parametrization,
        "optimizer": optimizer,
        "task": spec.name,
        "model": model,
        "alpha": alpha,
        "lr_correction": lr_correction,
        "steps": steps,
        "batch_size": batch_size,
    }
    cells = [
        {
            **config,
            "width": w,
            "depth": d,
            "lrs": lrs,
            "seeds": seeds,
            "base_width": base_width,
            "dtype": dtype,
            "torch_version": torch.__version__,  # another torch may round differently
        }
        for w in widths
        for d in depths
    ]
    name = f"lr_sweep {PARAMETRIZATIONS[parametrization].label} {optimizer} {model}"
    if model == "resmlp":
        name += f" alpha={alpha if alpha is not None else 0.5:g}" + (
            "" if lr_correction else " global-lr"
        )
    df = run_sweep(sweep_cell, cells, name=name, cache=cache, progress=progress, backend=backend)
    return df.drop(columns=["lrs", "seeds", "base_width", "dtype", "torch_version"])


def sweep_cell(
    *,
    parametrization: str,
    optimizer: str,
    task: str,
    model: str,
    alpha: float | None,
    lr_correction: bool,
    steps: int,
    batch_size: int,
    width: int,
    depth: int,
    lrs: list[float],
    seeds: list[int],
    base_width: int,
    dtype: str,
    torch_version: str,
) -> list[dict]:
    """All learning rates and seeds of one (width, depth), trained as one batched model.
    (`torch_version` only keys the cache.)"""
    spec = get_task(task)
    architecture = Architecture(parametrization, model, alpha, lr_correction, base_width)
    net = architecture.build(width, depth, spec.d_in, spec.d_out)
    run_lrs = [lr for lr in lrs for _ in seeds]
    run_seeds = [s for _ in lrs for s in seeds]
    result = train_runs(
        net,
        spec,
        optimizer=optimizer,
        lrs=run_lrs,
        seeds=run_seeds,
        steps=steps,
        batch_size=batch_size,
        dtype=dtype,
    )
    return [
        {
            "lr": lr,
            "seed": seed,
            "final_loss": float(result.final_loss[r]),
            "diverged": bool(result.diverged[r]),
            "diverged_step": int(result.diverged_step[r]),
            "curve": result.curves[r].astype(np.float32),
        }
        for r, (lr, seed) in enumerate(zip(run_lrs, run_seeds, strict=True))
    ]


def _increasing(lrs: list[float]) -> list[float]:
    """A sweep runs low to high: a reversed, unsorted or repeated list is a mistake (a
    reversed range built as 2**k for k in range(high, low) would otherwise sweep nothing)."""
    drops = [(a, b) for a, b in itertools.pairwise(lrs) if not b > a]
    if drops:
        a, b = drops[0]
        raise ValueError(
            f"lrs must be strictly increasing (low to high), got {b:g} after {a:g} in {lrs}"
        )
    return lrs


def _positive_ints(name: str, values: Sequence[int]) -> list[int]:
    values = list(values)
    if not values or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, got {values}")
    return [int(v) for v in values]


# ------------------------------------------------------------------------------ optimum
def seed_averaged(df: pd.DataFrame) -> pd.DataFrame:
    """Mean final loss over seeds per configuration, width, depth and lr (+inf if any seed
    diverged: a learning rate that sometimes diverges is not a candidate)."""
    keys = [*_group_columns(df), "lr"]
    return (
        df.groupby(keys, sort=True, dropna=False)
        .agg(loss=("final_loss", "mean"), diverged=("diverged", "any"), seeds=("seed", "nunique"))
        .reset_index()
    )


def optimal_lr(df: pd.DataFrame) -> pd.DataFrame:
    """The optimal learning rate per width (and per depth when the sweep has several depths;
    configuration columns that vary come first in the index).

    Columns: lr (the optimum), log2_lr, loss (the fitted loss at the optimum, or the grid
    minimum when no fit is made), grid_lr (the best grid point), edge ("" when the minimum is
    bracketed; "low" / "high" at the sweep's first / last lr; "divergence" when the next
    larger lr diverged), n_fit (points in the parabola, 0 when not fitted).
    """
    missing = {"lr", "seed", "final_loss", "diverged", "width", "depth"} - set(df.columns)
    if missing:
        raise ValueError(f"optimal_lr needs the columns of lr_sweep; missing {sorted(missing)}")
    averaged = seed_averaged(df)
    groups = _group_columns(df)
    rows = []
    for key, group in averaged.groupby(groups, sort=True, dropna=False):
        group = group.sort_values("lr")
        fit = fit_optimum(group["lr"].to_numpy(), group["loss"].to_numpy())
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(groups, key, strict=True)), **fit})
    index = [c for c in groups if c not in ("width", "depth")] + ["width"]
    if df["depth"].nunique() > 1:
        index.append("depth")
    return pd.DataFrame(rows).drop(columns=[c for c in groups if c not in index]).set_index(index)


def fit_optimum(lrs: np.ndarray, losses: np.ndarray) -> dict:
    """Parabola in (log2 lr, log loss) through the points around the finite minimum."""
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if not np.isfinite(losses).any():
        nan = float("nan")
        return {
            "lr": nan,
            "log2_lr": nan,
            "loss": nan,
            "grid_lr": nan,
            "edge": "all diverged",
            "n_fit": 0,
        }
    x, y = np.log2(lrs), np.log(np.where(np.isfinite(losses), losses, np.inf))
    best = int(np.argmin(y))
    result = {
        "lr": lrs[best],
        "log2_lr": x[best],
        "loss": losses[best],
        "grid_lr": lrs[best],
        "edge": _edge(losses, best),
        "n_fit": 0,
    }
    if result["edge"]:
        return result
    low, high = best, best  # extend over consecutive finite points, up to FIT_HALF_WIDTH a side
    while low > 0 and best - low < FIT_HALF_WIDTH and np.isfinite(y[low - 1]):
        low -= 1
    while high < len(y) - 1 and high - best < FIT_HALF_WIDTH and np.isfinite(y[high + 1]):
        high += 1
    xs, ys = x[low : high + 1], y[low : high + 1]
    a, b, c = np.polyfit(xs, ys, 2)
    vertex = -b / (2 * a) if a > 0 else np.nan
    if not (np.isfinite(vertex) and xs[0] <= vertex <= xs[-1]):
        return result  # flat or concave fit: keep the grid minimum
    result.update(
        lr=float(2.0**vertex),
        log2_lr=float(vertex),
        loss=float(np.exp(np.polyval([a, b, c], vertex))),
        n_fit=len(xs),
    )
    return result


def _edge(losses: np.ndarray, best: int) -> str:
    if best == 0:
        return "low"
    if best == len(losses) - 1:
        return "high"
    if not np.isfinite(losses[best + 1]):
        return "divergence"
    return ""


def _group_columns(df: pd.DataFrame) -> list[str]:
    varying = [c for c in CONFIG_COLUMNS if c in df.columns and df[c].nunique(dropna=False) > 1]
    return [*varying, "width", "depth"]


def drift_octaves(optima: pd.DataFrame) -> float:
    """How far the optimum moves across the rows of `optimal_lr`: max - min of log2(lr).
    A row whose optimum sits at an edge of its sweep makes this a lower bound (see `edge`)."""
    values = optima["log2_lr"].to_numpy(dtype=float)
    return float(np.nanmax(values) - np.nanmin(values))


def transfer_penalty(df: pd.DataFrame, *, source: int, target: int, axis: str = "width") -> float:
    """What tuning on a proxy costs: the target model's loss at the source model's optimal
    learning rate, relative to the target's best, minus 1 (0 = perfect transfer; +inf when
    the target diverges there). Both losses are read off the target's seed-averaged curve,
    interpolated linearly in (log2 lr, log loss)."""
    check_choice("axis", axis, ("width", "depth"))
    for name, value in (("source", source), ("target", target)):
        if value not in set(df[axis]):
            raise ValueError(f"{name} {axis} {value} is not in the sweep: {sorted(set(df[axis]))}")
    optimum = fit_optimum(*_curve(df[df[axis] == source]))["log2_lr"]
    lrs, losses = _curve(df[df[axis] == target])
    x, y = np.log2(lrs), np.log(losses)
    finite = np.isfinite(y)
    if not finite.any() or not np.isfinite(optimum):
        return float("inf")
    # a learning rate past the target's last stable point would diverge there
    if optimum > x[finite].max() and not finite[-1]:
        return float("inf")
    at_source = np.interp(optimum, x[finite], y[finite])
    return float(np.exp(at_source - y[finite].min()) - 1.0)


def _curve(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(lrs, seed-averaged losses) of one width / depth, sorted by lr."""
    averaged = df.groupby("lr", sort=True).final_loss.mean()
    return averaged.index.to_numpy(dtype=float), averaged.to_numpy(dtype=float)


def optimum_table(sweeps: Mapping[str, pd.DataFrame], axis: str = "width") -> pd.DataFrame:
    """log2 of the fitted optimal lr, one column per sweep, one row per width (or depth), with
    a last row `drift` (octaves, max - min) and an `edge` row naming any optimum at an edge."""
    return optima_table(
        {label: optimal_lr(df).reset_index().set_index(axis) for label, df in sweeps.items()}, axis
    )


def optima_table(optima_by_sweep: Mapping[str, pd.DataFrame], axis: str) -> pd.DataFrame:
    """`optimum_table` from optima already fitted (`optimal_lr` frames indexed by `axis`)."""
    columns, edges, drifts = {}, {}, {}
    for label, optima in optima_by_sweep.items():
        columns[label] = optima.log2_lr
        drifts[label] = drift_octaves(optima)
        flagged = [f"{value}: {edge}" for value, edge in optima.edge.items() if edge]
        edges[label] = "; ".join(flagged)
    table = pd.DataFrame(columns)
    table.loc["drift"] = pd.Series(drifts)
    table.index.name = axis
    if any(edges.values()):
        table = table.astype(object)
        table.loc["edge"] = pd.Series(edges)
    return table
