"""What notebook 05 and its explorer select from: learning-rate sweeps on the quadratic family.

An ``OptimizerStudy`` fixes the step budget, the learning-rate grid and the seed, and hands
out one ``LRSweep`` per (condition number, rotated, preconditioning frequency), computed on
first request (through ``run_sweep``, so also cached on disk) and kept in memory after. The
seconds per step of each (optimizer, frequency) are measured once, at its tuned learning rate:
cost does not depend on the condition number or the basis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim.problems import KroneckerQuadratic
from workbench.optim.race import LR_LOG2, LRSweep, lr_sweep, train
from workbench.optim.registry import OPTIMIZERS, optimizer_spec


@dataclass
class OptimizerStudy:
    """Sweeps of every optimizer on KroneckerQuadratic(kappa, rotated), cached per setting."""

    steps: int = 200
    lr_log2: tuple[int, int] = (LR_LOG2[0], LR_LOG2[-1])
    seed: int = 0
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS)
    progress: bool = False
    _sweeps: dict = field(default_factory=dict, init=False, repr=False)
    _seconds: dict = field(default_factory=dict, init=False, repr=False)

    def problem(self, kappa: float, rotated: bool) -> KroneckerQuadratic:
        return KroneckerQuadratic(kappa=kappa, rotated=rotated, seed=self.seed)

    @property
    def target(self) -> float:
        return KroneckerQuadratic.target

    def sweep(self, kappa: float, rotated: bool, frequency: int | None = None) -> LRSweep:
        """Every optimizer over the learning-rate grid (``frequency`` None: each default)."""
        key = (float(kappa), bool(rotated), frequency)
        if key not in self._sweeps:
            self._sweeps[key] = lr_sweep(
                "quadratic",
                self.optimizers,
                self.steps,
                kappa=float(kappa),
                rotated=bool(rotated),
                frequency=frequency,
                seed=self.seed,
                lr_log2=self.lr_log2,
                progress=self.progress,
            )
        return self._sweeps[key]

    def seconds_per_step(
        self, optimizer: str, frequency: int | None, kappa: float, rotated: bool
    ) -> float:
        """Wall clock per step (gradient and update), timed once per (optimizer, frequency)."""
        if not optimizer_spec(optimizer).uses_frequency:
            frequency = None
        key = (optimizer, frequency)
        if key not in self._seconds:
            sweep = self.sweep(kappa, rotated, frequency)
            lr = sweep.tuned(optimizer).lr
            trace = train(
                self.problem(kappa, rotated), optimizer, lr, self.steps, frequency, timed=True
            )
            self._seconds[key] = float(trace.seconds[-1]) / (len(trace.losses) - 1)
        return self._seconds[key]

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
