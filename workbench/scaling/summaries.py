"""What notebooks 03 and 04 and their explorers show of learning-rate sweeps, computed here.

- `TransferSweep`: one `lr_sweep` frame indexed for selection: seed-averaged losses, fitted
  optima, every run's training curves, each width's (or depth's) best grid learning rate;
  `run(value, lr)` is what the explorer's training panel draws.
- `Transfer`: several sweeps across the same axis, by id with a label each: optimum table,
  drift, transfer penalty, offsets between two sweeps' optima.
- `CoordChecks`: coordinate checks by id with a label each: slope table, verdicts, growth of
  the residual stream.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.scaling.coord_check import CoordCheck, slope_table
from workbench.scaling.sweeps import (
    drift_octaves,
    optima_table,
    optimal_lr,
    seed_averaged,
    transfer_penalty,
)

SMOOTHING = 10  # steps in the running mean drawn over the noisy minibatch losses


def running_mean(curve: np.ndarray) -> np.ndarray:
    """Mean over the last SMOOTHING steps; NaN (after a divergence) stays NaN."""
    smooth = pd.Series(curve).rolling(SMOOTHING, min_periods=1).mean().to_numpy()
    return np.where(np.isfinite(curve), smooth, np.nan)


@dataclass(frozen=True)
class SweepRun:
    """One (width or depth, learning rate) of a sweep, as the training panel draws it."""

    value: int
    lr: float
    loss: float  # seed-mean final loss (inf if a seed diverged)
    curves: np.ndarray  # (seeds, steps) training loss
    smoothed: np.ndarray  # (seeds, steps) running means of `curves`
    diverged_step: int  # earliest divergence among seeds, -1 if none
    best_lr: float  # this width's (depth's) best grid learning rate
    best_curve: np.ndarray  # (steps,) seed-mean training loss at best_lr
    best_smoothed: np.ndarray  # running mean of best_curve


@dataclass(frozen=True)
class TransferSweep:
    """One sweep, indexed for selection: averaged curves, optima and every training curve."""

    axis: str
    values: tuple[int, ...]  # the widths or depths swept
    lrs: np.ndarray  # the learning-rate grid, ascending
    averaged: pd.DataFrame  # axis value, lr, loss (seed mean; inf if any seed diverged)
    optima: pd.DataFrame  # optimal_lr, indexed by the axis value
    curves: Mapping[tuple[int, float], np.ndarray]  # (value, lr) -> (seeds, steps)
    diverged_step: Mapping[tuple[int, float], int]  # earliest divergence among seeds, -1 if none
    best_lr: Mapping[int, float]  # value -> its best grid learning rate

    @classmethod
    def from_sweep(cls, df: pd.DataFrame, axis: str) -> TransferSweep:
        if df.empty:
            raise ValueError("an empty sweep has nothing to explore")
        other = "depth" if axis == "width" else "width"
        if df[other].nunique() != 1:
            raise ValueError(f"a sweep across {axis} must hold one {other}; got {set(df[other])}")
        curves, diverged = {}, {}
        for (value, lr), group in df.groupby([axis, "lr"], sort=True):
            group = group.sort_values("seed")
            curves[(int(value), float(lr))] = np.stack(group.curve.to_numpy())
            steps = group.diverged_step[group.diverged]
            diverged[(int(value), float(lr))] = int(steps.min()) if len(steps) else -1
        averaged = seed_averaged(df)
        values = tuple(int(v) for v in sorted(df[axis].unique()))
        best_lr = {}
        for value in values:
            own = averaged[averaged[axis] == value]
            best_lr[value] = float(own.lr.iloc[int(np.argmin(own.loss.to_numpy()))])
        return cls(
            axis=axis,
            values=values,
            lrs=np.sort(df.lr.unique()),
            averaged=averaged,
            optima=optimal_lr(df).reset_index().set_index(axis),
            curves=curves,
            diverged_step=diverged,
            best_lr=best_lr,
        )

    def nearest_lr(self, log2_lr: float) -> tuple[float, bool]:
        """The grid learning rate nearest to 2**log2_lr, and whether 2**log2_lr lies outside
        the grid (more than half an octave beyond its ends), so that it had to be clamped."""
        grid = np.log2(self.lrs)
        lr = float(self.lrs[int(np.argmin(np.abs(grid - log2_lr)))])
        return lr, not grid[0] - 0.5 <= log2_lr <= grid[-1] + 0.5

    def loss_curve(self, value: int) -> tuple[np.ndarray, np.ndarray]:
        """(lr, seed-mean final loss) of one width or depth, by increasing lr."""
        own = self.averaged[self.averaged[self.axis] == value].sort_values("lr")
        return own.lr.to_numpy(), own.loss.to_numpy()

    def run(self, value: int, lr: float) -> SweepRun:
        if value not in self.values:
            raise ValueError(f"{self.axis} {value} was not swept; swept: {list(self.values)}")
        averaged = self.averaged
        loss = averaged[(averaged[self.axis] == value) & (averaged.lr == lr)].loss
        curves = self.curves[(value, lr)]
        best_lr = self.best_lr[value]
        best_curve = np.nanmean(self.curves[(value, best_lr)], axis=0)
        return SweepRun(
            value=value,
            lr=lr,
            loss=float(loss.iloc[0]),
            curves=curves,
            smoothed=np.stack([running_mean(curve) for curve in curves]),
            diverged_step=self.diverged_step[(value, lr)],
            best_lr=best_lr,
            best_curve=best_curve,
            best_smoothed=running_mean(best_curve),
        )


@dataclass(frozen=True)
class Transfer:
    """Sweeps across one axis by id (a key of the study), each with a display label."""

    axis: str
    labels: Mapping[Hashable, str]
    sweeps: Mapping[Hashable, pd.DataFrame]
    summaries: Mapping[Hashable, TransferSweep]

    @classmethod
    def of(
        cls,
        sweeps: Mapping[Hashable, pd.DataFrame],
        labels: Mapping[Hashable, str],
        axis: str,
        summaries: Mapping[Hashable, TransferSweep] | None = None,
    ) -> Transfer:
        if summaries is None:
            summaries = {key: TransferSweep.from_sweep(df, axis) for key, df in sweeps.items()}
        return cls(axis, {key: labels[key] for key in sweeps}, dict(sweeps), dict(summaries))

    @property
    def table(self) -> pd.DataFrame:
        """log2 of each optimum, one column per sweep (by label), with drift and edge rows."""
        optima = {self.labels[key]: s.optima for key, s in self.summaries.items()}
        return optima_table(optima, self.axis)

    @property
    def drift(self) -> dict[Hashable, float]:
        """Octaves the optimum moves across the axis, per sweep."""
        return {key: drift_octaves(s.optima) for key, s in self.summaries.items()}

    @property
    def penalty(self) -> dict[Hashable, float]:
        """The largest model's loss at the smallest model's optimum, relative, minus 1."""
        return {
            key: transfer_penalty(
                self.sweeps[key], source=s.values[0], target=s.values[-1], axis=self.axis
            )
            for key, s in self.summaries.items()
        }

    def log2_lr(self, key: Hashable) -> pd.Series:
        """log2 of the fitted optimum per width (depth)."""
        return self.summaries[key].optima.log2_lr

    def best_loss(self, key: Hashable) -> float:
        """The lowest final loss of any run that did not diverge."""
        df = self.sweeps[key]
        return float(df[~df.diverged].final_loss.min())

    def offset(self, key: Hashable, reference: Hashable) -> float:
        """The largest |log2 optimum of `key` - that of `reference`| over the axis."""
        return float((self.log2_lr(key) - self.log2_lr(reference)).abs().max())

    def table_with_offset(self, key: Hashable, reference: Hashable, column: str) -> pd.DataFrame:
        table = self.table
        table[column] = table[self.labels[key]] - table[self.labels[reference]]
        return table

    def drift_table(self) -> pd.DataFrame:
        """Per sweep (rows by id): its label, drift in octaves and transfer penalty."""
        return pd.DataFrame(
            {
                "configuration": pd.Series(self.labels),
                "drift (octaves)": pd.Series(self.drift),
                "transfer penalty": pd.Series(self.penalty),
            }
        )


@dataclass(frozen=True)
class CoordChecks:
    """Coordinate checks by id, each with a display label."""

    checks: Mapping[str, CoordCheck]
    labels: Mapping[str, str]

    def titled(self) -> dict[str, CoordCheck]:
        return {self.labels[key]: check for key, check in self.checks.items()}

    @property
    def slopes(self) -> pd.DataFrame:
        """Steepest slope per layer, one column per check (by label), and a verdict row."""
        return slope_table(self.titled())

    def verdicts(self) -> str:
        return "Verdicts: " + ", ".join(
            f"{self.labels[key]} **{check.verdict}**" for key, check in self.checks.items()
        )

    def steepest_slope(self, key: str, layer: str) -> float:
        return float(self.checks[key].steepest.set_index("layer").slope[layer])

    def stream_growth(self) -> dict[str, float]:
        """The last block's RMS at initialization, deepest over shallowest (checks across
        depth): how much the residual stream grows with the number of blocks."""
        growth = {}
        for key, check in self.checks.items():
            stream = check.table.query("layer == 'last block' and step == 0")
            growth[key] = float(stream.rms.iloc[-1] / stream.rms.iloc[0])
        return growth
