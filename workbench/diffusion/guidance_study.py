"""A guidance study on one class-conditional mixture: its settings and sizes, and its solves.

Notebook 02 and its explorer select from what this and its sibling modules compute:
`guidance_targets` (exact tilted targets and the class's modes), `guidance_metrics`
(precision, diversity, distances to the target, exact identities), `guidance_experiments`
(the sweeps and tables the notebook runs) and `guidance_report` (its sentences).

Solver error is measured here: the mean L2 distance of a solver's samples from the exact
solution of the same guided probability-flow ODE from the same noise (DOP853). Every guided
model, solve, exact reference, DPM-Solver-v3 statistics and error is cached through
`workbench.memo`, keyed by content: the study's settings (problem, sizes, seed) and the
arguments, so two studies with the same settings share every entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from workbench.diffusion import dpm_solver_v3 as v3
from workbench.diffusion.guidance import GUIDANCE, GuidanceProblem
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import (
    SOLVERS,
    ModelOutputError,
    SampleResult,
    prior_noise,
    reference_solution,
)
from workbench.memo import Memo, content_key
from workbench.metrics import mean_l2_error

SWEEP_SCALES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.5, 10.0, 12.5, 15.0)
HEATMAP_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0)
HEATMAP_NFES = (3, 5, 8, 10, 15, 20, 30, 50)
HEATMAP_SOLVERS = ("ddim", "dpmpp_2m", "unipc_bh2", "dpm_solver_v3")
COMPARE_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0)


@dataclass(frozen=True)
class StudySize:
    """How large notebook 02 and its served explorer make the study (one definition, so both
    hit the same cached solves, references and DPM-Solver-v3 statistics)."""

    n_samples: int
    n_error: int  # starting points whose exact ODE solutions the solver errors use
    ems_lambdas: int
    ems_samples: int
    sweep_scales: tuple[float, ...]  # precision-diversity sweep
    compare_scales: tuple[float, ...]  # methods compared (and the explorer's curves)
    heatmap_scales: tuple[float, ...]
    heatmap_nfes: tuple[int, ...]
    particles: int  # particles per Feynman-Kac SMC run
    particle_steps: int  # reverse-SDE steps of the particle samplers
    smc_seeds: tuple[int, ...]
    svdd_candidates: tuple[int, ...]
    shown_scales: tuple[float, ...]  # the scales whose samples the notebook draws
    normalizer_draws: int  # Monte Carlo draws checking the target's grid normalizer


def study_size(
    smoke: bool, n_samples: int = 2000, particles: int = 4000, particle_steps: int = 100
) -> StudySize:
    """SMOKE: seconds, every code path; full: the notebook's measurements (the notebook's
    parameters set the full mode's samples, particles and particle steps)."""
    full = StudySize(
        n_samples=n_samples,
        n_error=300,
        ems_lambdas=60,
        ems_samples=256,
        sweep_scales=SWEEP_SCALES,
        compare_scales=COMPARE_SCALES,
        heatmap_scales=HEATMAP_SCALES,
        heatmap_nfes=HEATMAP_NFES,
        particles=particles,
        particle_steps=particle_steps,
        smc_seeds=(0, 1, 2),
        svdd_candidates=(1, 2, 4, 8, 16),
        shown_scales=(1.0, 3.0, 7.5, 15.0),
        normalizer_draws=200_000,
    )
    if not smoke:
        return full
    few_scales = (0.0, 1.0, 3.0, 7.5)
    return replace(
        full,
        n_samples=500,
        n_error=64,
        ems_lambdas=20,
        ems_samples=64,
        sweep_scales=few_scales,
        compare_scales=few_scales,
        heatmap_scales=(1.0, 7.5),
        heatmap_nfes=(5, 10, 20),
        particles=1000,
        particle_steps=50,
        smc_seeds=(0,),
        svdd_candidates=(1, 4),
        shown_scales=(1.0, 7.5),
        normalizer_draws=50_000,
    )


# DOP853's tolerance for the exact solution. Dynamic thresholding has kinks (where the clipped
# x0 meets the data range) and one solve at 1e-11 takes minutes; at 1e-7 the mean distance to a
# 1e-8 solve is ~1e-6, far below the solver errors it is compared with (> 1e-3).
REFERENCE_TOLERANCE = {"cfg_threshold": 1e-7}
DEFAULT_TOLERANCE = 1e-11
# DPM-Solver-v3's statistics are averages over the model's own samples: these need no more
# accuracy than this (v3's own default draws them at 1e-9)
EMS_SAMPLE_TOLERANCE = 1e-7

# A guided solve has diverged when its samples hold NaN/inf or leave the data far behind:
# beyond DIVERGED_ABOVE times the data's radius (`data_radius`; 3.8 for the two-class problem).
# At w <= 15 the notebook's solves stay within 4 radii, and even one-step solves (Heun,
# DPM-Solver-3), poor as they are, within 600; at w = 1e6 CFG's ODE flings samples to
# |x| ~ 1e4-1e5, whose distances to the target would otherwise be reported as numbers.
DIVERGED_ABOVE = 1000.0

# what `guidance_metrics` measures on each run (NaN for all of them when it diverged)
METRIC_NAMES = ("precision", "mean posterior", "spread", "sliced W", "MMD")

# the full notebook makes ~150 solves of 2,000 points (32 kB each) and ~600 errors
MODELS = Memo("guided models", maxsize=512)
SOLVES = Memo("guided solves", maxsize=1024)
STATISTICS = Memo("guided DPM-Solver-v3 statistics", maxsize=128)
REFERENCES = Memo("guided reference solutions", maxsize=256)
ERRORS = Memo("guided solver errors", maxsize=4096)
# What one entry of each memo takes to compute at the notebook's full size (2,000 samples,
# 300 exact references) on a 2-core machine: a first visit's estimate until the process has
# timed its own computes (`GuidanceStudy.seconds_to_compute`)
FIRST_GUESS_SECONDS = {
    SOLVES.name: 0.1,
    STATISTICS.name: 10.0,
    REFERENCES.name: 1.0,
    ERRORS.name: 0.1,
}


class _Unkeyed:
    """The key of a study whose problem has no content identity (e.g. a schedule built from
    arbitrary callables): its memo entries are computed, never stored."""

    def content_key(self):
        return None


_UNKEYED = _Unkeyed()


@dataclass(frozen=True)
class Diverged:
    """A solve whose model returned NaN or infinity, or whose samples blew up (NaN/inf, or
    farther than DIVERGED_ABOVE data radii): reported, and the sweep keeps going. Its metrics
    are NaN, which the notebook and the explorer show as "diverged"."""

    message: str


def data_radius(mixture) -> float:
    """How far from the origin the data reach: the farthest component mean plus 5 of its
    largest standard deviation."""
    return float((mixture.means.norm(dim=1) + 5 * mixture.stds.max(1).values).max())


def divergence(x: torch.Tensor, radius: float) -> str | None:
    """Why samples `x` count as diverged (None if they do not): one pass over x."""
    largest = float(x.abs().max())
    if not math.isfinite(largest):
        return "diverged: the samples reached NaN or infinity"
    if largest > DIVERGED_ABOVE * radius:
        return (
            f"diverged: a sample reached |x_i| = {largest:.3g}, beyond {DIVERGED_ABOVE:g} "
            f"times the data's radius {radius:.3g}"
        )
    return None


@dataclass
class GuidanceStudy:
    """Guided solves of `problem` from fixed noise x_T ~ N(0, sigma(t_max)^2 I)."""

    problem: GuidanceProblem
    n_samples: int = 2000
    n_error: int = 500  # the first n_error starting points are also solved exactly
    n_target: int | None = None  # exact target draws per scale; default n_samples
    seed: int = 0
    ems_lambdas: int = 60  # DPM-Solver-v3's statistics per guided model (lambda points ...)
    ems_samples: int = 256  # ... and samples; v3's own defaults, 200 and 1024, cost ~4x
    x_T: torch.Tensor = field(init=False)
    key: object = field(init=False, repr=False)  # the settings' content key: prefixes memo keys

    def __post_init__(self) -> None:
        if not 2 <= self.n_error <= self.n_samples:
            raise ValueError(f"need 2 <= n_error <= n_samples, got {self.n_error}")
        self.n_target = self.n_target or self.n_samples
        dim = self.problem.mixture.dim
        self.x_T = prior_noise(self.problem.schedule, self.n_samples, dim, self.seed)
        settings = (self.problem, self.n_samples, self.n_error, self.n_target, self.seed,
                    self.ems_lambdas, self.ems_samples)  # fmt: skip
        self.key = content_key(*settings) or _UNKEYED

    @classmethod
    def two_class(cls, **options) -> GuidanceStudy:
        return cls(GuidanceProblem.two_class(), **options)

    def model(self, method: str, scale: float) -> DiffusionModel:
        return MODELS.get(
            (self.problem, method, float(scale)),
            lambda: GUIDANCE[method].model(self.problem, scale),
        )

    def solver_of(self, method: str, solver: str) -> str:
        """The sampler a run uses: particle methods step their own SDE, whatever `solver`."""
        return method if GUIDANCE[method].particle else solver

    def run(self, method: str, scale: float, solver: str, steps: int) -> SampleResult | Diverged:
        """Guided samples from x_T (particle methods ignore `solver`)."""
        solver = self.solver_of(method, solver)
        key = self._run_key(method, scale, solver, steps)
        if key not in SOLVES and self._takes_ems(method, solver):
            self.ems(method, scale)  # first, so that its time counts as statistics, not a solve
        return SOLVES.get(key, lambda: self._solve(method, scale, solver, steps, self.x_T))

    def _run_key(self, method: str, scale: float, solver: str, steps: int) -> tuple:
        return (self.key, method, float(scale), solver, int(steps))

    def _solve(self, method, scale, solver, steps, x_T) -> SampleResult | Diverged:
        spec = GUIDANCE[method]
        model = None if spec.particle else self.model(method, scale)
        # a solver that takes model statistics (DPM-Solver-v3) gets this guided model's own
        options = {"ems": self.ems(method, scale)} if self._takes_ems(method, solver) else None
        try:
            result = spec.sample(
                self.problem,
                x_T,
                scale=scale,
                solver=solver,
                steps=steps,
                seed=self.seed,
                model=model,
                solver_options=options,
            )
        except ModelOutputError as exc:
            return Diverged(str(exc))
        reason = divergence(result.x, data_radius(self.problem.mixture))
        return result if reason is None else Diverged(f"{reason} (w={scale:g}, {solver})")

    def _takes_ems(self, method: str, solver: str) -> bool:
        """Whether `solver` runs on model statistics (DPM-Solver-v3) for this method."""
        particle = GUIDANCE[method].particle
        return not particle and solver in SOLVERS and "ems" in SOLVERS[solver].options

    def ems(self, method: str, scale: float) -> v3.EMS:
        """DPM-Solver-v3's statistics of this guided model, from its own samples."""

        def compute():
            model = self.model(method, scale)
            schedule = self.problem.schedule
            # the model's own endpoints, as v3 does by default (independent of x_T)
            prior = prior_noise(schedule, self.ems_samples, self.problem.mixture.dim, self.seed + 7)
            tolerance = EMS_SAMPLE_TOLERANCE
            data = reference_solution(model, prior, rtol=tolerance, atol=tolerance)
            lambdas = v3.default_stat_lambdas(schedule, self.ems_lambdas)
            return v3.compute_ems(model, data=data, lambdas=lambdas)

        return STATISTICS.get((self.key, method, float(scale)), compute)

    def reference(self, method: str, scale: float) -> torch.Tensor:
        """The exact guided ODE solution from x_T[:n_error]."""
        tolerance = REFERENCE_TOLERANCE.get(method, DEFAULT_TOLERANCE)
        model = self.model(method, scale)
        return REFERENCES.get(
            (self.key, method, float(scale)),
            lambda: reference_solution(
                model, self.x_T[: self.n_error], rtol=tolerance, atol=tolerance
            ),
        )

    def error(self, method: str, scale: float, solver: str, steps: int) -> float:
        """Mean L2 distance to the exact solution; NaN for a diverged solve."""
        if GUIDANCE[method].particle:
            raise ValueError(f"{method} samples an SDE with weights: it has no ODE solution")
        key = self._run_key(method, scale, solver, steps)

        def compute():
            # the first n_error starting points only, unless the full solve is cached anyway
            if key in SOLVES:
                result = self.run(method, scale, solver, steps)
            else:
                result = self._solve(method, scale, solver, steps, self.x_T[: self.n_error])
            if isinstance(result, Diverged):
                return math.nan
            return mean_l2_error(result.x[: self.n_error], self.reference(method, scale))

        if key not in ERRORS and self._takes_ems(method, solver):
            self.ems(method, scale)  # first, so that its time counts as statistics
        return ERRORS.get(key, compute)

    def seconds_to_compute(self, runs=(), errors=()) -> float:
        """About how many seconds the `runs` and `errors` (each a (method, scale, solver,
        steps)) take to compute where they are not stored yet: 0 when every one is. Each
        missing solve, statistics, reference and error counts as its memo's recent median
        time (`Memo.typical_seconds`; `run` and `error` compute the statistics before they
        time a solve, so their seconds count once; the first error at a scale also computes
        its reference, one in each row of NFEs), or as FIRST_GUESS_SECONDS before this
        process timed one."""
        needed = set()
        for method, scale, solver, steps in runs:
            solver = self.solver_of(method, solver)
            needed.add((SOLVES, self._run_key(method, scale, solver, steps)))
            if self._takes_ems(method, solver):
                needed.add((STATISTICS, (self.key, method, float(scale))))
        for method, scale, solver, steps in errors:
            needed.add((ERRORS, self._run_key(method, scale, solver, steps)))
            needed.add((REFERENCES, (self.key, method, float(scale))))
            if self._takes_ems(method, solver):
                needed.add((STATISTICS, (self.key, method, float(scale))))
        return sum(_typical_seconds(memo) for memo, key in needed if key not in memo)


def _typical_seconds(memo: Memo) -> float:
    timed = memo.typical_seconds()
    return FIRST_GUESS_SECONDS[memo.name] if timed is None else timed
