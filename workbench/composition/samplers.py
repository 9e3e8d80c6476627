"""Samplers of a product of two experts from their noised scores, and how far each lands.

Every sampler has one signature, `sampler(problem, n, steps, seed, **knobs) -> CompositionResult`,
and counts its compute as composed-score evaluations per sample (one evaluation = each expert's
score, and for MALA its log-density, at one point and one time).

- "naive_ode" / "naive_sde": the summed scores s1_t + s2_t as a model, solved by DPM-Solver++(2M)
  or the first-order reverse SDE (`product_sde_step`). Biased: see `product.py`.
- "fk_smc": Feynman-Kac corrector SMC, the product mode of Skreta et al. 2025 ("Feynman-Kac
  Correctors in Diffusion: Annealing, Guidance, and Product of Experts", arXiv:2503.02819).
  The weights, derived here (not those of the guidance case in `workbench.diffusion.smc`):
  forward SDE dx = f x dt + g dW, each q_i solves the forward Fokker-Planck equation, so with
  s_i = grad log q_i,  d/dt log q_i = -d f - f x.s_i + (g^2 / 2)(div s_i + |s_i|^2).
  For p~ = q1 q2 (unnormalized) and the reverse SDE with drift -f x + g^2 (s1 + s2), the
  reverse-time Fokker-Planck operator gives, per unit p~,
  d f + f x.s - (g^2 / 2)(div s + |s|^2) with s = s1 + s2, while -d/dt log p~ =
  2 d f + f x.s - (g^2 / 2)(div s + |s1|^2 + |s2|^2). Their difference is the Feynman-Kac rate
      G(x, t) = g(t)^2 <s1(x, t), s2(x, t)> + d f(t)
  (|s|^2 - |s1|^2 - |s2|^2 = 2 <s1, s2>); the d f term is the same for every particle and
  cancels in the self-normalized weights, so d log W = g^2 <s1, s2> dtau. The guidance case has
  (g^2 / 2) w (w - 1) |s_c - s_u|^2 instead and no constant (its exponents w and 1 - w sum to
  1, so the divergence term -d f appears once, as in one density; a product's exponents sum to
  2). Discretized as `smc.fk_smc` does (trapezoid along the path with the exact integral of
  g^2, `smc.diffusion_integral`), but with the step `product_sde_step`, the exponential
  integrator of the summed score's linear part (`smc.sde_step` is its k = 1 case).
  The particles start from the prior N(0, sigma_T^2) with exact importance weights
  q1_T q2_T / N(0, sigma_T^2) (the target at t_max is about N(0, sigma_T^2 / 2)). n samples
  come from n / particles independent groups of `particles` each (the knob: bias shrinks as a
  group grows, at the same evaluations per sample); each group resamples (systematic) when its
  ESS fraction falls below `ess_threshold` and once at the end.
- "ula" / "mala": annealed MCMC after Du et al. 2023 ("Reduce, Reuse, Recycle: Compositional
  Generation with Energy-Based Diffusion Models and MCMC", arXiv:2302.11552): a reverse-SDE step
  with the summed scores, then `mcmc_steps` Langevin steps targeting q1_t q2_t at the new
  level, step size eps = step_scale sigma_t^2 (annealed Langevin's scaling). ULA is the
  unadjusted step; MALA adds the Metropolis-Hastings test with the exact energies
  log q1_t + log q2_t (here known in closed form; the paper's energy parametrization is what
  makes them available for learned models). Reported: MALA's mean acceptance.
- "exact_ode": the product mixture's own denoiser, DPM-Solver++(2M): the reference that only a
  ground truth allows.

A run whose samples become NaN, infinite or larger than DIVERGENCE_BOUND is returned with
`diverged=True` (x is None), not raised. `product_distance` measures sliced Wasserstein-2 from
samples to a large exact set of the product, next to the floor (the same for an exact set of
the same size); `budget_table` sweeps compute budgets: distance vs evaluations per sample.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from workbench.composition.product import ProductProblem
from workbench.diffusion import smc
from workbench.diffusion.core import Grid, ModelOutputError, prior_noise
from workbench.diffusion.grids import make_grid
from workbench.diffusion.sampling import sample
from workbench.diffusion.schedules import DTYPE
from workbench.metrics import sliced_wasserstein
from workbench.registry import Registry

DEFAULT_STEP_SCALE = 0.5  # Langevin eps = 0.5 sigma_t^2: MALA accepts 0.81-0.84 here
ODE_SOLVER = "dpmpp_2m"
SW_PROJECTIONS = 128
# |x| beyond this is a blown-up run (the toy data live within ~5 of the origin): reported as
# diverged before it overflows to inf
DIVERGENCE_BOUND = 1e6
REFERENCE_FACTOR = 8  # exact reference draws per sample measured


@dataclass
class CompositionResult:
    """Samples of one sampler run and what they cost.

    x: (n, D) samples, None if the run diverged.
    evaluations: composed-score evaluations per sample (each = both experts at one point).
    acceptance: MALA's mean acceptance rate (ULA: 1.0; None for non-MCMC samplers).
    min_ess: FK-SMC's smallest ESS fraction over steps and groups (None otherwise).
    """

    sampler: str
    x: torch.Tensor | None
    evaluations: int
    diverged: bool = False
    acceptance: float | None = None
    min_ess: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Sampler:
    name: str
    label: str
    run: Callable[..., CompositionResult]
    knobs: tuple[str, ...] = ()  # the keyword knobs it takes beyond (problem, n, steps, seed)


# ------------------------------------------------------------------ input checks
def _check_problem(problem) -> ProductProblem:
    if not isinstance(problem, ProductProblem):
        raise ValueError(f"problem must be a ProductProblem, got {type(problem).__name__}")
    return problem


def _check_count(name: str, value, minimum: int) -> int:
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not integral or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(name: str, value) -> float:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _levels(problem: ProductProblem, steps: int) -> Grid:
    schedule = problem.schedule
    return Grid.of(schedule, make_grid(schedule, "logsnr", steps, None, None))


def _blown_up(x: torch.Tensor) -> bool:
    """NaN, inf or beyond DIVERGENCE_BOUND anywhere (NaN fails the comparison too)."""
    return not bool((x.abs() < DIVERGENCE_BOUND).all())


def _diverged(name: str, evaluations: int, started: float) -> CompositionResult:
    return CompositionResult(
        name, None, evaluations, diverged=True, seconds=time.perf_counter() - started
    )


# ------------------------------------------------------------------ the reverse-SDE step
def product_sde_step(grid: Grid, i: int, x, x0_sum, noise, experts: int = 2) -> torch.Tensor:
    """One reverse-SDE step t_{i-1} -> t_i with the summed score of k = `experts` experts,
    s = (alpha m - k x) / sigma^2, m = the sum of their data predictions, held over the step.

    The exponential integrator of the linear part (exact for constant m): with h the step in
    lambda, x_i = (alpha_i / alpha_{i-1}) e^{-2kh} x + alpha_i (1 - e^{-2kh}) / k m
    + sigma_i sqrt((1 - e^{-(4k-2)h}) / (2k - 1)) z. k = 1 is `smc.sde_step` (DDPM's step).
    Feeding the summed score to the k = 1 step instead treats the extra -x / sigma^2
    explicitly; at 100-400 log-SNR steps the two agree to Monte Carlo error on the tests'
    Gaussian product (the step is not what limits FK-SMC there: the group size is).
    """
    h = grid.lambdas[i] - grid.lambdas[i - 1]
    decay = torch.exp(-2 * experts * h)
    mean = (grid.alphas[i] / grid.alphas[i - 1]) * decay * x
    mean = mean + grid.alphas[i] * (1 - decay) / experts * x0_sum
    spread = -torch.expm1(-(4 * experts - 2) * h) / (2 * experts - 1)
    return mean + grid.sigmas[i] * torch.sqrt(spread) * noise


# ------------------------------------------------------------------ naive and exact models
def _solve(name: str, model_of, problem, n, steps, seed, solver) -> CompositionResult:
    problem = _check_problem(problem)
    n, steps = _check_count("n", n, 2), _check_count("steps", steps, 1)
    started = time.perf_counter()
    x_T = prior_noise(problem.schedule, n, problem.dim, seed)
    try:
        result = sample(model_of(problem), x_T, solver=solver, steps=steps, seed=seed)
    except ModelOutputError:
        return _diverged(name, steps, started)
    if _blown_up(result.x):
        return _diverged(name, result.nfe, started)
    return CompositionResult(name, result.x, result.nfe, seconds=time.perf_counter() - started)


def naive_ode(problem, n, steps, seed=0) -> CompositionResult:
    return _solve("naive_ode", lambda p: p.naive, problem, n, steps, seed, ODE_SOLVER)


def exact_ode(problem, n, steps, seed=0) -> CompositionResult:
    return _solve("exact_ode", lambda p: p.exact, problem, n, steps, seed, ODE_SOLVER)


def naive_sde(problem, n, steps, seed=0) -> CompositionResult:
    """The reverse SDE of the summed scores (`product_sde_step`); its noise stream is the one
    `fk_smc_product` draws, so fk_smc with particles=1 returns the same samples."""
    problem = _check_problem(problem)
    n, steps = _check_count("n", n, 2), _check_count("steps", steps, 1)
    started = time.perf_counter()
    levels = _levels(problem, steps)
    x = prior_noise(problem.schedule, n, problem.dim, seed)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    for i in range(1, levels.steps + 1):
        x0_sum, _ = _experts_at(problem, x, levels, i - 1)
        noise = torch.randn(x.shape, generator=generator, dtype=DTYPE)
        x = product_sde_step(levels, i, x, x0_sum, noise)
        if _blown_up(x):
            return _diverged("naive_sde", i, started)
    return CompositionResult("naive_sde", x, steps, seconds=time.perf_counter() - started)


# ------------------------------------------------------------------ Feynman-Kac corrector SMC
def _experts_at(problem: ProductProblem, x, levels: Grid, i: int):
    """(x0_1 + x0_2, <s1, s2>) at level i: one evaluation of each expert (exact denoisers;
    s_j = (alpha x0_j - x) / sigma^2)."""
    alpha, sigma = levels.alphas[i], levels.sigmas[i]
    x0_first = problem.first.denoise(x, alpha, sigma)
    x0_second = problem.second.denoise(x, alpha, sigma)
    s1, s2 = (alpha * x0_first - x) / sigma**2, (alpha * x0_second - x) / sigma**2
    return x0_first + x0_second, (s1 * s2).sum(1)


def _grouped_ess(log_weights: torch.Tensor) -> torch.Tensor:
    """(G,) ESS fraction per group of (G, P) log-weights (smc.effective_sample_size per row)."""
    normalized = torch.softmax(log_weights, 1)
    return 1.0 / (normalized**2).sum(1) / log_weights.shape[1]


def _grouped_resample(log_weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(G, P) indices within each group: systematic resampling (as smc.systematic_resample,
    row by row in one call: one uniform offset per group)."""
    groups, size = log_weights.shape
    cumulative = torch.cumsum(torch.softmax(log_weights, 1), 1)
    cumulative[:, -1] = 1.0  # round-off must not leave the last position beyond the CDF
    offsets = torch.rand(groups, 1, generator=generator, dtype=DTYPE)
    positions = (offsets + torch.arange(size, dtype=DTYPE)) / size
    return torch.searchsorted(cumulative, positions.contiguous()).clamp_max(size - 1)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (G, P, ...) gathered along P by index (G, P)."""
    return x[torch.arange(x.shape[0])[:, None], index]


def fk_smc_product(
    problem, n, steps, seed=0, *, particles: int = 64, ess_threshold: float = 0.5
) -> CompositionResult:
    """Feynman-Kac corrector SMC for the product (module docstring: weights g^2 <s1, s2>)."""
    problem = _check_problem(problem)
    n, steps = _check_count("n", n, 2), _check_count("steps", steps, 1)
    particles = _check_count("particles", particles, 1)
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be in [0, 1], got {ess_threshold}")
    started = time.perf_counter()
    groups = math.ceil(n / particles)
    levels = _levels(problem, steps)
    x = prior_noise(problem.schedule, groups * particles, problem.dim, seed)
    generator = torch.Generator().manual_seed(int(seed) + 1)

    log_weights = _initial_log_weights(problem, x, levels).reshape(groups, particles)
    x0, inner = _experts_at(problem, x, levels, 0)
    min_ess = 1.0
    for i in range(1, levels.steps + 1):
        noise = torch.randn(x.shape, generator=generator, dtype=DTYPE)
        x = product_sde_step(levels, i, x, x0, noise)
        x0, inner_next = _experts_at(problem, x, levels, i)
        if _blown_up(x) or _blown_up(x0):
            return _diverged("fk_smc", i + 1, started)
        rate = smc.diffusion_integral(levels, i) * 0.5 * (inner + inner_next)  # trapezoid
        log_weights = log_weights + rate.reshape(groups, particles)
        inner = inner_next
        ess = _grouped_ess(log_weights)
        min_ess = min(min_ess, float(ess.min()))
        low = ess < ess_threshold
        if bool(low.any()):
            x, x0, inner, log_weights = _resample_groups(
                low, log_weights, generator, x, x0, inner, problem.dim
            )
    index = _grouped_resample(log_weights, generator)
    final = _take(x.reshape(groups, particles, -1), index).reshape(-1, problem.dim)[:n]
    return CompositionResult(
        "fk_smc", final, steps + 1, min_ess=min_ess, seconds=time.perf_counter() - started
    )


def _initial_log_weights(problem: ProductProblem, x: torch.Tensor, levels: Grid) -> torch.Tensor:
    """log q1_T(x) + log q2_T(x) - log N(x; 0, sigma_T^2): the prior draws reweighted to the
    product at t_max (the normal's constant cancels in the self-normalization)."""
    alpha, sigma = levels.alphas[0], levels.sigmas[0]
    energy = problem.first.noised_log_prob(x, alpha, sigma)
    energy = energy + problem.second.noised_log_prob(x, alpha, sigma)
    return energy + 0.5 * (x**2).sum(1) / sigma**2


def _resample_groups(low, log_weights, generator, x, x0, inner, dim):
    """Resample the groups flagged in `low` (G,), leave the others; their weights reset to 0."""
    groups, size = log_weights.shape
    index = _grouped_resample(log_weights, generator)
    keep = torch.arange(size).expand(groups, size)
    index = torch.where(low[:, None], index, keep)
    x = _take(x.reshape(groups, size, dim), index).reshape(-1, dim)
    x0 = _take(x0.reshape(groups, size, dim), index).reshape(-1, dim)
    inner = _take(inner.reshape(groups, size), index).reshape(-1)
    log_weights = torch.where(low[:, None], torch.zeros_like(log_weights), log_weights)
    return x, x0, inner, log_weights


# ------------------------------------------------------------------ annealed MCMC
def _annealed_mcmc(
    name: str, metropolis: bool, problem, n, steps, seed, mcmc_steps, step_scale
) -> CompositionResult:
    problem = _check_problem(problem)
    n, steps = _check_count("n", n, 2), _check_count("steps", steps, 1)
    mcmc_steps = _check_count("mcmc_steps", mcmc_steps, 0)
    step_scale = _check_positive("step_scale", step_scale)
    started = time.perf_counter()
    levels = _levels(problem, steps)
    x = prior_noise(problem.schedule, n, problem.dim, seed)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    energy, score = problem.summed(x, levels.alphas[0], levels.sigmas[0])
    evaluations, accepted, proposed = 1, 0.0, 0
    for i in range(1, levels.steps + 1):
        alpha, sigma = levels.alphas[i], levels.sigmas[i]
        x0_sum = (2 * x + levels.sigmas[i - 1] ** 2 * score) / levels.alphas[i - 1]
        noise = torch.randn(x.shape, generator=generator, dtype=DTYPE)
        x = product_sde_step(levels, i, x, x0_sum, noise)
        energy, score = problem.summed(x, alpha, sigma)
        evaluations += 1
        eps = step_scale * float(sigma) ** 2
        for _ in range(mcmc_steps):
            x, energy, score, rate = _langevin_step(
                problem, x, energy, score, alpha, sigma, eps, metropolis, generator
            )
            accepted, proposed, evaluations = accepted + rate, proposed + 1, evaluations + 1
        if _blown_up(x) or not bool(torch.isfinite(score).all()):
            return _diverged(name, evaluations, started)
    acceptance = accepted / proposed if proposed else None
    return CompositionResult(
        name, x, evaluations, acceptance=acceptance, seconds=time.perf_counter() - started
    )


def _langevin_step(problem, x, energy, score, alpha, sigma, eps, metropolis, generator):
    """One ULA / MALA step x' = x + eps s(x) + sqrt(2 eps) z on log q1_t + log q2_t.

    Returns (x, energy, score, acceptance rate of the step); ULA accepts every proposal."""
    noise = torch.randn(x.shape, generator=generator, dtype=DTYPE)
    proposal = x + eps * score + math.sqrt(2 * eps) * noise
    energy_new, score_new = problem.summed(proposal, alpha, sigma)
    if not metropolis:
        return proposal, energy_new, score_new, 1.0
    forward = ((proposal - x - eps * score) ** 2).sum(1)  # -4 eps log q(x' | x), up to a const
    backward = ((x - proposal - eps * score_new) ** 2).sum(1)
    log_ratio = energy_new - energy - (backward - forward) / (4 * eps)
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)  # a NaN proposal is rejected
    uniform = torch.rand(len(x), generator=generator, dtype=DTYPE)
    accept = torch.log(uniform) < log_ratio
    x = torch.where(accept[:, None], proposal, x)
    energy = torch.where(accept, energy_new, energy)
    score = torch.where(accept[:, None], score_new, score)
    return x, energy, score, float(accept.to(DTYPE).mean())


def ula(
    problem, n, steps, seed=0, *, mcmc_steps: int = 4, step_scale: float = DEFAULT_STEP_SCALE
) -> CompositionResult:
    return _annealed_mcmc("ula", False, problem, n, steps, seed, mcmc_steps, step_scale)


def mala(
    problem, n, steps, seed=0, *, mcmc_steps: int = 4, step_scale: float = DEFAULT_STEP_SCALE
) -> CompositionResult:
    return _annealed_mcmc("mala", True, problem, n, steps, seed, mcmc_steps, step_scale)


SAMPLERS: Registry[Sampler] = Registry("composition sampler")
for _sampler in (
    Sampler("naive_ode", "summed scores, ODE (DPM-Solver++ 2M)", naive_ode),
    Sampler("naive_sde", "summed scores, reverse SDE", naive_sde),
    Sampler(
        "fk_smc",
        "Feynman-Kac corrector SMC (product)",
        fk_smc_product,
        ("particles", "ess_threshold"),
    ),
    Sampler("ula", "annealed ULA (summed scores)", ula, ("mcmc_steps", "step_scale")),
    Sampler("mala", "annealed MALA (exact energies)", mala, ("mcmc_steps", "step_scale")),
    Sampler("exact_ode", "exact product model, ODE (reference)", exact_ode),
):
    SAMPLERS.add(_sampler.name, _sampler, label=_sampler.label)


def run_sampler(name: str, problem, n: int, steps: int, seed: int = 0, **knobs):
    """SAMPLERS[name] with its knobs checked by name (an unknown knob is one clear error)."""
    entry = SAMPLERS[name]
    unknown = sorted(set(knobs) - set(entry.knobs))
    if unknown:
        takes = ", ".join(entry.knobs) if entry.knobs else "no knobs"
        raise ValueError(f"{name} does not take {unknown[0]!r} (it takes {takes})")
    return entry.run(problem, n, steps, seed, **knobs)


# ------------------------------------------------------------------ distances
@dataclass(frozen=True)
class ProductDistance:
    distance: float  # SW2(samples, exact draws)
    floor: float  # SW2 between two independent exact sets of the same size

    @property
    def gap(self) -> float:
        return self.distance - self.floor


def product_distance(samples, problem: ProductProblem, seed: int = 0) -> ProductDistance:
    """Sliced W2 from `samples` (N points) to a large exact set of the product
    (REFERENCE_FACTOR N draws, so its own noise is small), and the floor: the same distance
    for N other exact draws. Both sets are fixed by `seed`."""
    problem = _check_problem(problem)
    if samples is None:
        return ProductDistance(math.nan, math.nan)
    samples = torch.as_tensor(samples, dtype=DTYPE)
    if samples.ndim != 2 or samples.shape[1] != problem.dim or samples.shape[0] < 2:
        raise ValueError(
            f"samples must have shape (N, {problem.dim}) with N >= 2, got {tuple(samples.shape)}"
        )
    n = samples.shape[0]
    reference = problem.reference(REFERENCE_FACTOR * n, 10_000 + 2 * int(seed))
    other = problem.reference(n, 10_001 + 2 * int(seed))
    options = {"n_projections": SW_PROJECTIONS, "seed": int(seed)}
    return ProductDistance(
        sliced_wasserstein(samples, reference, **options),
        sliced_wasserstein(other, reference, **options),
    )


# ------------------------------------------------------------------ budgets
# (sampler, steps, knobs) per budget: the knob that buys compute grows along each list
DEFAULT_BUDGETS: Mapping[str, Sequence[tuple[int, dict]]] = {
    "naive_ode": [(10, {}), (25, {}), (100, {})],
    "naive_sde": [(50, {}), (200, {}), (800, {})],
    "fk_smc": [
        (100, {"particles": 1}),
        (100, {"particles": 8}),
        (100, {"particles": 64}),
        (200, {"particles": 64}),
    ],
    "ula": [(50, {"mcmc_steps": 0}), (50, {"mcmc_steps": 2}), (50, {"mcmc_steps": 8})],
    "mala": [(50, {"mcmc_steps": 0}), (50, {"mcmc_steps": 2}), (50, {"mcmc_steps": 8})],
    "exact_ode": [(25, {})],
}
TABLE_COLUMNS = (
    "sampler", "label", "steps", "knobs", "evaluations", "distance", "floor", "gap",
    "acceptance", "min_ess", "diverged", "seconds",
)  # fmt: skip


def budget_table(
    problem: ProductProblem,
    n: int = 2000,
    seed: int = 0,
    budgets: Mapping[str, Sequence[tuple[int, dict]]] | None = None,
) -> pd.DataFrame:
    """Distance to the exact product vs composed-score evaluations per sample, one row per
    (sampler, budget); a diverged run has NaN distance and diverged=True."""
    problem = _check_problem(problem)
    rows = []
    for name, settings in (budgets or DEFAULT_BUDGETS).items():
        for steps, knobs in settings:
            result = run_sampler(name, problem, n, steps, seed, **knobs)
            measured = product_distance(result.x, problem, seed)
            rows.append(
                {
                    "sampler": name,
                    "label": SAMPLERS.label(name),
                    "steps": steps,
                    "knobs": ", ".join(f"{k}={v}" for k, v in knobs.items()),
                    "evaluations": result.evaluations,
                    "distance": measured.distance,
                    "floor": measured.floor,
                    "gap": measured.gap,
                    "acceptance": result.acceptance,
                    "min_ess": result.min_ess,
                    "diverged": result.diverged,
                    "seconds": result.seconds,
                }
            )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
