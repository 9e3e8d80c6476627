"""Notebook 05's study: its sizes, the quadratic sweeps its explorer selects from, the race.

``study_size(smoke)`` defines the notebook's SMOKE and full sizes once; the notebook and its
served explorer (``widgets.explorers.optimizers.optimizers_app``) both read them, so the page
shows what the notebook shows. An ``OptimizerStudy`` fixes the step budget, the learning-rate
grid and the seed, and hands out one ``LRSweep`` per (condition number, rotated,
preconditioning frequency); ``view`` selects what the explorer draws from those. The seconds
per step of each (optimizer, frequency) are measured once, at its tuned learning rate: cost
does not depend on the condition number or the basis. ``race_sweeps`` and ``run_races`` are
the notebook's race on the rotated quadratic, matrix least squares and the MLP.

Sweeps are kept in memory by the content of their arguments (``SWEEPS``; ``run_sweep`` keeps
them on disk too), so the notebook's race on the quadratic and the explorer share one sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.memo import Memo
from workbench.optim.problems import PROBLEMS, KroneckerQuadratic, Problem
from workbench.optim.race import (
    LR_LOG2,
    LRSweep,
    Run,
    Trace,
    lr_sweep,
    problem_from_cell,
    race,
    race_table,
    steps_to_target,
    train,
)
from workbench.optim.registry import OPTIMIZERS, optimizer_spec


@dataclass(frozen=True)
class StudySize:
    """How large notebook 05 and its served explorer make the study."""

    quad_steps: int  # steps per run on the quadratics (and least squares)
    mlp_steps: int  # steps per run on the MLP
    lr_log2: tuple[int, int]  # every optimizer tries lr = 2^k, k in this range
    kappas: tuple[float, ...]  # condition numbers of the rotation table
    gd_kappas: tuple[float, ...]  # gradient descent's measured rates (kappa 1e3: 9,000 steps)
    race_kappa: float = 1e3  # condition number of the race's quadratic and least squares


def study_size(smoke: bool) -> StudySize:
    """SMOKE: seconds, every code path (40 steps, learning rates 2^-5..2^-1, one condition
    number); full: the notebook's measurements."""
    if smoke:
        return StudySize(40, 40, (-5, -1), (1e3,), (10.0, 100.0))
    return StudySize(200, 300, (-12, 2), (1e2, 1e3, 1e4), (10.0, 100.0, 1000.0))


SWEEPS = Memo("optimizer learning-rate sweeps", maxsize=64)
SECONDS_PER_STEP = Memo("optimizer seconds per step", maxsize=64)


# Seconds per step of one run on the 16 x 16 quadratic, gradient included, averaged over the
# eight optimizers (measured: a full-size sweep, 8 x 15 rates x 200 steps, took 10.7 s on two
# shared cores): a first visit's estimate before this process has timed any sweep.
SECONDS_PER_RUN_STEP = 4.5e-4


def sweep_arguments(
    problem: str,
    optimizers: tuple[str, ...],
    steps: int,
    *,
    lr_log2: tuple[int, int],
    seed: int,
    kappa: float | None = None,
    rotated: bool | None = None,
    frequency: int | None = None,
) -> dict:
    """``lr_sweep``'s arguments as ``SWEEPS`` keys them (progress aside)."""
    return {
        "problem": problem,
        "optimizers": tuple(optimizers),
        "steps": steps,
        "lr_log2": tuple(lr_log2),
        "seed": seed,
        "kappa": kappa,
        "rotated": rotated,
        "frequency": frequency,
    }


def cached_sweep(
    problem: str, optimizers: tuple[str, ...], steps: int, *, progress: bool = False, **setting
) -> LRSweep:
    """``lr_sweep``, kept in memory by the content of its arguments (progress aside);
    ``setting`` is ``sweep_arguments``' keywords (lr_log2, seed, kappa, rotated, frequency)."""
    return memoized_sweep(sweep_arguments(problem, optimizers, steps, **setting), progress)


def memoized_sweep(arguments: dict, progress: bool = False) -> LRSweep:
    """``lr_sweep(**arguments)`` from ``SWEEPS``, computed there on a first visit."""
    return SWEEPS.get(arguments, lambda: lr_sweep(**arguments, progress=progress))


@dataclass(frozen=True)
class Entry:
    """One optimizer in one explorer update: its tuned rate and the run the shift selects."""

    optimizer: str
    tuned_lr_log2: int
    run: Run  # the swept rate nearest to tuned x 2^shift (the grid's end when past it)
    runs: list[Run]  # every swept rate, for the sensitivity curve
    seconds_per_step: float
    steps_to_target: int | None  # None: not reached
    requested_lr_log2: int  # tuned + shift, which may lie past the swept grid

    @property
    def clamped(self) -> bool:
        """The shift asked for a rate past the swept grid; ``run`` is the grid's end."""
        return self.run.lr_log2 != self.requested_lr_log2

    @property
    def seconds_to_target(self) -> float | None:
        """Measured seconds per step x steps to target."""
        if self.steps_to_target is None:
            return None
        return self.steps_to_target * self.seconds_per_step


@dataclass(frozen=True)
class OptimizerView:
    """What the explorer draws for one setting of its controls."""

    kappa: float
    rotated: bool
    frequency: int | None
    lr_shift: int
    target: float
    entries: list[Entry]


@dataclass(frozen=True)
class OptimizerStudy:
    """Sweeps of every optimizer on KroneckerQuadratic(kappa, rotated), memoized per setting."""

    steps: int = 200
    lr_log2: tuple[int, int] = (LR_LOG2[0], LR_LOG2[-1])
    seed: int = 0
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS)
    progress: bool = field(default=False, compare=False)  # bars do not change a result

    def problem(self, kappa: float, rotated: bool) -> KroneckerQuadratic:
        return KroneckerQuadratic(kappa=kappa, rotated=rotated, seed=self.seed)

    @property
    def target(self) -> float:
        return KroneckerQuadratic.target

    def _sweep_arguments(self, kappa: float, rotated: bool, frequency: int | None) -> dict:
        return sweep_arguments(
            "quadratic",
            self.optimizers,
            self.steps,
            lr_log2=self.lr_log2,
            seed=self.seed,
            kappa=float(kappa),
            rotated=bool(rotated),
            frequency=frequency,
        )

    def sweep(self, kappa: float, rotated: bool, frequency: int | None = None) -> LRSweep:
        """Every optimizer over the learning-rate grid (``frequency`` None: each default)."""
        return memoized_sweep(self._sweep_arguments(kappa, rotated, frequency), self.progress)

    def seconds_per_step(
        self, optimizer: str, frequency: int | None, kappa: float, rotated: bool
    ) -> float:
        """Wall clock per step (gradient and update), timed once per (optimizer, frequency)."""
        key = self._timing_key(optimizer, frequency)
        usable = key[-1]

        def measure() -> float:
            lr = self.sweep(kappa, rotated, frequency).tuned(optimizer).lr
            trace = train(
                self.problem(kappa, rotated), optimizer, lr, self.steps, usable, timed=True
            )
            return float(trace.seconds[-1]) / (len(trace.losses) - 1)

        return SECONDS_PER_STEP.get(key, measure)

    def _timing_key(self, optimizer: str, frequency: int | None) -> tuple:
        """``SECONDS_PER_STEP``'s key: a method without a frequency is timed once for all."""
        usable = frequency if optimizer_spec(optimizer).uses_frequency else None
        return (self, optimizer, usable)

    def view(
        self,
        optimizers: tuple[str, ...],
        lr_shift: int,
        kappa: float,
        rotated: bool,
        frequency: int | None,
    ) -> OptimizerView:
        """Each optimizer's runs, and the swept one nearest to its tuned rate x 2^lr_shift."""
        sweep = self.sweep(kappa, rotated, frequency)
        entries = []
        for name in optimizers:
            tuned = sweep.tuned_lr_log2(name)
            runs = sweep.runs(name)
            requested = tuned + lr_shift
            run = min(runs, key=lambda r: abs(r.lr_log2 - requested))
            entries.append(
                Entry(
                    optimizer=name,
                    tuned_lr_log2=tuned,
                    run=run,
                    runs=runs,
                    seconds_per_step=self.seconds_per_step(name, frequency, kappa, rotated),
                    steps_to_target=steps_to_target(run.losses, self.target),
                    requested_lr_log2=requested,
                )
            )
        return OptimizerView(kappa, rotated, frequency, lr_shift, self.target, entries)

    @property
    def max_lr_shift(self) -> int:
        """The widest shift that can still move an optimizer: the grid's span in octaves."""
        return self.lr_log2[1] - self.lr_log2[0]

    def first_visit_seconds(
        self, optimizers: tuple[str, ...], kappa: float, rotated: bool, frequency: int | None
    ) -> float | None:
        """About how long ``view`` will compute at this setting, None when it only selects
        (the sweep and every selected optimizer's step timing are in memory)."""
        arguments = self._sweep_arguments(kappa, rotated, frequency)
        sweep_cached = arguments in SWEEPS
        missing_timings = sum(
            self._timing_key(name, frequency) not in SECONDS_PER_STEP for name in optimizers
        )
        if sweep_cached and not missing_timings:
            return None
        # a sweep is one run per grid rate and optimizer, a timing one run of one optimizer
        run_seconds = self.steps * SECONDS_PER_RUN_STEP
        grid = self.max_lr_shift + 1
        sweep_seconds = (
            0.0
            if sweep_cached
            else SWEEPS.typical_seconds() or (len(self.optimizers) * grid * run_seconds)
        )
        return sweep_seconds + missing_timings * run_seconds

    def rotation_table(self, kappas: tuple[float, ...]) -> pd.DataFrame:
        """Tuned final loss per optimizer, axis-aligned and rotated, for each condition number."""
        columns = {}
        for kappa in kappas:
            for rotated in (False, True):
                table = self.sweep(kappa, rotated).table(self.target)
                columns[(kappa, "rotated" if rotated else "axis-aligned")] = table["final loss"]
        return pd.DataFrame(columns).rename_axis(columns=["kappa", "basis"])

    def rotation_cost(self, kappa: float) -> pd.Series:
        """Final loss rotated / axis-aligned per optimizer: 1 for a basis-independent method."""
        axis = self.sweep(kappa, False).table(self.target)["final loss"]
        rotated = self.sweep(kappa, True).table(self.target)["final loss"]
        return (rotated / axis).rename("rotated / axis-aligned")

    def rotation_metrics(self, kappas: tuple[float, ...]) -> dict[str, dict[str, float]]:
        """The rotation table's recorded numbers: log10 of each tuned final loss, by row
        "kappa<k>.<basis>.<optimizer>" (one column, log10_final_loss)."""
        return {
            f"kappa{kappa:.0f}.{basis}.{name}": {"log10_final_loss": np.log10(loss)}
            for (kappa, basis), column in self.rotation_table(kappas).items()
            for name, loss in column.items()
        }

    def basis_invariant(self, kappa: float, rtol: float = 1e-3) -> list[str]:
        """The optimizers whose final loss is the same in both bases (to ``rtol``), sorted."""
        cost = self.rotation_cost(kappa)
        return sorted(cost[(cost - 1).abs() < rtol].index)


def study_for(size: StudySize, seed: int = 0) -> OptimizerStudy:
    """The quadratic study at a notebook size (shared by the notebook and its explorer)."""
    return OptimizerStudy(steps=size.quad_steps, lr_log2=size.lr_log2, seed=seed)


# ------------------------------------------------------------------------------- the race


@dataclass(frozen=True)
class RaceSetup:
    """One problem of the race: which, how many steps, and its setting."""

    problem: str  # an id in PROBLEMS
    steps: int
    kappa: float | None = None
    rotated: bool | None = None

    @property
    def label(self) -> str:
        """E.g. "quadratic (rotated, kappa 1e3)"."""
        setting = ["rotated"] if self.rotated else []
        if self.kappa is not None:
            setting.append(f"kappa 1e{math.log10(self.kappa):.0f}")
        name = PROBLEMS.label(self.problem)
        return f"{name} ({', '.join(setting)})" if setting else name

    def build(self, seed: int) -> Problem:
        return problem_from_cell(self.problem, self.kappa, self.rotated, seed)


def race_setups(size: StudySize) -> dict[str, RaceSetup]:
    """The rotated quadratic and least squares at the race's kappa, and the MLP, by id."""
    return {
        "quadratic": RaceSetup("quadratic", size.quad_steps, size.race_kappa, True),
        "least_squares": RaceSetup("least_squares", size.quad_steps, size.race_kappa),
        "mlp": RaceSetup("mlp", size.mlp_steps),
    }


def race_sweeps(size: StudySize, seed: int = 0) -> dict[str, LRSweep]:
    """Every optimizer's learning-rate sweep on each race problem, by problem id."""
    return {
        key: cached_sweep(
            setup.problem,
            tuple(OPTIMIZERS),
            setup.steps,
            lr_log2=size.lr_log2,
            seed=seed,
            kappa=setup.kappa,
            rotated=setup.rotated,
        )
        for key, setup in race_setups(size).items()
    }


@dataclass(frozen=True)
class RaceResult:
    """One problem's race: each optimizer at its tuned rate, timed, and the table of it."""

    setup: RaceSetup
    target: float
    traces: dict[str, Trace]
    table: pd.DataFrame  # race_table's columns, one row per optimizer

    @property
    def label(self) -> str:
        return self.setup.label


def run_race(setup: RaceSetup, sweep: LRSweep, seed: int = 0) -> RaceResult:
    """Every optimizer of ``sweep`` at its tuned learning rate (timed, so not memoized)."""
    problem = setup.build(seed)
    learning_rates = {name: sweep.tuned(name).lr for name in sweep.optimizers}
    traces = race(problem, learning_rates, setup.steps)
    # the state's size relative to the parameters' float64 bytes
    table = race_table(traces, problem.target, problem.n_params * 8)
    return RaceResult(setup, problem.target, traces, table)


def run_races(size: StudySize, sweeps: dict[str, LRSweep], seed: int = 0) -> dict[str, RaceResult]:
    """The race on every problem of ``race_setups``, by problem id."""
    return {key: run_race(setup, sweeps[key], seed) for key, setup in race_setups(size).items()}
