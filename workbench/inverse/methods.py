"""Training-free guidance for linear inverse problems, each as a guidance term g(x_t, t) that
stands in for the exact grad_x log p_t(y | x_t) (`InverseProblem.exact_guidance`).

Every method is a term in score units: the guided model's score is score_t + g, i.e. its data
prediction is x0_hat + (sigma^2 / alpha) g (Tweedie), so any solver in SOLVERS samples it, and
`guidance_term_error` compares g with the exact term at each noise level.

- DPS (Chung, Kim, McCann, Klasky, Ye 2022, arXiv:2209.14687): p(x_0 | x_t) replaced by a point
  mass at x0_hat(x_t), so g = zeta grad_x log N(y; A x0_hat(x), R), through the denoiser's
  Jacobian (torch.func.vjp). zeta = 1 is the plain approximation; `dps_normalized` uses the
  paper's step zeta / ||y - A x0_hat|| on the gradient of -||y - A x0_hat||^2, expressed here as
  the score term -zeta grad_x ||y - A x0_hat|| (the paper applies it as a per-step shift of
  x_{i-1}; written as a term, it no longer depends on the step count).
- TFG (Ye, Lin, Han, Xu, Liu, Liang, Ma, Zou, Ermon 2024, arXiv:2409.15761), its knobs:
  sigma-bar smooths the predictor, f~(x0) = E_eps f(x0 + sigma-bar_t eps); for the Gaussian
  likelihood the expectation is closed form, N(y; A x0, R + sigma-bar_t^2 A A^T), used here in
  place of the paper's Monte Carlo average (a simplification without sampling error);
  sigma-bar_t = sigma-bar * sigma_t (the paper's (1 - abar_t)^(1/2) schedule).
  rho: variance guidance rho grad_{x_t} log f~(x0_hat(x_t)) (DPS on the smoothed predictor),
  constant in score units (the paper's per-step rho_t ∝ beta_t becomes a constant score term).
  mu: mean guidance, n_iter gradient-ascent steps x0 <- x0 + mu_t grad log f~(x0) from x0_hat,
  Delta_0 = x0 - x0_hat, entering the data prediction directly (as in the paper's update
  x_{t-1} += sqrt(abar_{t-1}) Delta_0); mu_t = mu sigma_t^2, our choice, so that mu = 1 with one
  step tends to the exact term as t -> 0. Recurrence (n_recur): after each reverse step the
  sample is re-noised to the step's start and the step repeated (`tfg_sample`; the term itself
  does not depend on it). The registry's strength s sets rho = s rho_0 and mu = s mu_0.
- Ensemble Kalman guidance (EnKG; Zheng, Chu, Wang, Kovachki, Baptista, Yue 2024,
  arXiv:2409.20175): derivative-free. An ensemble of particles x_t^j, their predictions
  x0_hat^j and G^j = A x0_hat^j; the ensemble covariances C_xG and C_xx replace the Jacobian
  (statistical linearization, J^T ≈ C_xx^-1 C_xG), so g^j = zeta C_xx^-1 C_xG R^-1 (y - G^j):
  DPS's term with the linearized denoiser, no model gradient. The paper preconditions its
  update by C_xx (the step is C_xG R^-1 (y - G^j)); as a score term the C_xx^-1 is kept. The
  paper's x0_hat is an ODE solve to t = 0 from each particle; here one denoiser call
  (Tweedie), a simplification. The ensemble is the batch, split into consecutive groups of
  `ensemble` particles: results depend on how points are grouped, as for any interacting
  particle method.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from workbench.diffusion import smc
from workbench.diffusion.core import ModelOutputError, check_x_T
from workbench.diffusion.grids import make_grid
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import Evaluator, Grid, SampleResult, sample
from workbench.inverse.problems import InverseProblem
from workbench.registry import Registry
from workbench.toy.mixture import DTYPE

# GuidanceTerm(x, alpha, sigma) -> (N, D) estimate of grad_x log p_t(y | x_t)
GuidanceTerm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
DEFAULT_ENSEMBLE = 256


# ------------------------------------------------------------------ checks
def check_strength(strength) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise ValueError(f"the guidance strength must be a finite number >= 0, got {strength!r}")
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"the guidance strength must be a finite number >= 0, got {strength}")
    return float(strength)


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------ DPS
def _denoiser_vjp(problem: InverseProblem, x, alpha, sigma, cotangent_of):
    """J^T c(x0_hat) with J = d x0_hat / d x_t (points are independent: one batched vjp)."""
    x0, pullback = torch.func.vjp(lambda z: problem.prior.denoise(z, alpha, sigma), x)
    return pullback(cotangent_of(x0))[0]


def dps_term(problem: InverseProblem, zeta: float = 1.0) -> GuidanceTerm:
    """zeta grad_x log N(y; A x0_hat(x_t), R)."""

    def term(x, alpha, sigma):
        gradient = _denoiser_vjp(problem, x, alpha, sigma, problem.likelihood_gradient_x0)
        return zeta * gradient

    return term


def dps_normalized_term(problem: InverseProblem, zeta: float = 1.0) -> GuidanceTerm:
    """-zeta grad_x ||y - A x0_hat(x_t)||: the paper's zeta / ||residual|| step size."""
    a, y = problem.operator, problem.observation

    def cotangent(x0):
        residual = y - x0 @ a.T
        norm = torch.linalg.vector_norm(residual, dim=1, keepdim=True).clamp_min(1e-300)
        return (residual / norm) @ a  # -grad_{x0} ||y - A x0||

    def term(x, alpha, sigma):
        return zeta * _denoiser_vjp(problem, x, alpha, sigma, cotangent)

    return term


# ------------------------------------------------------------------ TFG
@dataclass(frozen=True)
class TFGConfig:
    """TFG's knobs (see the module): rho (variance guidance), mu (mean guidance), sigma_bar
    (predictor smoothing), n_iter (mean-guidance steps), n_recur (recurrence)."""

    rho: float = 1.0
    mu: float = 1.0
    sigma_bar: float = 1.0
    n_iter: int = 1
    n_recur: int = 1

    def __post_init__(self) -> None:
        for name in ("rho", "mu", "sigma_bar"):
            check_strength(getattr(self, name))
        _check_count("n_iter", self.n_iter, 0)
        _check_count("n_recur", self.n_recur, 1)

    def scaled(self, strength: float) -> TFGConfig:
        return replace(self, rho=strength * self.rho, mu=strength * self.mu)


def tfg_term(problem: InverseProblem, config: TFGConfig = TFGConfig()) -> GuidanceTerm:
    """rho grad_x log f~(x0_hat(x)) + (alpha / sigma^2) Delta_0 (mean guidance)."""

    def term(x, alpha, sigma):
        extra = (config.sigma_bar * sigma) ** 2  # sigma-bar_t^2

        def smoothed_gradient(x0):
            return problem.likelihood_gradient_x0(x0, extra)

        variance = torch.zeros_like(x)
        if config.rho != 0:
            variance = config.rho * _denoiser_vjp(problem, x, alpha, sigma, smoothed_gradient)
        x0_hat = problem.prior.denoise(x, alpha, sigma)
        x0 = x0_hat
        step = config.mu * sigma**2
        for _ in range(config.n_iter if config.mu != 0 else 0):
            x0 = x0 + step * smoothed_gradient(x0)
        return variance + alpha / sigma**2 * (x0 - x0_hat)

    return term


# ------------------------------------------------------------------ ensemble Kalman guidance
def enkg_term(
    problem: InverseProblem, zeta: float = 1.0, ensemble: int = DEFAULT_ENSEMBLE
) -> GuidanceTerm:
    """zeta C_xx^-1 C_xG R^-1 (y - G^j) per group of `ensemble` consecutive particles."""
    ensemble = _check_count("ensemble", ensemble, problem.prior.dim + 1)
    a, r, y = problem.operator, problem.noise_covariance, problem.observation

    def group_term(x, alpha, sigma):
        x0 = problem.prior.denoise(x, alpha, sigma)  # model evaluations only
        g = x0 @ a.T
        dx, dg = x - x.mean(0), g - g.mean(0)
        c_xx = dx.T @ dx / (len(x) - 1)
        c_xg = dx.T @ dg / (len(x) - 1)
        linearized_jt = torch.linalg.solve(c_xx, c_xg)  # (D, M) ≈ J^T A^T
        weighted = torch.linalg.solve(r, (y - g).T)  # R^-1 (y - G^j), (M, N)
        return zeta * (linearized_jt @ weighted).T

    def term(x, alpha, sigma):
        if len(x) < problem.prior.dim + 1:
            raise ValueError(
                f"ensemble Kalman guidance needs at least {problem.prior.dim + 1} particles, "
                f"got {len(x)}"
            )
        starts = list(range(0, len(x), ensemble))
        if len(starts) > 1 and len(x) - starts[-1] < problem.prior.dim + 1:
            starts.pop()  # a too-small last group joins the one before
        ends = [*starts[1:], len(x)]
        groups = zip(starts, ends, strict=True)
        return torch.cat([group_term(x[i:j], alpha, sigma) for i, j in groups])

    return term


# ------------------------------------------------------------------ as models
def guided_model(problem: InverseProblem, term: GuidanceTerm, name: str) -> DiffusionModel:
    """The prior model with score + term: data prediction x0_hat + (sigma^2 / alpha) g."""
    schedule = problem.schedule

    def fn(x, t):
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        return problem.prior.denoise(x, alpha, sigma) + sigma**2 / alpha * term(x, alpha, sigma)

    return DiffusionModel(fn, "data", schedule, name)


def tfg_sample(
    problem: InverseProblem,
    x_T: torch.Tensor,
    *,
    config: TFGConfig,
    steps: int,
    seed: int = 0,
) -> smc.ParticleResult:
    """TFG's sampler: reverse-SDE steps (DDPM ancestral, `smc.sde_step`) with the guided x0,
    each repeated n_recur times after re-noising the result back to the step's start,
    x_{i-1} = (alpha_{i-1}/alpha_i) x_i + sqrt(sigma_{i-1}^2 - (alpha_{i-1}/alpha_i)^2 sigma_i^2) z.
    NFE = steps * n_recur (one guided evaluation per step and recurrence)."""
    x = check_x_T(x_T).to(DTYPE)
    model = guided_model(problem, tfg_term(problem, config), "TFG")
    levels = Grid.of(problem.schedule, make_grid(problem.schedule, "logsnr", steps))
    ev = Evaluator(model, problem.schedule)
    ev.know_grid(levels)
    generator = torch.Generator().manual_seed(int(seed))
    for i in range(1, levels.steps + 1):
        start = x
        for recur in range(config.n_recur):
            noise = torch.randn(x.shape, generator=generator, dtype=DTYPE)
            x = smc.sde_step(levels, i, start, ev.data(start, levels.ts[i - 1]), noise)
            if recur + 1 < config.n_recur:
                start = _renoise(levels, i, x, generator)
    return smc.ParticleResult(x=x, nfe=ev.nfe, ts=levels.ts, solver="tfg", order=1)


def _renoise(levels: Grid, i: int, x: torch.Tensor, generator) -> torch.Tensor:
    """x_{t_i} -> a draw of x_{t_{i-1}} under the forward process."""
    ratio = levels.alphas[i - 1] / levels.alphas[i]
    std = torch.sqrt(levels.sigmas[i - 1] ** 2 - ratio**2 * levels.sigmas[i] ** 2)
    return ratio * x + std * torch.randn(x.shape, generator=generator, dtype=DTYPE)


# ------------------------------------------------------------------ the registry
@dataclass(frozen=True)
class InverseMethod:
    """One training-free guidance method for inverse problems, built from (problem, strength).

    `term` builds the guidance term; `model` wraps it as a DiffusionModel (any solver);
    `run`, if set, is the method's own sampler (TFG with recurrence).
    """

    name: str
    label: str
    description: str
    term: Callable[[InverseProblem, float], GuidanceTerm]
    derivative_free: bool = False
    ensemble: bool = False  # the term couples the points of a batch
    run: Callable[..., SampleResult] | None = None
    exact_at: tuple[float, ...] = field(default=())  # strengths where the term is exact

    def guidance(self, problem: InverseProblem, strength: float) -> GuidanceTerm:
        return self.term(problem, check_strength(strength))

    def model(self, problem: InverseProblem, strength: float) -> DiffusionModel:
        strength = check_strength(strength)
        built = guided_model(problem, self.term(problem, strength), f"{self.label} s={strength:g}")
        content = None if self.ensemble else ("inverse", self.name, strength, problem)
        return replace(built, content=content)

    def sample(
        self,
        problem: InverseProblem,
        x_T: torch.Tensor,
        *,
        strength: float,
        solver: str = "dpmpp_2m",
        steps: int = 20,
        seed: int = 0,
    ) -> SampleResult:
        """Guided samples from x_T; a solve whose model turns NaN/inf raises ModelOutputError
        (`sample_posterior` reports it as diverged)."""
        if self.run is not None:
            return self.run(problem, x_T, check_strength(strength), steps, seed)
        return sample(self.model(problem, strength), x_T, solver=solver, steps=steps, seed=seed)


TFG_DEFAULT = TFGConfig()
TFG_RECUR = TFGConfig(n_recur=2)

INVERSE_METHODS: Registry[InverseMethod] = Registry("inverse guidance method")
for _method in (
    InverseMethod(
        "exact",
        "exact guidance",
        "grad log p_t(y | x_t) in closed form (the exact posterior model)",
        lambda problem, s: lambda x, a, sg: s * problem.exact_guidance(x, a, sg),
        exact_at=(1.0,),
    ),
    InverseMethod(
        "dps",
        "DPS",
        "zeta grad log N(y; A x0_hat, R) through the denoiser (Chung et al. 2022)",
        dps_term,
    ),
    InverseMethod(
        "dps_normalized",
        "DPS (zeta / ||y - A x0_hat||)",
        "-zeta grad ||y - A x0_hat||: DPS's normalized step (Chung et al. 2022)",
        dps_normalized_term,
    ),
    InverseMethod(
        "tfg",
        "TFG (rho, mu, sigma-bar)",
        "variance + mean guidance on the smoothed predictor (Ye et al. 2024)",
        lambda problem, s: tfg_term(problem, TFG_DEFAULT.scaled(s)),
    ),
    InverseMethod(
        "tfg_recur",
        "TFG with recurrence (N_recur = 2)",
        "TFG's sampler with each step repeated after re-noising (Ye et al. 2024)",
        lambda problem, s: tfg_term(problem, TFG_RECUR.scaled(s)),
        run=lambda problem, x_T, s, steps, seed: tfg_sample(
            problem, x_T, config=TFG_RECUR.scaled(s), steps=steps, seed=seed
        ),
    ),
    InverseMethod(
        "enkg",
        f"ensemble Kalman guidance ({DEFAULT_ENSEMBLE} particles)",
        "derivative-free: ensemble covariances replace the Jacobian (Zheng et al. 2024)",
        lambda problem, s: enkg_term(problem, s),
        derivative_free=True,
        ensemble=True,
    ),
):
    INVERSE_METHODS.add(_method.name, _method, label=_method.label)


def sample_posterior(
    method: str,
    problem: InverseProblem,
    *,
    strength: float,
    n: int,
    steps: int,
    solver: str = "dpmpp_2m",
    seed: int = 0,
) -> dict:
    """{"x", "nfe", "diverged", "message"}: a diverging solve is reported, not raised."""
    from workbench.diffusion.core import prior_noise

    x_T = prior_noise(problem.schedule, n, problem.prior.dim, seed)
    spec = INVERSE_METHODS[method]
    try:
        result = spec.sample(problem, x_T, strength=strength, solver=solver, steps=steps, seed=seed)
    except ModelOutputError as error:
        return {"x": None, "nfe": math.nan, "diverged": True, "message": str(error)}
    if not bool(torch.isfinite(result.x).all()):
        return {"x": None, "nfe": result.nfe, "diverged": True, "message": "non-finite samples"}
    return {"x": result.x, "nfe": result.nfe, "diverged": False, "message": ""}
