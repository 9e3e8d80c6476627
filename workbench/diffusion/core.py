"""What every solver receives: the `Evaluator` (its only way to the model), the `Grid` of a
solve, the `SolverOptions`, and the `SolverSpec` a solver is registered with.

    solver(ev: Evaluator, x: Tensor, grid: Grid, opts: SolverOptions) -> Tensor

`Evaluator` counts model calls (NFE) and refuses NaN/inf outputs with the time at which they
appeared (a `ModelOutputError`, which says whether the model or the solve is to blame: a sample
that has already blown up to NaN/inf is the solve's divergence). The registry of solvers is
`workbench.diffusion.solvers.SOLVERS`; `sample` is in `workbench.diffusion.sampling`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from workbench.diffusion.models import DiffusionModel, to_data_and_noise
from workbench.diffusion.schedules import DTYPE, NoiseSchedule


class ModelOutputError(FloatingPointError):
    """The model returned NaN or infinity (at a finite sample: the model's fault; at a sample
    the solve had already driven to NaN/inf: the solve diverged)."""


class Evaluator:
    """Calls the model, converts its output to (x_0, eps), and counts the calls."""

    def __init__(self, model: DiffusionModel, schedule: NoiseSchedule):
        self.model = model
        self.schedule = schedule
        self.nfe = 0
        self._levels: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    def know_grid(self, grid: Grid) -> None:
        """Reuse the grid's alpha and sigma at its times (the schedule lookup was the largest
        per-step cost of a solve with a cheap model)."""
        self._levels = {
            t: (a, s) for t, a, s in zip(grid.ts.tolist(), grid.alphas, grid.sigmas, strict=True)
        }

    def __call__(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t, dtype=DTYPE)
        output = self.model(x, t)
        self.nfe += 1
        if not torch.all(torch.isfinite(output)):
            if not torch.all(torch.isfinite(x)):
                raise ModelOutputError(
                    f"the solve diverged: the sample was already NaN or infinite at "
                    f"t={float(t):.6g} (model call {self.nfe} of {self.model.name})"
                )
            raise ModelOutputError(
                f"{self.model.name} returned NaN or infinity at t={float(t):.6g} "
                f"(model call {self.nfe})"
            )
        levels = self._levels.get(float(t.detach()))
        alpha, sigma = levels or (self.schedule.alpha(t), self.schedule.sigma(t))
        return _data_and_noise(self.model, output, x, t, self.schedule, alpha, sigma)

    def data(self, x: torch.Tensor, t) -> torch.Tensor:
        return self(x, t)[0]

    def noise(self, x: torch.Tensor, t) -> torch.Tensor:
        return self(x, t)[1]


def model_data_and_noise(model: DiffusionModel, x, t, schedule: NoiseSchedule, alpha, sigma):
    """(x_0, eps) from `model` at (x, t) on `schedule`, alpha and sigma given (uncounted)."""
    return _data_and_noise(model, model(x, t), x, t, schedule, alpha, sigma)


def _data_and_noise(model: DiffusionModel, output, x, t, schedule, alpha, sigma):
    """A model output as (x_0, eps) (at sigma = 0 a data prediction implies eps = 0: see
    `to_data_and_noise`)."""
    derivatives = schedule.derivatives(t) if model.prediction == "velocity" else (None, None)
    return to_data_and_noise(output, model.prediction, x, alpha, sigma, *derivatives)


@dataclass(frozen=True)
class Grid:
    """The times of a solve with alpha, sigma and lambda precomputed at each."""

    ts: torch.Tensor
    alphas: torch.Tensor
    sigmas: torch.Tensor
    lambdas: torch.Tensor
    schedule: NoiseSchedule

    @classmethod
    def of(cls, schedule: NoiseSchedule, ts: torch.Tensor) -> Grid:
        return cls(ts, schedule.alpha(ts), schedule.sigma(ts), schedule.lambda_(ts), schedule)

    @property
    def steps(self) -> int:
        return len(self.ts) - 1


@dataclass
class SolverOptions:
    """Options every solver receives; each uses those that apply to it."""

    order: int
    lower_order_final: bool = True  # drop to first/second order on the last steps (few steps)
    corrector: str | None = None  # "unic": UniPC's corrector after a multistep predictor
    generator: torch.Generator | None = None  # for stochastic solvers
    callback: Callable[[int, torch.Tensor], None] | None = None
    # a solver's own options, by name (SolverSpec.options lists those it takes), e.g.
    # DPM-Solver-v3's precomputed statistics {"ems": EMS}
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SolverSpec:
    name: str
    fn: Callable
    orders: tuple[int, ...]
    default_order: int
    description: str
    stochastic: bool = False
    accepts_corrector: bool = False
    options: tuple[str, ...] = ()  # the solver-specific options it takes (SolverOptions.extra)
    # the ends ("t_start", "t_end") where it runs with an infinite lambda (a path's pure noise
    # alpha = 0 at t = 1, its data sigma = 0 at t = 0): DDIM both, since it never steps in lambda
    # or in sigma / alpha; solvers in sigma / alpha can end at sigma = 0; the others neither
    infinite_log_snr: tuple[str, ...] = ()


def check_x_T(x_T) -> torch.Tensor:
    """x_T as a tensor, refused if it holds NaN or infinity (one isfinite pass, on entry)."""
    if not isinstance(x_T, torch.Tensor):
        x_T = torch.as_tensor(np.asarray(x_T, dtype=np.float64), dtype=DTYPE)
    if x_T.ndim == 0 or x_T.numel() == 0:
        raise ValueError(f"x_T must hold at least one point, got shape {tuple(x_T.shape)}")
    finite = torch.isfinite(x_T)
    if not bool(finite.all()):
        index = tuple(int(i) for i in torch.nonzero(~finite)[0])
        value = float(x_T[index])
        shown = "NaN" if math.isnan(value) else str(value)
        raise ValueError(
            f"x_T contains {shown} at index {index} (of shape {tuple(x_T.shape)}); "
            "the starting noise must be finite"
        )
    return x_T


def prior_noise(schedule: NoiseSchedule, n: int, dim: int, seed: int | torch.Generator = 0):
    """n starting points x_T ~ N(0, sigma(t_max)^2 I) of a solve, float64 (the one place the
    workbench draws them; a generator continues its stream, an int seeds a new one)."""
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    noise = torch.randn(int(n), int(dim), generator=generator, dtype=DTYPE)
    return float(schedule.sigma(schedule.t_max)) * noise
