"""A solver study on one exact problem: cached solves, errors against the reference, curves.

The explorer and notebook 01 select from what this computes: every solve is cached by its
settings, so moving a slider back and forth costs nothing after the first visit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import SOLVERS, SampleResult, reference_solution, sample
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.metrics import mean_l2_error
from workbench.toy import GaussianMixture

# Step counts for error-vs-NFE curves: dense at the few-step end where solvers differ most.
CURVE_STEPS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)


@dataclass
class SolverStudy:
    """Solvers on `mixture` under `schedule`, from fixed noise x_T ~ N(0, sigma(t_max)^2 I)."""

    mixture: GaussianMixture
    schedule: NoiseSchedule
    n_samples: int = 4000
    seed: int = 0
    model: DiffusionModel = field(init=False)
    x_T: torch.Tensor = field(init=False)
    _cache: dict = field(init=False, default_factory=dict, repr=False)
    _errors: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.model = self.mixture.denoiser(self.schedule)
        generator = torch.Generator().manual_seed(self.seed)
        scale = float(self.schedule.sigma(self.schedule.t_max))
        noise = torch.randn(self.n_samples, self.mixture.dim, generator=generator, dtype=DTYPE)
        self.x_T = scale * noise

    @property
    def reference(self) -> torch.Tensor:
        """The exact probability-flow ODE solution from x_T (computed once, cached)."""
        return reference_solution(self.model, self.x_T)

    def solve(
        self, solver: str, steps: int, grid="logsnr", order: int | None = None, **options
    ) -> SampleResult:
        key = _settings_key(solver, steps, grid, order, options)
        if key not in self._cache:
            self._cache[key] = sample(
                self.model,
                self.x_T,
                solver=solver,
                steps=steps,
                grid=grid,
                order=order,
                trajectory=True,
                **options,
            )
        return self._cache[key]

    def error(self, solver: str, steps: int, grid="logsnr", order: int | None = None, **options):
        """Mean L2 distance of the solver's samples from the exact ODE solution (cached: the
        explorer asks for every point of every curve on each update)."""
        key = _settings_key(solver, steps, grid, order, options)
        if key not in self._errors:
            result = self.solve(solver, steps, grid, order, **options)
            self._errors[key] = mean_l2_error(result.x, self.reference)
        return self._errors[key]

    def error_curve(
        self, solver: str, grid="logsnr", order: int | None = None, steps=CURVE_STEPS, **options
    ) -> pd.DataFrame:
        """Error against NFE over `steps` (one row per step count)."""
        rows = [
            {
                "solver": solver,
                "steps": n,
                "nfe": self.solve(solver, n, grid, order, **options).nfe,
                "error": self.error(solver, n, grid, order, **options),
            }
            for n in steps
        ]
        return pd.DataFrame(rows)

    def table(self, solvers, grid="logsnr", nfes=(5, 10, 20), order=None) -> pd.DataFrame:
        """Error at given NFE per solver (steps = NFE / model calls per step)."""
        rows = {}
        for solver in solvers:
            per_step = self.solve(solver, 1, grid, order).nfe  # model calls of one step
            rows[solver] = {
                f"NFE {nfe}": self.error(solver, max(1, nfe // per_step), grid, order)
                for nfe in nfes
            }
        return pd.DataFrame(rows).T


def solver_names(stochastic: bool = False) -> list[str]:
    """Registered solvers (deterministic ones unless asked), in registration order."""
    return [name for name, spec in SOLVERS.items() if stochastic or not spec.stochastic]


def _settings_key(solver, steps, grid, order, options) -> tuple:
    return (solver, steps, _grid_key(grid), order, tuple(sorted(options.items())))


def _grid_key(grid):
    if isinstance(grid, str) or hasattr(grid, "times"):
        return grid
    return tuple(torch.as_tensor(grid, dtype=DTYPE).tolist())
