"""A guidance study on one class-conditional mixture: cached guided solves, exact targets, metrics.

Notebook 02 and its explorer select from what this computes. Every guided model is built once
per (method, scale), so its identity keys the reference-solution and DPM-Solver-v3 caches;
every solve, exact reference, target sample set and metric is cached by its settings.

Two kinds of error are measured. Solver error: the mean L2 distance of a solver's samples from
the exact solution of the same guided probability-flow ODE from the same noise (DOP853).
Target distance: sliced Wasserstein and MMD between the samples and exact draws of the tilted
target p(x | c)^w p(x)^(1-w) (autoguidance: p_good^w p_bad^(1-w)); that one asks whether the
guided ODE samples what guidance is meant to sample, whatever the solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
import torch

from workbench.diffusion import dpm_solver_v3 as v3
from workbench.diffusion.guidance import (
    GUIDANCE,
    GuidanceProblem,
    cfg,
    class_reward,
    get_method,
)
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import (
    SOLVERS,
    ModelOutputError,
    SampleResult,
    reference_solution,
    sample,
)
from workbench.diffusion.schedules import DTYPE
from workbench.diffusion.smc import ParticleResult, fk_smc, sde_sample, svdd
from workbench.metrics import (
    class_precision,
    mean_class_posterior,
    mean_l2_error,
    mmd,
    mode_weights,
    sliced_wasserstein,
    within_class_spread,
)
from workbench.toy.tilted import TiltedTarget

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


def study_size(smoke: bool, n_samples: int = 2000) -> StudySize:
    """SMOKE: seconds, every code path; full: the notebook's measurements."""
    if smoke:
        return StudySize(500, 64, 20, 64, (0.0, 1.0, 3.0, 7.5), (0.0, 1.0, 3.0, 7.5), (1.0, 7.5),
                         (5, 10, 20))  # fmt: skip
    return StudySize(
        n_samples, 300, 60, 256, SWEEP_SCALES, COMPARE_SCALES, HEATMAP_SCALES, HEATMAP_NFES
    )


# DOP853's tolerance for the exact solution. Dynamic thresholding has kinks (where the clipped
# x0 meets the data range) and one solve at 1e-11 takes minutes; at 1e-7 the mean distance to a
# 1e-8 solve is ~1e-6, far below the solver errors it is compared with (> 1e-3).
REFERENCE_TOLERANCE = {"cfg_threshold": 1e-7}
DEFAULT_TOLERANCE = 1e-11
# DPM-Solver-v3's statistics are averages over the model's own samples: these need no more
# accuracy than this (v3's own default draws them at 1e-9)
EMS_SAMPLE_TOLERANCE = 1e-7
MMD_POINTS = 500  # MMD on this many of each sample set (O(N^2)); sliced W uses all
PLOT_HALF_WIDTH = 3.5  # the window holds CFG's overshoot at w = 15
NORMALIZER_HALF_WIDTH = 7.0  # the tilted density's numerical normalizer integrates over this


# A guided solve has diverged when its samples hold NaN/inf or leave the data far behind:
# beyond DIVERGED_ABOVE times the data's radius (`data_radius`; 3.8 for the two-class problem).
# At w <= 15 the notebook's solves stay within 4 radii, and even one-step solves (Heun,
# DPM-Solver-3), poor as they are, within 600; at w = 1e6 CFG's ODE flings samples to
# |x| ~ 1e4-1e5, whose distances to the target would otherwise be reported as numbers.
DIVERGED_ABOVE = 1000.0


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
    """Guidance methods on `problem` from fixed noise x_T ~ N(0, sigma(t_max)^2 I)."""

    problem: GuidanceProblem
    n_samples: int = 2000
    n_error: int = 500  # the first n_error starting points are also solved exactly
    n_target: int | None = None  # exact target draws per scale; default n_samples
    seed: int = 0
    ems_lambdas: int = 60  # DPM-Solver-v3's statistics per guided model (lambda points ...)
    ems_samples: int = 256  # ... and samples; v3's own defaults, 200 and 1024, cost ~4x
    x_T: torch.Tensor = field(init=False)
    _cache: dict = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 2 <= self.n_error <= self.n_samples:
            raise ValueError(f"need 2 <= n_error <= n_samples, got {self.n_error}")
        self.n_target = self.n_target or self.n_samples
        schedule = self.problem.schedule
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(
            self.n_samples, self.problem.mixture.dim, generator=generator, dtype=DTYPE
        )
        self.x_T = float(schedule.sigma(schedule.t_max)) * noise

    @classmethod
    def two_class(cls, **options) -> GuidanceStudy:
        return cls(GuidanceProblem.two_class(), **options)

    def _cached(self, key: tuple, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    # ---------------------------------------------------------------- models and solves
    def model(self, method: str, scale: float) -> DiffusionModel:
        spec = get_method(method)
        return self._cached(
            ("model", method, float(scale)), lambda: spec.model(self.problem, scale)
        )

    def run(self, method: str, scale: float, solver: str, steps: int) -> SampleResult | Diverged:
        """Guided samples from x_T (particle methods ignore `solver`)."""
        solver = method if get_method(method).particle else solver
        return self._cached(
            ("run", method, float(scale), solver, int(steps)),
            lambda: self._solve(method, scale, solver, steps, self.x_T),
        )

    def _solve(self, method, scale, solver, steps, x_T) -> SampleResult | Diverged:
        spec = get_method(method)
        model = None if spec.particle else self.model(method, scale)
        # a solver that takes model statistics (DPM-Solver-v3) gets this guided model's own
        takes_ems = not spec.particle and solver in SOLVERS and "ems" in SOLVERS[solver].options
        options = {"ems": self.ems(method, scale)} if takes_ems else None
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

    def ems(self, method: str, scale: float) -> v3.EMS:
        """DPM-Solver-v3's statistics of this guided model, from its own samples."""

        def compute():
            model = self.model(method, scale)
            generator = torch.Generator().manual_seed(self.seed + 7)
            schedule = self.problem.schedule
            prior = float(schedule.sigma(schedule.t_max)) * torch.randn(
                self.ems_samples, self.problem.mixture.dim, generator=generator, dtype=DTYPE
            )
            # the model's own endpoints, as v3 does by default (independent of x_T)
            tolerance = EMS_SAMPLE_TOLERANCE
            data = reference_solution(model, prior, rtol=tolerance, atol=tolerance)
            lambdas = v3.default_stat_lambdas(schedule, self.ems_lambdas)
            return v3.compute_ems(model, data=data, lambdas=lambdas)

        return self._cached(("ems", method, float(scale)), compute)

    # ---------------------------------------------------------------- solver error
    def reference(self, method: str, scale: float) -> torch.Tensor:
        """The exact guided ODE solution from x_T[:n_error]."""
        tolerance = self._tolerance(method)
        model = self.model(method, scale)
        return self._cached(
            ("reference", method, float(scale)),
            lambda: reference_solution(
                model, self.x_T[: self.n_error], rtol=tolerance, atol=tolerance
            ),
        )

    def error(self, method: str, scale: float, solver: str, steps: int) -> float:
        """Mean L2 distance to the exact solution; NaN for a diverged solve."""
        if get_method(method).particle:
            raise ValueError(f"{method} samples an SDE with weights: it has no ODE solution")

        def compute():
            # the first n_error starting points only, unless the full solve is cached anyway
            key = ("run", method, float(scale), solver, int(steps))
            result = self._cache.get(key) or self._solve(
                method, scale, solver, steps, self.x_T[: self.n_error]
            )
            if isinstance(result, Diverged):
                return math.nan
            return mean_l2_error(result.x[: self.n_error], self.reference(method, scale))

        return self._cached(("error", method, float(scale), solver, int(steps)), compute)

    def error_grid(
        self, method: str, solver: str, scales=HEATMAP_SCALES, nfes=HEATMAP_NFES, progress=None
    ) -> pd.DataFrame:
        """Solver error over scale (rows) x NFE (columns); steps = NFE (one call per step)."""
        rows = {}
        for scale in _progress(scales, progress, f"{method} / {solver}"):
            rows[scale] = {nfe: self.error(method, scale, solver, nfe) for nfe in nfes}
        frame = pd.DataFrame(rows).T
        frame.index.name, frame.columns.name = "scale", "NFE"
        return frame

    def _tolerance(self, method: str) -> float:
        return REFERENCE_TOLERANCE.get(method, DEFAULT_TOLERANCE)

    # ---------------------------------------------------------------- exact targets
    def target(self, method: str, scale: float) -> TiltedTarget:
        return self.problem.target(get_method(method).target, scale)

    def target_samples(self, method: str, scale: float, replica: int = 0) -> torch.Tensor:
        """Exact draws of the method's tilted target (replica > 0: independent sets)."""
        kind = get_method(method).target
        return self._cached(
            ("target", kind, float(scale), replica),
            lambda: self.target(method, scale).sample(
                self.n_target, seed=self.seed + 100 + replica
            ),
        )

    def target_density(self, method: str, scale: float, n: int = 150):
        """(xs, ys, log p_w) over the plotting window, normalized over a wider one."""
        kind = get_method(method).target
        half = PLOT_HALF_WIDTH

        def compute():
            wide = (-NORMALIZER_HALF_WIDTH, NORMALIZER_HALF_WIDTH) * 2
            return self.target(method, scale).density_grid(
                (-half, half, -half, half), n, normalizer_bounds=wide, normalizer_n=300
            )

        return self._cached(("density", kind, float(scale), n), compute)

    # ---------------------------------------------------------------- metrics
    def metrics(self, method: str, scale: float, solver: str, steps: int) -> dict[str, float]:
        """Precision, diversity and distance to the exact tilted target of one run."""

        def compute():
            result = self.run(method, scale, solver, steps)
            if isinstance(result, Diverged):
                return dict.fromkeys(METRIC_NAMES, math.nan)
            return self._sample_metrics(result.x, method, scale)

        solver = method if get_method(method).particle else solver
        return self._cached(("metrics", method, float(scale), solver, int(steps)), compute)

    def target_metrics(self, method: str, scale: float) -> dict[str, float]:
        """The same metrics for exact target draws (an independent set: the noise floor of the
        distances at these sample sizes)."""
        kind = get_method(method).target
        return self._cached(
            ("target metrics", kind, float(scale)),
            lambda: self._sample_metrics(
                self.target_samples(method, scale, replica=1)[: self.n_samples], method, scale
            ),
        )

    def class_metrics(self, method: str, scale: float, solver: str, steps: int):
        """Only precision, mean posterior and spread (cheap: no distances to the target)."""
        solver = method if get_method(method).particle else solver

        def compute():
            result = self.run(method, scale, solver, steps)
            x = None if isinstance(result, Diverged) else result.x
            return self._class_metrics(x)

        return self._cached(("class metrics", method, float(scale), solver, int(steps)), compute)

    def _class_metrics(self, x: torch.Tensor | None) -> dict[str, float]:
        if x is None or not torch.isfinite(x).all():
            return dict.fromkeys(METRIC_NAMES[:3], math.nan)
        mixture, label = self.problem.mixture, self.problem.label
        precision = class_precision(x, mixture, label)
        # a collapsed solve (1 step from pure noise) can put fewer than 2 samples in the class:
        # no spread to measure, reported as NaN ("n/a" in the explorer)
        members = precision * len(x)
        return {
            "precision": precision,
            "mean posterior": mean_class_posterior(x, mixture, label),
            "spread": within_class_spread(x, mixture, label) if members >= 2 else math.nan,
        }

    def _sample_metrics(self, x: torch.Tensor, method: str, scale: float) -> dict[str, float]:
        if not torch.isfinite(x).all():
            return dict.fromkeys(METRIC_NAMES, math.nan)
        target = self.target_samples(method, scale)[: len(x)]  # equal sizes: a faster SW
        return {
            **self._class_metrics(x),
            "sliced W": sliced_wasserstein(x, target),
            "MMD": mmd(x[:MMD_POINTS], target[:MMD_POINTS]),
        }

    def sweep(
        self,
        method: str,
        solver: str,
        steps: int,
        scales=SWEEP_SCALES,
        *,
        distances: bool = True,
        progress=None,
    ) -> pd.DataFrame:
        """metrics() at each scale, one row per scale (class metrics only unless `distances`:
        the distances to the target cost ~0.1 s per scale, the class metrics ~5 ms)."""
        measure = self.metrics if distances else self.class_metrics
        rows = {
            scale: measure(method, scale, solver, steps)
            for scale in _progress(scales, progress, method)
        }
        frame = pd.DataFrame(rows).T
        frame.index.name = "scale"
        return frame

    def target_sweep(self, method: str, scales=SWEEP_SCALES, distances: bool = True):
        """The exact target's metrics per scale (class metrics only unless `distances`)."""
        if distances:
            rows = {scale: self.target_metrics(method, scale) for scale in scales}
        else:
            rows = {
                scale: self._cached(
                    ("target class metrics", get_method(method).target, float(scale)),
                    lambda scale=scale: self._class_metrics(
                        self.target_samples(method, scale, replica=1)
                    ),
                )
                for scale in scales
            }
        frame = pd.DataFrame(rows).T
        frame.index.name = "scale"
        return frame

    # ---------------------------------------------------------------- modes of the class
    def mode_weights(self, method: str, scale: float, solver: str, steps: int) -> torch.Tensor:
        """Fraction of the class's samples in each of the class's components (clean
        responsibility argmax), ordered as the class's components; NaN if diverged."""
        run = self.run(method, scale, solver, steps)
        if isinstance(run, Diverged):
            return torch.full((len(self._class_components),), math.nan, dtype=DTYPE)
        return self._class_mode_weights(run.x)

    def target_mode_weights(self, method: str, scale: float) -> torch.Tensor:
        return self._class_mode_weights(self.target_samples(method, scale, replica=1))

    @property
    def boundary_component(self) -> int:
        """Position, among the class's components, of the one nearest another class's."""
        mixture = self.problem.mixture
        others = mixture.means[mixture.labels != self.problem.label]
        ours = mixture.means[self._class_components]
        return int(torch.cdist(ours, others).min(1).values.argmin())

    @property
    def _class_components(self) -> torch.Tensor:
        return torch.nonzero(self.problem.mixture.labels == self.problem.label).flatten()

    def _class_mode_weights(self, x: torch.Tensor) -> torch.Tensor:
        fractions = mode_weights(x, self.problem.mixture)[self._class_components]
        return fractions / fractions.sum()

    # ---------------------------------------------------------------- particle methods
    def smc_comparison(
        self, scale: float, particles: int, steps: int, seeds, progress=None
    ) -> tuple[pd.DataFrame, dict[int, ParticleResult]]:
        """Sliced W to exact target draws of FK-SMC, the CFG reverse SDE (the same particles
        without weights) and the CFG ODE (DPM-Solver++(2M), 50 steps), each from the same
        `particles` noise draws per seed; and of an independent exact set (the floor)."""
        problem, rows, results = self.problem, {}, {}
        model = self.model("cfg", scale)
        target = self.target("cfg", scale)
        for seed in _progress(seeds, progress, f"FK-SMC w={scale:g}"):
            generator = torch.Generator().manual_seed(1000 + seed)
            schedule = problem.schedule
            x_T = float(schedule.sigma(schedule.t_max)) * torch.randn(
                particles, problem.mixture.dim, generator=generator, dtype=DTYPE
            )
            exact = target.sample(particles, seed=2000 + seed)
            result = fk_smc(
                problem.model_c, problem.model_u, x_T, scale=scale, steps=steps, seed=seed
            )
            results[seed] = result
            rows[seed] = {
                "FK-SMC": sliced_wasserstein(result.x, exact),
                "CFG SDE": sliced_wasserstein(
                    sde_sample(model, x_T, steps=steps, seed=seed).x, exact
                ),
                "CFG ODE": sliced_wasserstein(
                    sample(model, x_T, solver="dpmpp_2m", steps=50).x, exact
                ),
                "exact draws": sliced_wasserstein(
                    target.sample(particles, seed=3000 + seed), exact
                ),
                "min ESS": float(result.ess.min()),
                "resamplings": int(result.resampled.sum()),
            }
        frame = pd.DataFrame(rows).T
        frame.index.name = "seed"
        return frame, results

    def svdd_precisions(self, scale: float, candidates, steps: int) -> pd.DataFrame:
        """Class precision and mean posterior of SVDD from CFG at `scale` (0: the unconditional
        model, 1: the conditional one) with M candidates per step."""
        problem = self.problem
        model = self.model("cfg", scale)
        reward = class_reward(problem.mixture, problem.label)
        rows = {}
        for m in candidates:
            result = svdd(model, self.x_T, reward=reward, candidates=m, steps=steps, seed=self.seed)
            rows[m] = {
                "precision": class_precision(result.x, problem.mixture, problem.label),
                "mean posterior": mean_class_posterior(result.x, problem.mixture, problem.label),
                "NFE per sample": result.nfe,
            }
        frame = pd.DataFrame(rows).T
        frame.index.name = "candidates M"
        return frame


def identity_checks(problem: GuidanceProblem, n: int = 256, seed: int = 0) -> pd.Series:
    """Max relative difference of noise predictions over points and times for the exact
    identities of the guided models: each should be at round-off."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, problem.mixture.dim, generator=generator, dtype=DTYPE)
    times = torch.linspace(problem.schedule.t_min, problem.schedule.t_max, 9, dtype=DTYPE)
    pairs = {
        "CFG w=1 vs conditional": (GUIDANCE["cfg"].model(problem, 1.0), problem.model_c),
        "CFG w=0 vs unconditional": (GUIDANCE["cfg"].model(problem, 0.0), problem.model_u),
        "CFG data vs noise form, w=7.5": (
            cfg(problem.model_c, problem.model_u, 7.5, form="data"),
            cfg(problem.model_c, problem.model_u, 7.5, form="noise"),
        ),
        "classifier guidance vs CFG, w=7.5": (
            GUIDANCE["classifier"].model(problem, 7.5),
            GUIDANCE["cfg"].model(problem, 7.5),
        ),
        "autoguidance w=0 vs bad model": (
            GUIDANCE["autoguidance"].model(problem, 0.0),
            problem.model_bad,
        ),
    }
    differences = {}
    for name, (a, b) in pairs.items():
        a, b = a.as_prediction("noise"), b.as_prediction("noise")
        differences[name] = max(
            float(((a(x, t) - b(x, t)).abs() / (1 + b(x, t).abs())).max()) for t in times
        )
    return pd.Series(differences, name="max relative difference")


METRIC_NAMES = ("precision", "mean posterior", "spread", "sliced W", "MMD")


def method_names(particle: bool | None = None) -> list[str]:
    """Registered guidance methods (only particle or only model methods if asked)."""
    return [n for n, m in GUIDANCE.items() if particle is None or m.particle == particle]


def _progress(items, progress, description: str):
    """Wrap `items` in a progress bar factory (e.g. tqdm.auto.tqdm) if one is given."""
    return items if progress is None else progress(items, desc=description, leave=False)
