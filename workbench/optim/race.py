"""The race: each optimizer at its tuned learning rate, in steps, seconds and bytes.

``train`` runs one optimizer on one problem and returns a ``Trace`` (relative losses, whether
it diverged, optionally cumulative wall-clock seconds, optimizer-state bytes). ``sweep_cell``
is the unit of the learning-rate sweep: a pure function of its arguments (a problem
description, an optimizer, a frequency, a step budget) returning one row per learning rate
with its loss curve, so ``workbench.sweep.run_sweep`` can cache it on disk and a distributed
backend can run it anywhere. ``lr_sweep`` runs the cells of several optimizers and returns an
``LRSweep``, which indexes the runs and reads off each optimizer's tuned learning rate;
``race`` reruns the tuned ones with a clock and ``race_table`` tabulates them.

A run diverges when its loss is not finite or exceeds ``DIVERGED_ABOVE`` times the start, or
when its optimizer's step fails on a non-finite gradient (a ``torch.linalg.LinAlgError``); it
stops there and its final loss counts as infinite, and a sweep or race goes on with the other
runs. Nonsense arguments (a NaN or infinite learning rate, a reversed ``lr_log2`` range, a
non-integer step count) are refused with a ValueError before anything runs.

The "final loss" of a run is the geometric mean of its relative loss over the last 10% of
steps, so a method that oscillates at the end (Muon, Adam without a decaying learning rate) is
scored by its level, not by where the last oscillation happened to land.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim._common import check_lr, state_bytes
from workbench.optim.problems import Problem, make_problem
from workbench.optim.registry import OPTIMIZERS, optimizer_spec
from workbench.progress import progress as progress_bar
from workbench.registry import unknown_choice
from workbench.sweep import run_sweep

DIVERGED_ABOVE = 1e3
FINAL_FRACTION = 0.1
# Learning rates of every sweep: powers of two, shared by all optimizers so their sensitivity
# curves sit on one axis.
LR_LOG2 = tuple(range(-12, 3))


@dataclass(frozen=True)
class Trace:
    """One training run: relative losses at steps 0..len-1 (shorter if it diverged)."""

    optimizer: str
    lr: float
    losses: np.ndarray
    diverged: bool
    state_bytes: int
    seconds: np.ndarray | None = None  # cumulative wall clock at each loss, if timed
    step_seconds: float | None = None  # mean seconds in optimizer.step() alone, if timed

    @property
    def final_loss(self) -> float:
        return final_loss(self.losses, self.diverged)

    def steps_to(self, target: float) -> int | None:
        return steps_to_target(self.losses, target)

    def seconds_to(self, target: float) -> float | None:
        step = self.steps_to(target)
        if step is None or self.seconds is None:
            return None
        return float(self.seconds[step])


def final_loss(losses: np.ndarray, diverged: bool) -> float:
    """Geometric mean of the last 10% of relative losses; infinity for a diverged run."""
    if diverged:
        return math.inf
    tail = np.asarray(losses)[-max(1, round(FINAL_FRACTION * (len(losses) - 1))) :]
    return float(np.exp(np.mean(np.log(np.maximum(tail, 1e-300)))))


def steps_to_target(losses: np.ndarray, target: float) -> int | None:
    """The first step at which the relative loss is <= target, or None if never."""
    reached = np.flatnonzero(np.asarray(losses) <= target)
    return int(reached[0]) if len(reached) else None


def train(
    problem: Problem,
    optimizer: str,
    lr: float,
    steps: int,
    frequency: int | None = None,
    *,
    timed: bool = False,
) -> Trace:
    """``steps`` optimizer steps from the problem's start; losses relative to the start.

    ``timed`` records cumulative wall clock (gradient plus optimizer step) at each loss, and
    the mean time of ``optimizer.step()`` alone.
    """
    _check_steps(steps)
    params = problem.init_params()
    opt = optimizer_spec(optimizer).make(params, lr, frequency)
    losses = np.empty(steps + 1)
    seconds = np.zeros(steps + 1) if timed else None
    step_time = 0.0
    start = time.perf_counter()
    initial = problem.loss_and_grad(params)
    losses[0] = 1.0
    diverged = False
    for step in range(1, steps + 1):
        before = time.perf_counter()
        try:
            opt.step()
        except torch.linalg.LinAlgError:  # a factorization of NaN statistics: diverged
            losses[step] = math.nan
            losses, diverged = losses[: step + 1], True
            seconds = seconds[: step + 1] if timed else None
            break
        step_time += time.perf_counter() - before
        loss = problem.loss_and_grad(params) / initial
        losses[step] = loss
        if timed:
            seconds[step] = time.perf_counter() - start
        if not (math.isfinite(loss) and loss <= DIVERGED_ABOVE):
            losses, diverged = losses[: step + 1], True
            seconds = seconds[: step + 1] if timed else None
            break
    return Trace(
        optimizer=optimizer,
        lr=lr,
        losses=losses,
        diverged=diverged,
        state_bytes=state_bytes(opt),
        seconds=seconds,
        step_seconds=step_time / (len(losses) - 1) if timed else None,
    )


def _check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def check_lr_log2(lr_log2) -> tuple[int, int]:
    """(low, high) exponents of a learning-rate grid 2^low..2^high: integers, low <= high."""
    try:
        low, high = lr_log2
    except (TypeError, ValueError):
        raise ValueError(
            f"lr_log2 must be a pair (low, high) of integers, got {lr_log2!r}"
        ) from None
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(
                f"lr_log2 must be a pair (low, high) of integers (exponents of 2), got {lr_log2!r}"
            )
    if not (-1000 <= low and high <= 1000):
        raise ValueError(f"lr_log2 must lie in -1000..1000 (2^k as a float), got {tuple(lr_log2)}")
    if low > high:
        raise ValueError(
            f"lr_log2 must be (low, high) with low <= high, got {tuple(lr_log2)}: "
            f"the grid 2^{low}..2^{high} is empty (did you mean ({high}, {low})?)"
        )
    return int(low), int(high)


def problem_from_cell(
    problem: str, kappa: float | None = None, rotated: bool | None = None, seed: int = 0
) -> Problem:
    """The problem a sweep cell describes (options that do not apply are None)."""
    options = {"seed": seed}
    if kappa is not None:
        options["kappa"] = kappa
    if rotated is not None:
        options["rotated"] = rotated
    return make_problem(problem, **options)


def sweep_cell(
    problem: str,
    optimizer: str,
    steps: int,
    kappa: float | None = None,
    rotated: bool | None = None,
    frequency: int | None = None,
    seed: int = 0,
    lr_log2_min: int = LR_LOG2[0],
    lr_log2_max: int = LR_LOG2[-1],
) -> list[dict]:
    """One run per learning rate 2^k, k = lr_log2_min..lr_log2_max, as one row each.

    A pure function of its arguments (the unit of ``run_sweep``'s cache). Columns: lr_log2,
    lr, final_loss (inf if diverged), diverged, state_bytes, losses (relative, per step).
    """
    lr_log2_min, lr_log2_max = check_lr_log2((lr_log2_min, lr_log2_max))
    target = problem_from_cell(problem, kappa, rotated, seed)
    rows = []
    for k in range(lr_log2_min, lr_log2_max + 1):
        trace = train(target, optimizer, 2.0**k, steps, frequency)
        rows.append(
            {
                "lr_log2": k,
                "lr": 2.0**k,
                "final_loss": trace.final_loss,
                "diverged": trace.diverged,
                "state_bytes": trace.state_bytes,
                "losses": trace.losses,
            }
        )
    return rows


@dataclass(frozen=True)
class Run:
    """One run of a sweep: an optimizer at one learning rate 2^lr_log2."""

    optimizer: str
    lr_log2: int
    final_loss: float
    diverged: bool
    state_bytes: int
    losses: np.ndarray

    @property
    def lr(self) -> float:
        return 2.0**self.lr_log2


@dataclass
class LRSweep:
    """Every optimizer's runs over the learning-rate grid on one problem, indexed for lookup."""

    problem: dict  # the cells' problem description: problem, kappa, rotated, seed
    steps: int
    frequency: int | None
    rows: pd.DataFrame  # one row per (optimizer, lr): the cells' and sweep_cell's columns
    _runs: dict[str, dict[int, Run]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._runs = {}
        for row in self.rows.itertuples(index=False):
            run = Run(
                row.optimizer,
                int(row.lr_log2),
                float(row.final_loss),
                bool(row.diverged),
                int(row.state_bytes),
                np.asarray(row.losses),
            )
            self._runs.setdefault(run.optimizer, {})[run.lr_log2] = run

    @property
    def optimizers(self) -> list[str]:
        return list(self._runs)

    def runs(self, optimizer: str) -> list[Run]:
        """The optimizer's runs in increasing learning rate."""
        if optimizer not in self._runs:
            raise unknown_choice("optimizer in this sweep", optimizer, self.optimizers)
        return [self._runs[optimizer][k] for k in sorted(self._runs[optimizer])]

    def tuned_lr_log2(self, optimizer: str) -> int:
        """The grid learning rate with the lowest final loss (ties: the larger one)."""
        best = min(self.runs(optimizer), key=lambda run: (run.final_loss, -run.lr_log2))
        return best.lr_log2

    def run(self, optimizer: str, lr_log2: int) -> Run:
        runs = self._runs.get(optimizer) or {r.lr_log2: r for r in self.runs(optimizer)}
        if lr_log2 not in runs:
            raise ValueError(
                f"learning rate 2^{lr_log2} is outside the swept range 2^{min(runs)}..2^{max(runs)}"
            )
        return runs[lr_log2]

    def tuned(self, optimizer: str) -> Run:
        return self.run(optimizer, self.tuned_lr_log2(optimizer))

    def near_optimal_octaves(self, optimizer: str, factor: float = 10.0) -> int:
        """How many grid learning rates (octaves) end within ``factor`` of the best loss."""
        best = self.tuned(optimizer).final_loss
        return sum(run.final_loss <= factor * best for run in self.runs(optimizer))

    def table(self, target: float) -> pd.DataFrame:
        """Per optimizer at its tuned learning rate: lr, final loss, steps to target, bytes."""
        rows = []
        for name in self.optimizers:
            run = self.tuned(name)
            reached = steps_to_target(run.losses, target)
            rows.append(
                {
                    "optimizer": name,
                    "tuned lr": run.lr,
                    "final loss": run.final_loss,
                    "steps to target": reached,
                    "state bytes": run.state_bytes,
                    "octaves within 10x": self.near_optimal_octaves(name),
                }
            )
        return pd.DataFrame(rows).set_index("optimizer")


def octaves_table(sweeps: Mapping[str, LRSweep]) -> pd.DataFrame:
    """Grid learning rates within 10x of the best final loss: optimizers x sweeps (by key)."""
    optimizers = next(iter(sweeps.values())).optimizers
    return pd.DataFrame(
        {key: [sweep.near_optimal_octaves(o) for o in optimizers] for key, sweep in sweeps.items()},
        index=optimizers,
    ).rename_axis("octaves within 10x of the best")


def lr_sweep(
    problem: str,
    optimizers: list[str] | tuple[str, ...],
    steps: int,
    *,
    kappa: float | None = None,
    rotated: bool | None = None,
    frequency: int | None = None,
    seed: int = 0,
    lr_log2: tuple[int, int] = (LR_LOG2[0], LR_LOG2[-1]),
    progress: bool = True,
    backend=None,
) -> LRSweep:
    """Sweep every optimizer over learning rates 2^lr_log2[0]..2^lr_log2[1] (cached on disk).

    ``frequency`` applies to the optimizers that have a preconditioning frequency; the others
    run once whatever it is (their cells carry frequency None). ``backend`` is passed to
    ``run_sweep`` (None: in this process; e.g. "processes" or "dask" to spread the cells).
    """
    problem_from_cell(problem, kappa, rotated, seed)  # refuse a bad problem before any work
    lr_log2 = check_lr_log2(lr_log2)
    _check_steps(steps)
    if isinstance(optimizers, str) or not len(optimizers):
        raise ValueError(
            f"optimizers must be a non-empty list of names from {', '.join(OPTIMIZERS)}, "
            f"got {optimizers!r}"
        )
    cells = [
        {
            "problem": problem,
            "kappa": kappa,
            "rotated": rotated,
            "seed": seed,
            "optimizer": optimizer_spec(name).name,
            "frequency": frequency if optimizer_spec(name).uses_frequency else None,
            "steps": steps,
            "lr_log2_min": lr_log2[0],
            "lr_log2_max": lr_log2[1],
        }
        for name in optimizers
    ]
    rows = run_sweep(sweep_cell, cells, name="optim-lr-sweep", progress=progress, backend=backend)
    description = {"problem": problem, "kappa": kappa, "rotated": rotated, "seed": seed}
    return LRSweep(description, steps, frequency, rows)


def race(
    problem: Problem,
    learning_rates: dict[str, float],
    steps: int,
    frequency: int | None = None,
    progress: bool = True,
) -> dict[str, Trace]:
    """Each optimizer at its learning rate, timed (not cached: wall clock is a measurement).

    Every name and learning rate is checked before the first run (a NaN or infinite rate is
    refused); a run that diverges is reported as such and the race goes on."""
    _check_steps(steps)
    for name, lr in learning_rates.items():
        spec = optimizer_spec(name)
        try:
            check_lr(lr)
        except ValueError:
            raise ValueError(
                f"the learning rate of {spec.name} must be a finite number >= 0, got {lr!r}"
            ) from None

    traces = {}
    for name in progress_bar(learning_rates, desc="race", disable=not progress):
        usable = frequency if optimizer_spec(name).uses_frequency else None
        traces[name] = train(problem, name, learning_rates[name], steps, usable, timed=True)
    return traces


def race_table(traces: dict[str, Trace], target: float, param_bytes: int) -> pd.DataFrame:
    """Per optimizer: tuned lr, final loss, steps and seconds to target, cost and memory.

    ``step overhead vs adam`` is the ratio of mean ``optimizer.step()`` times measured in
    this race; ``state / params`` the optimizer state's bytes over the parameters' bytes.
    """
    adam = traces.get("adam")
    rows = []
    for name, trace in traces.items():
        rows.append(
            {
                "optimizer": name,
                "lr": trace.lr,
                "final loss": trace.final_loss,
                "steps to target": trace.steps_to(target),
                "seconds to target": trace.seconds_to(target),
                "ms per step": 1e3 * trace.seconds[-1] / (len(trace.losses) - 1),
                "step overhead vs adam": (
                    trace.step_seconds / adam.step_seconds if adam is not None else None
                ),
                "state bytes": trace.state_bytes,
                "state / params": trace.state_bytes / param_bytes,
            }
        )
    return pd.DataFrame(rows).set_index("optimizer")


# How far a rerun's race numbers may move: a step or two on a near-tie, one grid octave
RACE_TOLERANCES = {"steps_to_target": {"atol": 2}, "tuned_lr_log2": {"atol": 1}}


def race_metrics(table: pd.DataFrame) -> dict[str, dict[str, int | None]]:
    """A race table's recorded numbers per optimizer, as integers: steps to target (None if
    never reached), the exponent of the tuned learning rate, and the state's bytes."""
    return {
        name: {
            "steps_to_target": None
            if pd.isna(row["steps to target"])
            else int(row["steps to target"]),
            "tuned_lr_log2": int(np.log2(row["lr"])),
            "state_bytes": int(row["state bytes"]),
        }
        for name, row in table.iterrows()
    }


def finishing_order(table: pd.DataFrame) -> str:
    """Optimizers by steps to target (those that never reach it last), then final loss."""
    steps = pd.to_numeric(table["steps to target"], errors="coerce").fillna(math.inf)
    order = sorted(table.index, key=lambda name: (steps[name], table.loc[name, "final loss"]))
    return " < ".join(order)
