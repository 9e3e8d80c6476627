"""Particle samplers for guidance: Feynman-Kac corrector SMC and derivative-free SVDD.

Both propagate particles with the reverse SDE, discretized as the first-order SDE-DPM-Solver++
step (identical to DDPM's ancestral step, DDIM with eta = 1): exact for the linear part, with
the data prediction x0 held over the step,

    x_i = (sigma_i / sigma_{i-1}) e^{-h} x_{i-1} + alpha_i (1 - e^{-2h}) x0
          + sigma_i sqrt(1 - e^{-2h}) z,   h = lambda_i - lambda_{i-1}.

Feynman-Kac correctors (Skreta et al. 2025). Guidance at scale w drives the reverse SDE with
the score of p_t ∝ q_t(x | c)^w q_t(x)^(1-w), s = w s_c + (1 - w) s_u, but these p_t are not the
marginals of that SDE: the forward Fokker-Planck equation applied to the geometric mixture
leaves a remainder. Writing it out (forward SDE dx = f x dt + g dW, each q solves the forward
Fokker-Planck equation, and w a^2 + (1 - w) b^2 - (w a + (1 - w) b)^2 = w (1 - w) (a - b)^2),

    d/dt p~_t = FP_forward[p~_t] + (g^2 / 2) w (1 - w) ||s_c - s_u||^2 p~_t,

and the reverse-time Fokker-Planck operator of the SDE with drift -f x + g^2 s applied to p~ is
exactly -FP_forward[p~]. So in reverse time tau, d/dtau p~ = FP_reverse[p~] + G p~ with

    G(x, t) = (g(t)^2 / 2) w (w - 1) ||s_c(x, t) - s_u(x, t)||^2,

and by the Feynman-Kac formula particles of the guided SDE carrying log-weights d log W = G dtau
have weighted marginals p_t (self-normalized: the normalizers of p~ cancel). At w = 0 and
w = 1, G = 0: the weights stay constant (a test checks this). Discretized here: over step i,
the trapezoid rule along the path, (integral g^2 dtau) (||s_c - s_u||^2 at both ends) / 2,
with the model calls the next step needs anyway (one extra call at t_end: NFE = steps + 1);
holding the gap at the step's start instead was measurably worse at 50-200 steps. The
integral of g^2 is 2 integral sigma^2 dlambda, by Gauss-Legendre in lambda. With
s = (alpha x0 - x) / sigma^2, s_c - s_u = alpha (x0_c - x0_u) / sigma^2. When the effective
sample size falls below a threshold the particles are resampled (systematic,
seeded); the ESS before resampling is reported per step, and the final weighted set is
resampled once more so the returned samples are equally weighted. The weight was derived here
as above (only the paper's abstract was at hand) and is checked numerically: at an
intermediate time the weighted particles have the mean of the exact geometric mixture of the
noised densities, which the unweighted ones miss (tests/test_guidance.py).

SVDD (Li et al. 2024, soft value-based decoding): at each step draw M candidates from the same
stochastic transition and keep the one with the highest value, the reward of its denoised
estimate x0_hat (temperature 0; a positive temperature samples a candidate with probability
∝ exp(value / temperature)). The reward needs no gradient: a class indicator works.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from workbench.diffusion.grids import make_grid
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import Evaluator, Grid, SampleResult, check_x_T
from workbench.diffusion.schedules import DTYPE

# Gauss-Legendre nodes for the per-step integral of g^2 (see diffusion_integral)
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)
_GL_PANEL = 0.25


@dataclass
class ParticleResult(SampleResult):
    """A SampleResult with what a particle sampler adds (None where it does not apply).

    ess: (steps,) effective sample size / N at each step, before any resampling there.
    resampled: (steps,) whether the particles were resampled at that step.
    log_weights: (N,) log-weights at t_end, before the final resampling.
    chosen: (steps, N) SVDD's chosen candidate per particle and step.
    """

    ess: torch.Tensor | None = None
    resampled: torch.Tensor | None = None
    log_weights: torch.Tensor | None = None
    chosen: torch.Tensor | None = None

    @property
    def final_ess(self) -> float:
        return effective_sample_size(self.log_weights) if self.log_weights is not None else 1.0


# ------------------------------------------------------------------ shared pieces
def sde_step(grid: Grid, i: int, x: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor):
    """One reverse-SDE step t_{i-1} -> t_i (SDE-DPM-Solver++ 1, = DDPM ancestral)."""
    h = grid.lambdas[i] - grid.lambdas[i - 1]
    one_minus = -torch.expm1(-2 * h)  # 1 - e^{-2h}
    mean = (grid.sigmas[i] / grid.sigmas[i - 1]) * torch.exp(-h) * x + grid.alphas[
        i
    ] * one_minus * x0
    return mean + grid.sigmas[i] * torch.sqrt(one_minus) * noise


def diffusion_integral(grid: Grid, i: int) -> float:
    """The integral of g(t)^2 over step i in reverse time: 2 int sigma^2 dlambda, because
    g^2 = d sigma^2/dt - 2 (d log alpha/dt) sigma^2 = -2 sigma^2 dlambda/dt for every schedule.

    Composite Gauss-Legendre in lambda, panels at most _GL_PANEL wide: sigma(lambda)^2 has
    complex poles pi/2 off the real axis (VP), so one 8-node rule over a few-step interval
    (|h| ~ 2-4) is only good to ~1e-5; panels of 0.25 are at round-off.
    """
    lo, hi = float(grid.lambdas[i - 1]), float(grid.lambdas[i])
    panels = max(1, math.ceil(abs(hi - lo) / _GL_PANEL))
    edges = torch.linspace(lo, hi, panels + 1, dtype=DTYPE)
    half, mid = 0.5 * (edges[1:] - edges[:-1]), 0.5 * (edges[1:] + edges[:-1])
    lambdas = mid[:, None] + half[:, None] * torch.as_tensor(_GL_NODES, dtype=DTYPE)
    sigmas = grid.schedule.sigma(grid.schedule.t_of_lambda(lambdas))
    weights = half[:, None] * torch.as_tensor(_GL_WEIGHTS, dtype=DTYPE)
    return float((weights * 2 * sigmas**2).sum())


def effective_sample_size(log_weights: torch.Tensor) -> float:
    """(sum W)^2 / sum W^2 as a fraction of N: 1 for equal weights, 1/N for one particle."""
    normalized = torch.softmax(log_weights, 0)
    return float(1.0 / (normalized**2).sum() / len(log_weights))


def systematic_resample(log_weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Indices of N particles by systematic resampling: one uniform offset, N evenly spaced
    positions through the weights' CDF (lower variance than multinomial)."""
    n = len(log_weights)
    cumulative = torch.cumsum(torch.softmax(log_weights, 0), 0)
    cumulative[-1] = 1.0  # round-off must not leave the last position beyond the CDF
    offset = torch.rand((), generator=generator, dtype=DTYPE)
    positions = (offset + torch.arange(n, dtype=DTYPE)) / n
    return torch.searchsorted(cumulative, positions).clamp_max(n - 1)


def _particle_grid(model: DiffusionModel, steps, grid, t_start, t_end) -> Grid:
    return Grid.of(model.schedule, make_grid(model.schedule, grid, steps, t_start, t_end))


def _check_particles(x_T: torch.Tensor) -> torch.Tensor:
    x_T = check_x_T(x_T)
    if x_T.ndim != 2 or x_T.shape[0] < 2:
        raise ValueError(
            f"x_T must have shape (N, D) with N >= 2 particles, got {tuple(x_T.shape)}"
        )
    return x_T.to(DTYPE)


# ------------------------------------------------------------------ plain reverse SDE
def sde_sample(
    model: DiffusionModel,
    x_T: torch.Tensor,
    *,
    steps: int,
    grid="logsnr",
    t_start: float | None = None,
    t_end: float | None = None,
    seed: int = 0,
) -> ParticleResult:
    """The reverse SDE with `model` and no weights: what SMC and SVDD start from. Its noise
    stream is the one `fk_smc` draws while it does not resample (the same seed, the same
    draws), so at w = 0 or 1 the two agree to round-off."""
    x = _check_particles(x_T)
    levels = _particle_grid(model, steps, grid, t_start, t_end)
    ev = Evaluator(model, model.schedule)
    ev.know_grid(levels)
    generator = torch.Generator().manual_seed(int(seed))
    for i in range(1, levels.steps + 1):
        noise = torch.randn(x.shape, generator=generator, dtype=DTYPE)
        x = sde_step(levels, i, x, ev.data(x, levels.ts[i - 1]), noise)
    return ParticleResult(x=x, nfe=ev.nfe, ts=levels.ts, solver="sde", order=1)


# ------------------------------------------------------------------ Feynman-Kac corrector SMC
def fk_smc(
    model_c: DiffusionModel,
    model_u: DiffusionModel,
    x_T: torch.Tensor,
    *,
    scale: float,
    steps: int,
    grid="logsnr",
    t_start: float | None = None,
    t_end: float | None = None,
    ess_threshold: float = 0.5,
    seed: int = 0,
    trajectory: bool = False,
) -> ParticleResult:
    """Particles of the CFG reverse SDE at `scale`, reweighted by the Feynman-Kac corrector so
    that they target q(x | c)^w q(x)^(1-w) at every time (see the module docstring).

    Resamples (systematic) whenever the ESS fraction drops below `ess_threshold` (0 never, 1
    always). NFE counts guided evaluations (conditional and unconditional together, as CFG):
    steps + 1, the last one at t_end for the final weights.
    """
    if model_c.schedule.name != model_u.schedule.name:
        raise ValueError("the conditional and unconditional models must share a schedule")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale}")
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be in [0, 1], got {ess_threshold}")
    x = _check_particles(x_T)
    levels = _particle_grid(model_c, steps, grid, t_start, t_end)
    ev_c, ev_u = Evaluator(model_c, model_c.schedule), Evaluator(model_u, model_u.schedule)
    ev_c.know_grid(levels)
    ev_u.know_grid(levels)
    generator = torch.Generator().manual_seed(int(seed))

    def evaluate(x, i):
        """(x0_c, x0_u, ||s_c - s_u||^2) at x and t_i."""
        x0_c, x0_u = ev_c.data(x, levels.ts[i]), ev_u.data(x, levels.ts[i])
        gap = levels.alphas[i] * (x0_c - x0_u) / levels.sigmas[i] ** 2
        return x0_c, x0_u, (gap**2).sum(1)

    log_weights = torch.zeros(len(x), dtype=DTYPE)
    ess, resampled, path = [], [], [x.clone()] if trajectory else None
    x0_c, x0_u, gap = evaluate(x, 0)
    for i in range(1, levels.steps + 1):
        noise = torch.randn(x.shape, generator=generator, dtype=DTYPE)
        x = sde_step(levels, i, x, x0_u + scale * (x0_c - x0_u), noise)
        x0_c, x0_u, gap_next = evaluate(x, i)  # the next step's model call, reused
        rate = 0.5 * scale * (scale - 1) * diffusion_integral(levels, i)
        log_weights = log_weights + rate * 0.5 * (gap + gap_next)  # trapezoid along the path
        gap = gap_next
        ess.append(effective_sample_size(log_weights))
        resampled.append(ess[-1] < ess_threshold)
        if resampled[-1]:
            index = systematic_resample(log_weights, generator)
            x, x0_c, x0_u, gap = x[index], x0_c[index], x0_u[index], gap[index]
            log_weights = torch.zeros_like(log_weights)
        if trajectory:
            path.append(x.clone())
    final = x[systematic_resample(log_weights, generator)]
    return ParticleResult(
        x=final,
        nfe=ev_c.nfe,
        ts=levels.ts,
        solver="fk_smc",
        order=1,
        trajectory=path,
        ess=torch.tensor(ess, dtype=DTYPE),
        resampled=torch.tensor(resampled),
        log_weights=log_weights,
    )


# ------------------------------------------------------------------ SVDD
def svdd(
    model: DiffusionModel,
    x_T: torch.Tensor,
    *,
    reward: Callable[[torch.Tensor], torch.Tensor],
    candidates: int,
    steps: int,
    grid="logsnr",
    t_start: float | None = None,
    t_end: float | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    trajectory: bool = False,
) -> ParticleResult:
    """Soft value-based decoding: M = `candidates` draws of each stochastic step, keep the best.

    The value of a candidate x_t is reward(x0_hat(x_t)); at the last step, reward(x) of the
    sample itself. `reward` maps (N, D) points to (N,) values and need not be differentiable.
    M = 1 is plain SDE sampling. NFE counts model evaluations per particle: 1 + M (steps - 1).
    """
    if int(candidates) != candidates or candidates < 1:
        raise ValueError(f"candidates must be an integer >= 1, got {candidates!r}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    x = _check_particles(x_T)
    levels = _particle_grid(model, steps, grid, t_start, t_end)
    ev = Evaluator(model, model.schedule)
    ev.know_grid(levels)
    generator = torch.Generator().manual_seed(int(seed))
    n, m = x.shape[0], int(candidates)
    x0 = ev.data(x, levels.ts[0])
    nfe, chosen, path = 1, [], [x.clone()] if trajectory else None
    for i in range(1, levels.steps + 1):
        noise = torch.randn((m, *x.shape), generator=generator, dtype=DTYPE)
        proposals = sde_step(levels, i, x, x0, noise)  # (M, N, D)
        flat = proposals.reshape(m * n, -1)
        last = i == levels.steps
        estimates = flat if last else ev.data(flat, levels.ts[i])
        nfe += 0 if last else m
        values = torch.as_tensor(reward(estimates), dtype=DTYPE).reshape(m, n)
        pick = _pick(values, temperature, generator)
        rows = torch.arange(n)
        x = proposals[pick, rows]
        x0 = estimates.reshape(m, n, -1)[pick, rows]
        chosen.append(pick)
        if trajectory:
            path.append(x.clone())
    return ParticleResult(
        x=x,
        nfe=nfe,
        ts=levels.ts,
        solver="svdd",
        order=1,
        trajectory=path,
        chosen=torch.stack(chosen),
    )


def _pick(values: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """(N,) candidate index per particle: argmax (first on ties; candidates are exchangeable)
    or a draw with probabilities softmax(values / temperature) along the candidates."""
    if temperature == 0:
        return values.argmax(0)
    probabilities = torch.softmax(values / temperature, 0).T
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
