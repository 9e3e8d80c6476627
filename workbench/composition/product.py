"""The product of two Gaussian mixtures, exactly, and the composition problem built on it.

Two diagonal Gaussians multiply into a scaled diagonal Gaussian (precisions add):

    N(x; m_i, S_i) N(x; m_j, S_j) = N(m_i; m_j, S_i + S_j) N(x; m_ij, S_ij),
    S_ij = (S_i^-1 + S_j^-1)^-1,   m_ij = S_ij (S_i^-1 m_i + S_j^-1 m_j),

so p(x) ∝ p1(x) p2(x) of a K1- and a K2-component mixture is a K1 K2-component mixture with
weights ∝ w_i w_j N(m_i; m_j, S_i + S_j) (computed in log space: pairs of far-apart modes have
weights of 1e-300 and less, which must underflow to 0 gracefully, not to NaN).

Sampling the product with two diffusion models means composing their noised scores. Summing
them (the "naive" model) drives the reverse ODE/SDE with grad log q1_t q2_t, the score of the
product of the noised marginals, which is not the noised marginal of the product: noising does
not commute with multiplication (at high noise q1_t q2_t -> N(0, sigma^2 / 2), not N(0,
sigma^2)). So the naive sampler is biased even with exact scores and infinitely many steps; the
exact model (the product mixture's own denoiser, not available in practice) is not.
`ProductProblem` holds both, plus the exact log-densities log q1_t + log q2_t that the
corrections (`workbench.composition.samplers`) need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch

from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.schedules import DTYPE, NoiseSchedule, VPSchedule
from workbench.registry import Registry
from workbench.toy.mixture import GaussianMixture


def product_mixture(first: GaussianMixture, second: GaussianMixture) -> GaussianMixture:
    """The normalized product p1 p2 / Z as a GaussianMixture with K1 K2 diagonal components.

    Component (i, j) is at index i K2 + j. Refuses non-mixtures and mismatched dimensions.
    Experts far apart still multiply to a proper mixture: the weights are normalized from
    their logarithms (softmax), so the best-overlapping pair keeps its mass even when every
    overlap N(m_i; m_j, S_i + S_j) underflows.
    """
    _check_mixture("first", first)
    _check_mixture("second", second)
    if first.dim != second.dim:
        raise ValueError(
            f"the two mixtures must have the same dimension, got {first.dim} and {second.dim}"
        )
    var_i, var_j = first.stds[:, None, :] ** 2, second.stds[None, :, :] ** 2  # (K1, K2, D)
    mean_i, mean_j = first.means[:, None, :], second.means[None, :, :]
    variances = 1.0 / (1.0 / var_i + 1.0 / var_j)
    means = variances * (mean_i / var_i + mean_j / var_j)
    overlap_var = var_i + var_j
    log_overlap = -0.5 * (
        (mean_i - mean_j) ** 2 / overlap_var + torch.log(2 * math.pi * overlap_var)
    ).sum(-1)
    log_weights = (
        torch.log(first.weights)[:, None] + torch.log(second.weights)[None, :] + log_overlap
    )
    weights = torch.softmax(log_weights.flatten(), 0)  # normalized without underflow to 0/0
    dim = first.dim
    return GaussianMixture(means.reshape(-1, dim), variances.reshape(-1, dim).sqrt(), weights)


def _check_mixture(name: str, value: object) -> None:
    if not isinstance(value, GaussianMixture):
        raise ValueError(f"{name} must be a GaussianMixture, got {type(value).__name__}")


# ------------------------------------------------------------------ the problem
@dataclass(eq=False)
class ProductProblem:
    """Two experts p1, p2 (GaussianMixtures) and a schedule: the exact product and both models.

    `naive` sums the experts' noised scores (data prediction x0_1 + x0_2 - x / alpha, since
    x0 = (x + sigma^2 score) / alpha for each); `exact` is the product mixture's own denoiser.
    """

    first: GaussianMixture
    second: GaussianMixture
    schedule: NoiseSchedule = field(default_factory=VPSchedule.linear_ddpm)
    name: str = "product"

    def __post_init__(self) -> None:
        self.product  # noqa: B018  (the checks of product_mixture, once, on construction)
        if not isinstance(self.schedule, NoiseSchedule):
            raise ValueError(
                f"schedule must be a NoiseSchedule, got {type(self.schedule).__name__}"
            )

    @property
    def dim(self) -> int:
        return self.first.dim

    def content_key(self):
        return ("ProductProblem", self.first, self.second, self.schedule)

    @cached_property
    def product(self) -> GaussianMixture:
        return product_mixture(self.first, self.second)

    @cached_property
    def exact(self) -> DiffusionModel:
        """The product mixture's exact denoiser: its ODE samples the product."""
        return self.product.denoiser(self.schedule)

    @cached_property
    def naive(self) -> DiffusionModel:
        """The summed noised scores s1_t + s2_t, as a data prediction."""
        first, second, schedule = self.first, self.second, self.schedule

        def fn(x, t):
            alpha, sigma = schedule.alpha(t), schedule.sigma(t)
            x0_first = first.denoise(x, alpha, sigma)
            x0_second = second.denoise(x, alpha, sigma)
            return x0_first + x0_second - x / alpha

        content = ("summed scores", self.first, self.second)
        return DiffusionModel(fn, "data", schedule, f"summed scores ({self.name})", content)

    def summed(self, x: torch.Tensor, alpha, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """(log q1_t(x) + log q2_t(x), s1_t(x) + s2_t(x)): the energy and score of the
        product of the noised experts, exactly (one evaluation of each expert)."""
        energy = self.first.noised_log_prob(x, alpha, sigma) + self.second.noised_log_prob(
            x, alpha, sigma
        )
        score = self.first.score(x, alpha, sigma) + self.second.score(x, alpha, sigma)
        return energy, score

    def end_level(self) -> tuple[float, float]:
        """(alpha, sigma) at the schedule's t_min, where every sampler stops."""
        t_end = torch.as_tensor(self.schedule.t_min, dtype=DTYPE)
        return float(self.schedule.alpha(t_end)), float(self.schedule.sigma(t_end))

    def reference(self, n: int, seed: int = 0) -> torch.Tensor:
        """n exact draws of the product noised to t_min (sigma = 0.01 on the DDPM schedule:
        what an exact sampler that stops at t_min returns; the clean product differs by a
        variance of sigma^2 = 1e-4, far below any distance measured here)."""
        alpha, sigma = self.end_level()
        return self.product.noised(alpha, sigma).sample(n, seed)


# ------------------------------------------------------------------ named problems
def _shifted(mixture: GaussianMixture, offset) -> GaussianMixture:
    offset = torch.as_tensor(offset, dtype=DTYPE)
    return GaussianMixture(mixture.means + offset, mixture.stds, mixture.weights, mixture.labels)


def two_rings() -> ProductProblem:
    """Two 8-mode rings (radius 2, std 0.2), the second shifted right by 1.5: the product keeps
    the modes near the two crossings of the circles, with weights set by each pair's overlap."""
    ring = GaussianMixture.ring(8, 2.0, 0.2)
    return ProductProblem(ring, _shifted(ring, [1.5, 0.0]), name="two rings")


def ring_and_half() -> ProductProblem:
    """An 8-mode ring times a broad two-mode expert on its right half: the product is the
    ring's right modes, reweighted by how much of the broad expert each sits in."""
    ring = GaussianMixture.ring(8, 2.0, 0.15)
    half = GaussianMixture([[2.0, 1.0], [2.0, -1.5]], [[0.8, 1.0], [0.6, 0.6]], [0.6, 0.4])
    return ProductProblem(ring, half, name="ring x right half")


def two_grids() -> ProductProblem:
    """Two 3x3 grids (spacing 2, std 0.3), the second shifted by (1, 0.5): modes meet in pairs
    a fraction of a spacing apart, so the product is a 3x3-ish grid of small, uneven modes."""
    grid = GaussianMixture.grid(3, 2.0, 0.3)
    return ProductProblem(grid, _shifted(grid, [1.0, 0.5]), name="two grids")


PROBLEMS: Registry = Registry("composition problem")
PROBLEMS.add("two_rings", two_rings, label="two rings, offset")
PROBLEMS.add("ring_and_half", ring_and_half, label="ring x broad right half")
PROBLEMS.add("two_grids", two_grids, label="two overlapping grids")


def get_problem(name: str) -> ProductProblem:
    """The named problem, built fresh (unknown names list the valid ones)."""
    return PROBLEMS[name]()
