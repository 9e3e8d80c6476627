"""DPM-Solver-v3 (Zheng et al., NeurIPS 2023): an exponential integrator in a parameterization
fitted to the model at hand through its empirical model statistics (EMS).

The ODE in lambda = log(alpha / sigma), dx/dlambda = (alpha'/alpha) x - sigma eps, is rewritten
with three per-dimension coefficients l, s, b (functions of lambda, shape (D,)):

    f(x, lambda) = (sigma eps_hat - l x) / alpha = (1 - l) x / alpha - x0_hat
    dx/dlambda   = (alpha'/alpha - l) x - alpha f
    g(lambda)    = e^{-(S - S_s)} f - int_{lambda_s}^{lambda} e^{-(S_r - S_s)} b_r dr

with L, S the integrals of l, s. An exact solve from lambda_s to lambda_t gives

    x_t = (alpha_t / alpha_s) e^{-(L_t - L_s)} x_s
          - alpha_t int e^{-(L_t - L) + (S - S_s)} (g + beta) dlambda,   beta = the b-integral.

The EMS choose l to make f as insensitive to x as possible (l = E[diag(d(sigma eps)/dx)],
minimizing E||grad_x(sigma eps - l x)||_F^2) and (s, b) as the least-squares fit
df/dlambda ~ s f + b along the ODE, so that g is as flat as possible in lambda and its Taylor
expansion (first-order term only: g ~ g_s) has the smallest first-order error. l = 1, s = b = 0
is DPM-Solver++ (data prediction); l = 0, s = -1, b = 0 is DPM-Solver (noise prediction).

How the solver gets the EMS. The registered solver keeps the common signature; the statistics
travel through its options, `sample(..., solver_options={"ems": ems})`; absent that, it asks
`get_ems(model, dim)`, which computes them lazily with `compute_ems` and memoizes them by the
model's content (a model without content is computed every time). `compute_ems` calls the
model directly (never through the Evaluator), so no statistics call counts toward a sample's
NFE. Samples of p_lambda come from
forward-noising `data` (clean x_0) when the caller gives it, otherwise from the model itself: a
high-accuracy ODE solve of prior noise to t_min, then exact Gaussian transitions to each lambda.
Jacobian-vector products are exact (torch.func.jvp, float64). The statistics live on a lambda
grid (default 200 points) finer than any sampling grid, linearly interpolated in between (and
held constant beyond its ends); EMS errors cost accuracy, never consistency: any l, s, b give a
convergent solver.

Multistep predictor, corrector and pseudo-order follow the paper: the predictor of order k uses
g at the current and k - 1 previous points; after each new model call the corrector re-solves
the previous step including the new point (no extra NFE), keeping f at that point unchanged.
Pseudo-order replaces the exact polynomial derivatives by leading divided differences (more
stable with very few, far-apart points).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
from scipy.interpolate import CubicSpline

from workbench.diffusion.core import Evaluator, Grid, SolverOptions, prior_noise
from workbench.diffusion.models import DiffusionModel, to_data_and_noise
from workbench.diffusion.reference import reference_solution
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.diffusion.solvers import multistep, register
from workbench.memo import Memo

DEFAULT_STAT_LAMBDAS = 200
DEFAULT_STAT_SAMPLES = 1024
# the paper's scripts use the pseudo-order predictor at <= 5 NFE; on the ring mixture it also
# helps order 3 up to 10 (order 2 is unaffected: its divided difference is exact)
PSEUDO_PREDICTOR_MAX_STEPS = 10
QUADRATURE_SPACING = 2e-3  # lambda spacing of the per-step integrals (Richardson-extrapolated)
L_STEP = 1e-4  # lambda step of the central difference for dl/dlambda


@dataclass(frozen=True)
class EMS:
    """Empirical model statistics on an increasing lambda grid: l, s, b of shape (K, D)."""

    lambdas: torch.Tensor
    l: torch.Tensor
    s: torch.Tensor
    b: torch.Tensor
    seconds: float = 0.0  # wall time of the computation, for reports

    def __post_init__(self) -> None:
        # a C^2 interpolant: piecewise-linear statistics would put kinks into g', capping the
        # multistep order at 2 however fine the statistics grid
        stacked = torch.cat([self.l, self.s, self.b], dim=1).numpy()
        object.__setattr__(self, "_spline", CubicSpline(self.lambdas.numpy(), stacked, axis=0))

    def at(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(l, s, b) at the lambdas `lam` (shape (M,)), each (M, D); constant beyond the ends."""
        inside = torch.clamp(lam, self.lambdas[0], self.lambdas[-1]).numpy()
        values = torch.from_numpy(self._spline(inside))
        return tuple(torch.chunk(values, 3, dim=1))

    @classmethod
    def constant(cls, lambdas, dim: int, l: float, s: float, b: float) -> EMS:
        """Statistics that do not depend on lambda, e.g. l=1, s=b=0 (DPM-Solver++)."""
        lambdas = torch.as_tensor(lambdas, dtype=DTYPE)
        full = [torch.full((len(lambdas), dim), float(v), dtype=DTYPE) for v in (l, s, b)]
        return cls(lambdas, *full)


# ------------------------------------------------------------------ the statistics
def compute_ems(
    model: DiffusionModel,
    data: torch.Tensor | None = None,
    *,
    dim: int | None = None,
    lambdas: torch.Tensor | None = None,
    n_samples: int = DEFAULT_STAT_SAMPLES,
    seed: int = 0,
) -> EMS:
    """l, s, b of `model` on `lambdas` (default: 200 uniform points over the schedule's range).

    `data` are clean samples x_0 (N, D); without it, N = n_samples samples of the model's own
    p_{t_min} (dimension `dim`) are drawn by a reference ODE solve from prior noise. The same
    samples and noise are reused at every lambda (common random numbers), so the statistics are
    smooth in lambda.
    """
    if data is None and dim is None:
        raise ValueError("compute_ems needs clean `data` samples or the data dimension `dim`")
    start = time.perf_counter()
    schedule = model.schedule
    lambdas = default_stat_lambdas(schedule) if lambdas is None else lambdas.to(DTYPE)
    generator = torch.Generator().manual_seed(seed)
    base, t_base = _base_samples(model, data, dim, n_samples, generator)
    noise = torch.randn(base.shape, generator=generator, dtype=DTYPE)
    rows = [_statistics_at(model, base, t_base, noise, lam) for lam in lambdas]
    l, s, b = (torch.stack(column) for column in zip(*rows, strict=True))
    return EMS(lambdas, l, s, b, seconds=time.perf_counter() - start)


def _statistics_at(model, base, t_base, noise, lam) -> tuple[torch.Tensor, ...]:
    """(l, s, b) at one lambda from the samples `base` noised to it."""

    def l_at(mu):
        return _optimal_l(model, _noised(model.schedule, base, t_base, mu, noise), mu)

    # The estimator is smooth in lambda (fixed samples and noise), so a tiny central difference
    # gives its derivative to ~1e-9; a difference across the statistics grid would not: where f
    # is a tiny residual (high noise, f ~ alpha^3) its error would swamp df/dlambda.
    up, down = l_at(lam + L_STEP), l_at(lam - L_STEP)
    l, dl = 0.5 * (up + down), (up - down) / (2 * L_STEP)
    x = _noised(model.schedule, base, t_base, lam, noise)
    f, df = _f_and_derivative(model, x, lam, l, dl)
    s, b = _least_squares_sb(f, df)
    return l, s, b


def default_stat_lambdas(schedule: NoiseSchedule, n: int = DEFAULT_STAT_LAMBDAS) -> torch.Tensor:
    """n uniform log-SNRs over the schedule's range, refused where it is infinite (a flow path
    reaches pure noise and clean data: the statistics need the solve's own finite range)."""
    low, high = float(schedule.lambda_(schedule.t_max)), float(schedule.lambda_(schedule.t_min))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            f"{schedule.name} has infinite log-SNR at an end of [t_min, t_max]: compute the "
            "DPM-Solver-v3 statistics on the solve's range (compute_ems(..., lambdas=...))"
        )
    # spaced in float64: float32 points differ by ~1e-7 between CPU code paths
    return torch.linspace(low, high, n, dtype=DTYPE)


def _base_samples(model, data, dim, n_samples, generator) -> tuple[torch.Tensor, float | None]:
    """(samples, their time): clean data at t = None, or the model's own samples at t_min."""
    if data is not None:
        return data.to(DTYPE), None

    schedule = model.schedule
    prior = prior_noise(schedule, n_samples, dim, generator)
    # reference_solution uses its own Evaluator: none of these calls reach a sample's NFE
    return reference_solution(model, prior, rtol=1e-9, atol=1e-9), schedule.t_min


def _noised(schedule, base, t_base, lam, noise) -> torch.Tensor:
    """Exact samples of p_lambda from samples at t_base (None: clean data at sigma = 0)."""
    t = schedule.t_of_lambda(lam)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    if t_base is None:
        return alpha * base + sigma * noise
    # Gaussian transition from t_base: mean ratio a, variance sigma^2 - a^2 sigma_base^2
    a = alpha / schedule.alpha(t_base)
    variance = sigma**2 - a**2 * schedule.sigma(t_base) ** 2
    return a * base + torch.sqrt(torch.clamp(variance, min=0.0)) * noise


def _data_prediction(model: DiffusionModel, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """x0_hat(x, lambda) straight from the model (differentiable in x and lambda)."""
    schedule = model.schedule
    t = schedule.t_of_lambda(lam)
    output = model.fn(x, t)
    if model.prediction == "data":
        return output
    derivatives = schedule.derivatives(t) if model.prediction == "velocity" else (None, None)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    return to_data_and_noise(output, model.prediction, x, alpha, sigma, *derivatives)[0]


def _optimal_l(model, x, lam) -> torch.Tensor:
    """l = E[diag(d(sigma eps_hat)/dx)] = 1 - alpha E[diag(d x0_hat/dx)], exact diagonal."""
    alpha = model.schedule.alpha(model.schedule.t_of_lambda(lam))
    diagonal = []
    for d in range(x.shape[1]):
        direction = torch.zeros_like(x)
        direction[:, d] = 1.0
        _, tangent = torch.func.jvp(lambda y: _data_prediction(model, y, lam), (x,), (direction,))
        diagonal.append(tangent[:, d].mean())
    return 1.0 - alpha * torch.stack(diagonal)


def _log_alpha_slope(schedule: NoiseSchedule, lam: torch.Tensor, h: float = 1e-5):
    """d log(alpha) / d lambda; log alpha is smooth in lambda for every schedule here."""

    def log_alpha(value):
        return schedule.log_alpha(schedule.t_of_lambda(value))

    return (log_alpha(lam + h) - log_alpha(lam - h)) / (2 * h)


def _f_and_derivative(model, x, lam, l, dl) -> tuple[torch.Tensor, torch.Tensor]:
    """f = (1 - l) x / alpha - x0_hat and its total derivative in lambda along the ODE."""
    schedule = model.schedule
    alpha = schedule.alpha(schedule.t_of_lambda(lam))
    x0 = _data_prediction(model, x, lam)
    log_alpha_slope = _log_alpha_slope(schedule, lam)
    dx = (log_alpha_slope - 1.0) * x + alpha * x0  # dx/dlambda = (sigma'/sigma) x + alpha x0
    _, dx0 = torch.func.jvp(
        lambda y, mu: _data_prediction(model, y, mu), (x, lam), (dx, torch.ones_like(lam))
    )
    f = (1 - l) * x / alpha - x0
    df = (-dl - (1 - l) * log_alpha_slope) * x / alpha + (1 - l) * dx / alpha - dx0
    return f, df


def _least_squares_sb(f: torch.Tensor, df: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per dimension, (s, b) minimizing E|df - s f - b|^2 over the samples."""
    f_mean, df_mean = f.mean(0), df.mean(0)
    covariance = ((f - f_mean) * (df - df_mean)).mean(0)
    variance = ((f - f_mean) ** 2).mean(0)
    # f constant over samples (a Gaussian model): any s fits; s = 0 keeps b = E df exact
    s = torch.where(variance > 0, covariance / variance.clamp_min(1e-300), 0.0)
    return s, df_mean - s * f_mean


# ------------------------------------------------------------------ where the solver finds EMS
STATISTICS = Memo("DPM-Solver-v3 statistics", maxsize=16)


def get_ems(model: DiffusionModel, dim: int, lambdas: torch.Tensor | None = None) -> EMS:
    """The statistics of `model` from its own samples (`compute_ems` defaults), memoized by
    the model's content, dimension and statistics grid."""
    lambdas = default_stat_lambdas(model.schedule) if lambdas is None else lambdas.to(DTYPE)
    compute = lambda: compute_ems(model, dim=dim, lambdas=lambdas)  # noqa: E731
    return STATISTICS.get((model, dim, lambdas), compute)


# ------------------------------------------------------------------ one step of the integrator
@dataclass(frozen=True)
class _StepIntegrals:
    """Integrals of the EMS over [lambda_s, lambda_end] that a step needs."""

    decay: torch.Tensor  # e^{-(L_end - L_s)}
    growth: torch.Tensor  # e^{S_end - S_s}
    beta: torch.Tensor  # int e^{-(S_r - S_s)} b_r dr
    weights: torch.Tensor  # (n, D): int e^{-(L_end - L) + (S - S_s)} (lambda - lambda_s)^k / k!
    bias: torch.Tensor  # int e^{-(L_end - L) + (S - S_s)} beta(lambda) dlambda


def step_integrals(ems: EMS, lam_s: float, lam_end: float, n_terms: int = 1) -> _StepIntegrals:
    """Trapezoid integrals of the (smooth) interpolated statistics, Richardson-extrapolated from
    two resolutions: error O(spacing^4)."""
    grid = _quadrature_grid(lam_s, lam_end)
    coarse = _trapezoid_integrals(ems, grid, n_terms)
    fine = _trapezoid_integrals(ems, _halve(grid), n_terms)
    return _StepIntegrals(*((4 * f - c) / 3 for f, c in zip(fine, coarse, strict=True)))


def _quadrature_grid(lam_s: float, lam_end: float) -> torch.Tensor:
    n = max(2, math.ceil(abs(lam_end - lam_s) / QUADRATURE_SPACING) + 1)
    return torch.linspace(lam_s, lam_end, n, dtype=DTYPE)


def _halve(grid: torch.Tensor) -> torch.Tensor:
    """The grid with every interval split in two (for Richardson extrapolation)."""
    midpoints = 0.5 * (grid[1:] + grid[:-1])
    interleaved = torch.stack([grid[:-1], midpoints], dim=1).reshape(-1)
    return torch.cat([interleaved, grid[-1:]])


def _cumulative(values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Cumulative trapezoid integral from grid[0], same length as grid."""
    widths = (grid[1:] - grid[:-1])[:, None]
    steps = 0.5 * widths * (values[1:] + values[:-1])
    return torch.cat([torch.zeros_like(values[:1]), torch.cumsum(steps, 0)])


def _trapezoid_integrals(ems: EMS, grid: torch.Tensor, n_terms: int):
    l, s, b = ems.at(grid)
    big_l, big_s = _cumulative(l, grid), _cumulative(s, grid)
    beta = _cumulative(torch.exp(-big_s) * b, grid)
    kernel = torch.exp(big_l - big_l[-1] + big_s)
    offset = (grid - grid[0])[:, None]
    weights = torch.stack(
        [_cumulative(kernel * offset**k / math.factorial(k), grid)[-1] for k in range(n_terms)]
    )
    bias = _cumulative(kernel * beta, grid)[-1]
    return torch.exp(-big_l[-1]), torch.exp(big_s[-1]), beta[-1], weights, bias


# ------------------------------------------------------------------ the multistep solver
@dataclass
class _Point:
    """A state where the model was called: lambda, alpha, x and f = (sigma eps - l x) / alpha."""

    lam: float
    alpha: torch.Tensor
    x: torch.Tensor
    f: torch.Tensor


def transformed_f(ems: EMS, x, x0, lam: float, alpha) -> torch.Tensor:
    l = ems.at(torch.tensor([lam], dtype=DTYPE))[0][0]
    return (1 - l) * x / alpha - x0


def _g_relative_to(ems: EMS, base: _Point, point: _Point) -> torch.Tensor:
    """g at `point` for an expansion around `base`: e^{-(S - S_s)} f - beta."""
    if point is base:
        return point.f
    integrals = step_integrals(ems, base.lam, point.lam)
    return point.f / integrals.growth - integrals.beta


def _taylor_derivatives(offsets, values, pseudo: bool) -> list[torch.Tensor]:
    """g^(1..n) at offset 0 from g at offsets [0, o_1, ..., o_n] (values[0] at offset 0).

    Exact: the derivatives of the interpolating polynomial (a Vandermonde solve). Pseudo: k!
    times the k-th leading divided difference, which ignores the lower-order cross terms.
    """
    n = len(offsets) - 1
    if pseudo:
        table, derivatives = list(values), []
        for k in range(1, n + 1):
            table = [
                (table[j] - table[j + 1]) / (offsets[j] - offsets[j + k])
                for j in range(len(table) - 1)
            ]
            derivatives.append(table[0] * math.factorial(k))
        return derivatives
    vandermonde = torch.tensor(
        [[o**k / math.factorial(k) for k in range(1, n + 1)] for o in offsets[1:]], dtype=DTYPE
    )
    differences = torch.stack([v - values[0] for v in values[1:]]).reshape(n, -1)
    solution = torch.linalg.solve(vandermonde, differences)
    return list(solution.reshape(n, *values[0].shape))


def _advance(
    ems: EMS, base: _Point, others: list[_Point], lam_t: float, alpha_t, pseudo: bool
) -> torch.Tensor:
    """x at lam_t from `base`, with g extrapolated through `base` and `others` (order 1 + len)."""
    integrals = step_integrals(ems, base.lam, lam_t, n_terms=1 + len(others))
    terms = [base.f]
    if others:
        offsets = [0.0] + [p.lam - base.lam for p in others]
        values = [base.f] + [_g_relative_to(ems, base, p) for p in others]
        terms += _taylor_derivatives(offsets, values, pseudo)
    expansion = sum(w * term for w, term in zip(integrals.weights, terms, strict=True))
    linear = (alpha_t / base.alpha) * integrals.decay * base.x
    return linear - alpha_t * (expansion + integrals.bias)


class _V3Method:
    """DPM-Solver-v3's multistep predictor(-corrector) as a `multistep` method."""

    def __init__(self, grid: Grid, ems: EMS, corrector: bool, predictor_pseudo: bool,
                 corrector_pseudo: bool):  # fmt: skip
        self.grid, self.ems, self.corrector = grid, ems, corrector
        self.predictor_pseudo, self.corrector_pseudo = predictor_pseudo, corrector_pseudo
        self.points: list[_Point] = []
        self.predictor_order = 0  # the order of the step that reached the newest point

    def observe(self, i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor):
        lam, alpha = float(self.grid.lambdas[i - 1]), self.grid.alphas[i - 1]
        points = self.points
        points.append(_Point(lam, alpha, x, transformed_f(self.ems, x, x0, lam, alpha)))
        corrector_order = self.predictor_order + int(self.corrector_pseudo)
        if self.corrector and corrector_order > 1:
            # re-solve the last step through the new point; f there is kept (no extra call)
            base, new = points[-2], points[-1]
            others = [new, *points[-corrector_order:-2][::-1]]
            new.x = _advance(self.ems, base, others, new.lam, new.alpha, self.corrector_pseudo)
        return points[-1].x

    def step(self, i: int, x: torch.Tensor, order: int) -> torch.Tensor:
        self.predictor_order = order
        history = self.points[-order:][::-1]
        lam_t, alpha_t = float(self.grid.lambdas[i]), self.grid.alphas[i]
        return _advance(self.ems, history[0], history[1:], lam_t, alpha_t, self.predictor_pseudo)


def v3_solve(
    ev: Evaluator,
    x: torch.Tensor,
    grid: Grid,
    ems: EMS,
    order: int,
    *,
    corrector: bool = True,
    predictor_pseudo: bool = False,
    corrector_pseudo: bool = False,
    opts: SolverOptions | None = None,
) -> torch.Tensor:
    """The multistep predictor(-corrector) with explicit statistics and switches."""
    opts = SolverOptions(order=order) if opts is None else dataclasses.replace(opts, order=order)
    method = _V3Method(grid, ems, corrector, predictor_pseudo, corrector_pseudo)
    return multistep(ev, x, grid, opts, method)


@register(
    "dpm_solver_v3", orders=(1, 2, 3), default_order=2, options=("ems",), label="DPM-Solver-v3"
)
def dpm_solver_v3(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """DPM-Solver-v3: multistep predictor-corrector in the EMS-optimal parameterization."""
    ems = opts.extra.get("ems") or get_ems(ev.model, dim=x.shape[1])
    return v3_solve(
        ev,
        x,
        grid,
        ems,
        opts.order,
        corrector=True,
        predictor_pseudo=grid.steps <= PSEUDO_PREDICTOR_MAX_STEPS,
        opts=opts,
    )
