"""The tilted targets guidance is meant to sample, exactly: p_w(x) ∝ p_a(x)^w p_b(x)^(1-w).

Classifier-free guidance at scale w mixes the conditional and unconditional scores as
w grad log p(x | c) + (1 - w) grad log p(x): that is the score of the geometric mixture
p(x | c)^w p(x)^(1-w) ∝ p(x) p(c | x)^w ("sharpened" class posterior). Autoguidance does the
same with a good and a bad model of one class. For Gaussian mixtures both densities are exact,
so the tilted target is known up to its normalizer, which is computed numerically.

Samples are exact, by rejection: p_w = p_a (p_a / p_b)^(w-1) for w >= 1 and p_b (p_a / p_b)^w
for 0 <= w <= 1, and p_a / p_b is bounded by a constant B known in closed form (for guidance
p(x | c) / p(x) = p(c | x) / pi_c <= 1 / pi_c; for an inflated-variance copy, the ratio of each
component pair is at most the product of std ratios). So proposing from p_a (or p_b) and
accepting with probability (p_a / (B p_b))^(w-1) (or ^w) gives draws from p_w itself, not an
approximation: no grid, no weights. The acceptance rate is printed by `acceptance_rate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from workbench.toy.fields import evaluation_grid
from workbench.toy.mixture import DTYPE, GaussianMixture

# Rejection sampling draws proposals in batches of this many times the request (at least).
_MIN_BATCH = 4096
_MAX_ROUNDS = 1000


def inflated(mixture: GaussianMixture, factor: float) -> GaussianMixture:
    """The same mixture with every component std multiplied by `factor` (variance by factor^2):
    autoguidance's 'bad version' of a model, which is too broad everywhere."""
    if not factor >= 1.0 or not math.isfinite(factor):
        raise ValueError(f"the inflation factor must be a finite number >= 1, got {factor}")
    return GaussianMixture(mixture.means, mixture.stds * factor, mixture.weights, mixture.labels)


@dataclass(frozen=True)
class TiltedTarget:
    """p_w ∝ numerator^w denominator^(1-w) for a scale w >= 0.

    `log_ratio_bound` is log B with numerator / denominator <= B everywhere (the constructors
    compute it); it makes the rejection sampler exact.
    """

    numerator: GaussianMixture
    denominator: GaussianMixture
    scale: float
    log_ratio_bound: float
    kind: str = "guidance"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise ValueError(f"the scale w must be a finite number >= 0, got {self.scale}")
        if self.numerator.dim != self.denominator.dim:
            raise ValueError("numerator and denominator must have the same dimension")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def guidance(cls, mixture: GaussianMixture, label: int, scale: float) -> TiltedTarget:
        """p(x | c)^w p(x)^(1-w): what classifier(-free) guidance at scale w aims at."""
        conditional = mixture.condition(label)
        prior = float(mixture.weights[mixture.labels == int(label)].sum())
        return cls(conditional, mixture, float(scale), -math.log(prior), "guidance")

    @classmethod
    def autoguidance(
        cls, mixture: GaussianMixture, label: int, scale: float, factor: float
    ) -> TiltedTarget:
        """p_good(x | c)^w p_bad(x | c)^(1-w) with the bad model `inflated(good, factor)`."""
        good = mixture.condition(label)
        return cls(
            good, inflated(good, factor), float(scale), _paired_bound(good, factor), "autoguidance"
        )

    def noised(self, alpha: float, sigma: float) -> TiltedTarget:
        """The same tilt of the noised densities p_t: the intermediate targets that a
        Feynman-Kac corrector tracks along the trajectory (not the noised p_w)."""
        numerator = self.numerator.noised(alpha, sigma)
        denominator = self.denominator.noised(alpha, sigma)
        if self.kind == "guidance":
            bound = self.log_ratio_bound  # p_t(x | c) / p_t(x) = p_t(c | x) / pi_c still
        else:
            bound = _log_pair_ratio_bound(numerator, denominator)
        return TiltedTarget(numerator, denominator, self.scale, bound, self.kind)

    # ---------------------------------------------------------------- densities
    def log_unnormalized(self, x: torch.Tensor) -> torch.Tensor:
        """w log p_a(x) + (1 - w) log p_b(x)."""
        w = self.scale
        return w * self.numerator.log_prob(x) + (1 - w) * self.denominator.log_prob(x)

    def log_normalizer(self, bounds: tuple[float, float, float, float], n: int = 400) -> float:
        """log of the integral of the unnormalized density over `bounds`, by the midpoint rule
        on an n x n grid (2-D only). The window must hold the mass: the test checks it
        against the Monte Carlo estimate `log_normalizer_monte_carlo`."""
        if self.numerator.dim != 2:
            raise ValueError("the grid normalizer is for 2-D targets")
        x_min, x_max, y_min, y_max = bounds
        dx, dy = (x_max - x_min) / n, (y_max - y_min) / n
        centres = (x_min + dx / 2, x_max - dx / 2, y_min + dy / 2, y_max - dy / 2)
        _, _, points = evaluation_grid(centres, n)
        return float(torch.logsumexp(self.log_unnormalized(points), 0)) + math.log(dx * dy)

    def log_normalizer_monte_carlo(self, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
        """(log Z, its standard error) from E_proposal[(p_a / p_b)^power] (no grid)."""
        proposal, power = self._proposal()
        x = proposal.sample(n, seed=seed)
        values = torch.exp(power * self._log_ratio(x))
        mean = float(values.mean())
        return math.log(mean), float(values.std() / math.sqrt(n)) / mean

    def density_grid(
        self,
        bounds: tuple[float, float, float, float],
        n: int = 150,
        *,
        normalizer_bounds: tuple[float, float, float, float] | None = None,
        normalizer_n: int = 400,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(xs, ys, log p_w) on an n x n grid over `bounds`, rows following ys, normalized
        numerically over `normalizer_bounds` (default: `bounds`)."""
        xs, ys, points = evaluation_grid(bounds, n)
        log_z = self.log_normalizer(normalizer_bounds or bounds, normalizer_n)
        return xs, ys, (self.log_unnormalized(points) - log_z).reshape(n, n)

    # ---------------------------------------------------------------- exact samples
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n exact draws by rejection from the bounded density ratio (see the module)."""
        if int(n) < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        proposal, power = self._proposal()
        generator = torch.Generator().manual_seed(int(seed))
        kept, count = [], 0
        for _ in range(_MAX_ROUNDS):
            batch = max(_MIN_BATCH, 4 * (n - count))
            x = proposal.sample(batch, seed=generator)
            log_accept = power * (self._log_ratio(x) - self.log_ratio_bound)
            u = torch.rand(batch, generator=generator, dtype=DTYPE)
            accepted = x[torch.log(u) < log_accept]
            kept.append(accepted)
            count += len(accepted)
            if count >= n:
                return torch.cat(kept)[: int(n)]
        raise RuntimeError(
            f"rejection sampling accepted only {count} of {_MAX_ROUNDS} batches' proposals; "
            f"the acceptance rate at w={self.scale} is {self.acceptance_rate():.2e}"
        )

    def acceptance_rate(self, n: int = 100_000, seed: int = 0) -> float:
        """The rejection sampler's acceptance probability, E_proposal[(ratio / B)^power]."""
        proposal, power = self._proposal()
        x = proposal.sample(n, seed=seed)
        return float(torch.exp(power * (self._log_ratio(x) - self.log_ratio_bound)).mean())

    def _proposal(self) -> tuple[GaussianMixture, float]:
        if self.scale >= 1:
            return self.numerator, self.scale - 1
        return self.denominator, self.scale

    def _log_ratio(self, x: torch.Tensor) -> torch.Tensor:
        return self.numerator.log_prob(x) - self.denominator.log_prob(x)


def _paired_bound(good: GaussianMixture, factor: float) -> float:
    return _log_pair_ratio_bound(good, inflated(good, factor))


def _log_pair_ratio_bound(numerator: GaussianMixture, denominator: GaussianMixture) -> float:
    """log sup p_a / p_b for mixtures with the same means and weights, component stds of p_b
    at least those of p_a: each pair's ratio peaks at the mean, at prod(s_b / s_a)."""
    same = torch.equal(numerator.means, denominator.means) and torch.allclose(
        numerator.weights, denominator.weights, rtol=0, atol=1e-15
    )
    if not same or bool((denominator.stds < numerator.stds).any()):
        raise ValueError("a paired bound needs equal means and weights and broader denominators")
    per_component = torch.log(denominator.stds / numerator.stds).sum(1)
    return float(per_component.max())
