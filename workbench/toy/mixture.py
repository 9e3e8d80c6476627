"""Gaussian mixtures: the exact ground truth for diffusion and guidance.

For data x_0 ~ sum_k w_k N(mu_k, diag(s_k^2)) and a forward process x_t = alpha x_0 + sigma eps,
the noised marginal is again a mixture, sum_k w_k N(alpha mu_k, diag(alpha^2 s_k^2 + sigma^2)).
Everything a diffusion model is trained to approximate follows in closed form from it:
the score, the denoiser E[x_0 | x_t] (Tweedie), the noise prediction and the class posterior.
All arithmetic is float64 torch, so it is differentiable and can drive torch-based solvers.

`alpha` and `sigma` are Python floats, 0-d tensors, or tensors of shape (N,) giving one noise
level per point: finite, alpha >= 0, sigma >= 0 and not both zero (alpha = 1, sigma = 0 is the
clean data); anything else is refused. The pointwise methods take `x` of shape (N, D) (or (D,)
for one point); x itself is not checked (NaN in, NaN out: a diverging solve's NaN must reach
the solver's own check, which reports the divergence).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from workbench import _torch  # noqa: F401  (single-threaded torch; see the module)

DTYPE = torch.float64
ArrayLike = torch.Tensor | np.ndarray | Sequence[float] | float


def _as_tensor(value: ArrayLike) -> torch.Tensor:
    # dtype is given up front: converting a Python float via float32 would lose 1e-8.
    if isinstance(value, Sequence):
        value = np.asarray(value, dtype=np.float64)
    return torch.as_tensor(value, dtype=DTYPE)


class GaussianMixture:
    """A mixture of Gaussians with per-component isotropic or diagonal covariance.

    Args:
        means: (K, D) component means.
        stds: a scalar (shared isotropic std), (K,) per-component isotropic stds, or (K, D)
            per-component diagonal stds. All must be positive.
        weights: (K,) non-negative mixture weights, normalized here; uniform if omitted.
        labels: (K,) integer class label per component, for class-conditional problems;
            without labels every component is its own class.
    """

    def __init__(
        self,
        means: ArrayLike,
        stds: ArrayLike,
        weights: ArrayLike | None = None,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ):
        means = _as_tensor(means)
        if means.ndim != 2 or means.shape[0] == 0:
            raise ValueError(f"means must have shape (K, D) with K >= 1, got {tuple(means.shape)}")
        n_components, dim = means.shape
        _check_finite("means", means)
        stds = _as_tensor(stds)
        if stds.ndim == 0:
            stds = stds.expand(n_components, dim)
        elif stds.ndim == 1 and stds.shape[0] == n_components:
            stds = stds[:, None].expand(n_components, dim)
        elif stds.shape != (n_components, dim):
            raise ValueError(
                f"stds must be a scalar, shape ({n_components},) or ({n_components}, {dim}); "
                f"got {tuple(stds.shape)}"
            )
        _check_where("stds", stds, torch.isfinite(stds) & (stds > 0), "positive and finite")
        if weights is None:
            weights = torch.full((n_components,), 1.0 / n_components, dtype=DTYPE)
        weights = _as_tensor(weights)
        if weights.shape != (n_components,):
            raise ValueError(
                f"weights must have shape ({n_components},), got {tuple(weights.shape)}"
            )
        _check_where(
            "weights", weights, torch.isfinite(weights) & (weights >= 0), "non-negative and finite"
        )
        if not weights.sum() > 0:
            raise ValueError("weights must not all be zero (they are normalized to sum to 1)")
        if labels is None:
            labels = torch.arange(n_components)
        raw = np.asarray(labels)
        if raw.size and not (
            np.issubdtype(raw.dtype, np.integer)
            or (np.issubdtype(raw.dtype, np.floating) and np.all(np.mod(raw, 1) == 0))
        ):
            raise ValueError(f"labels must be integers, got {raw.tolist()}")
        labels = torch.as_tensor(raw).to(torch.long)
        if labels.shape != (n_components,):
            raise ValueError(f"labels must have shape ({n_components},), got {tuple(labels.shape)}")

        self.means = means.clone()
        self.stds = stds.clone().contiguous()
        self.weights = weights / weights.sum()
        self.labels = labels.clone()
        self.classes = torch.unique(self.labels)

    # ---------------------------------------------------------------- basic facts
    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(n_components={self.n_components}, dim={self.dim}, "
            f"classes={self.classes.tolist()})"
        )

    def mean(self) -> torch.Tensor:
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """Exact covariance: E[Cov | k] + Cov[E | k]."""
        centered = self.means - self.mean()
        within = torch.diag(self.weights @ self.stds**2)
        between = (self.weights[:, None] * centered).T @ centered
        return within + between

    def content_key(self):
        """What defines the mixture (it keys workbench.memo entries of the models built on it)."""
        return ("GaussianMixture", self.means, self.stds, self.weights, self.labels)

    def condition(self, label: int) -> GaussianMixture:
        """The mixture p(x | c = label): the components with that label, renormalized."""
        mask = self.labels == int(label)
        if not mask.any():
            raise ValueError(f"unknown label {label!r}; classes are {self.classes.tolist()}")
        return GaussianMixture(
            self.means[mask], self.stds[mask], self.weights[mask], self.labels[mask]
        )

    def noised(self, alpha: float, sigma: float) -> GaussianMixture:
        """The marginal of alpha x_0 + sigma eps as a mixture (scalar alpha and sigma > 0)."""
        alpha, sigma = float(alpha), float(sigma)
        _check_levels(_as_tensor(alpha), _as_tensor(sigma))
        stds = torch.sqrt(alpha**2 * self.stds**2 + sigma**2)
        return GaussianMixture(alpha * self.means, stds, self.weights, self.labels)

    # ---------------------------------------------------------------- sampling
    def sample(
        self,
        n: int,
        seed: int | torch.Generator = 0,
        label: int | None = None,
        return_components: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw n samples (float64); with `label`, from p(x | c = label)."""
        if label is not None:
            mixture = self.condition(label)
            draws = mixture.sample(n, seed, return_components=return_components)
            if not return_components:
                return draws
            x, local = draws
            return x, torch.nonzero(self.labels == int(label)).flatten()[local]
        if isinstance(n, bool) or not (isinstance(n, numbers.Integral) or float(n).is_integer()):
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if int(n) < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        generator = seed if isinstance(seed, torch.Generator) else _generator(seed)
        components = torch.multinomial(self.weights, int(n), replacement=True, generator=generator)
        noise = torch.randn(int(n), self.dim, generator=generator, dtype=DTYPE)
        x = self.means[components] + self.stds[components] * noise
        return (x, components) if return_components else x

    # ---------------------------------------------------------------- densities
    def log_prob(self, x: ArrayLike) -> torch.Tensor:
        """log p(x_0) of the clean data."""
        return self.noised_log_prob(x, 1.0, 0.0)

    def component_log_probs(self, x: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> torch.Tensor:
        """(N, K): log w_k + log N(x; alpha mu_k, alpha^2 s_k^2 + sigma^2)."""
        return self._component_log_probs(*self._prepare(x, alpha, sigma))

    def _component_log_probs(
        self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        variances = alpha**2 * self.stds**2 + sigma**2  # (N or 1, K, D)
        diff = x[:, None, :] - alpha * self.means  # (N, K, D)
        log_normal = -0.5 * (diff**2 / variances + torch.log(2 * math.pi * variances)).sum(-1)
        return torch.log(self.weights) + log_normal

    def noised_log_prob(self, x: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> torch.Tensor:
        """log p_t(x_t) for x_t = alpha x_0 + sigma eps."""
        squeeze = _is_single_point(x)
        out = torch.logsumexp(self.component_log_probs(x, alpha, sigma), dim=-1)
        return out[0] if squeeze else out

    def responsibilities(self, x: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> torch.Tensor:
        """(N, K): p(component k | x_t)."""
        return torch.softmax(self.component_log_probs(x, alpha, sigma), dim=-1)

    def _responsibilities(
        self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        return torch.softmax(self._component_log_probs(x, alpha, sigma), dim=-1)

    def score(self, x: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> torch.Tensor:
        """grad_x log p_t(x_t), exactly: sum_k r_k (alpha mu_k - x) / v_k."""
        squeeze = _is_single_point(x)
        x, alpha, sigma = self._prepare(x, alpha, sigma)
        resp = self._responsibilities(x, alpha, sigma)
        variances = alpha**2 * self.stds**2 + sigma**2
        per_component = (alpha * self.means - x[:, None, :]) / variances
        out = (resp[..., None] * per_component).sum(1)
        return out[0] if squeeze else out

    def denoise(self, x: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> torch.Tensor:
        """E[x_0 | x_t]: each component's Gaussian posterior mean, weighted by responsibility.

        Computed per component rather than from Tweedie's (x + sigma^2 score) / alpha so that it
        stays exact and finite at alpha -> 0 (pure noise), where it tends to the data mean.
        """
        squeeze = _is_single_point(x)
        x, alpha, sigma = self._prepare(x, alpha, sigma)
        resp = self._responsibilities(x, alpha, sigma)
        prior_var = self.stds**2
        gain = alpha * prior_var / (alpha**2 * prior_var + sigma**2)  # (., K, D)
        posterior_means = self.means + gain * (x[:, None, :] - alpha * self.means)
        out = (resp[..., None] * posterior_means).sum(1)
        return out[0] if squeeze else out

    def noise_prediction(self, x: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> torch.Tensor:
        """E[eps | x_t] = -sigma * score (requires sigma > 0)."""
        sigma_t = _as_tensor(sigma)
        if torch.any(sigma_t <= 0):
            raise ValueError("the noise prediction is undefined at sigma = 0")
        squeeze = _is_single_point(x)
        score = self.score(x, alpha, sigma)
        if squeeze:
            return -sigma_t * score
        return -sigma_t.reshape(-1, 1) * score

    def class_posterior(self, x: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> torch.Tensor:
        """(N, C): p(c | x_t) for the classes in `self.classes` (in that order)."""
        squeeze = _is_single_point(x)
        resp = self.responsibilities(x, alpha, sigma)
        one_hot = (self.labels[:, None] == self.classes[None, :]).to(DTYPE)  # (K, C)
        out = resp @ one_hot
        return out[0] if squeeze else out

    # ---------------------------------------------------------------- as a diffusion model
    def denoiser(self, schedule, label: int | None = None):
        """The exact model: x_t, t -> E[x_0 | x_t] under `schedule` (of p(x | label) if given).

        Returns a `workbench.diffusion.DiffusionModel` with prediction "data".
        """
        from workbench.diffusion.models import DiffusionModel

        mixture = self if label is None else self.condition(label)

        def denoise(x, t):
            return mixture.denoise(x, schedule.alpha(t), schedule.sigma(t))

        name = "exact mixture denoiser" + ("" if label is None else f" (label {label})")
        return DiffusionModel(denoise, "data", schedule, name, ("mixture denoiser", mixture))

    # ---------------------------------------------------------------- internals
    def _prepare(
        self, x: ArrayLike, alpha: ArrayLike, sigma: ArrayLike
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x -> (N, D); alpha, sigma -> broadcastable against (N, K, D)."""
        x = _as_tensor(x)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")
        alpha = self._noise_level(alpha, x.shape[0], "alpha")
        sigma = self._noise_level(sigma, x.shape[0], "sigma")
        _check_levels(alpha, sigma)
        return x, alpha, sigma

    @staticmethod
    def _noise_level(value: ArrayLike, n: int, name: str) -> torch.Tensor:
        value = _as_tensor(value)
        if value.ndim == 0:
            return value.reshape(1, 1, 1)
        if value.ndim == 1 and value.shape[0] == n:
            return value.reshape(n, 1, 1)
        if value.shape == (n, 1):
            return value.reshape(n, 1, 1)
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {tuple(value.shape)}")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def ring(cls, n_modes: int = 8, radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
        """Equal-weight modes evenly spaced on a circle (the classic 8-Gaussians toy)."""
        angles = 2 * math.pi * torch.arange(n_modes, dtype=DTYPE) / n_modes
        means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        return cls(means, std)

    @classmethod
    def grid(cls, n_per_side: int = 3, spacing: float = 2.0, std: float = 0.1) -> GaussianMixture:
        """Equal-weight modes on an n x n square grid centred at the origin."""
        ticks = spacing * (torch.arange(n_per_side, dtype=DTYPE) - (n_per_side - 1) / 2)
        xs, ys = torch.meshgrid(ticks, ticks, indexing="xy")
        return cls(torch.stack([xs.flatten(), ys.flatten()], dim=1), std)

    @classmethod
    def unequal(cls) -> GaussianMixture:
        """Five modes with widths from 0.04 to 0.5 and weights from 0.05 to 0.4.

        A sharp, light mode next to broad, heavy ones is where samplers go wrong: the score is
        steep near the sharp mode at small noise, and few-step solvers lose its mass.
        """
        means = [[-1.6, 0.4], [-0.4, 1.5], [1.2, 1.0], [1.4, -1.2], [-0.5, -1.1]]
        stds = [0.04, 0.5, 0.12, 0.25, 0.08]
        weights = [0.05, 0.4, 0.15, 0.3, 0.1]
        return cls(means, stds, weights)

    @classmethod
    def two_class(cls, separation: float = 2.0, std: float = 0.5) -> GaussianMixture:
        """Two overlapping classes of two modes each, with unequal widths and weights.

        Class 0 sits left of the origin and class 1 right; their inner modes overlap, so the
        class posterior p(c | x_t) is far from 0/1 in the middle and guidance has work to do.
        """
        half = separation / 2
        means = [[-half, 0.8], [-half * 0.4, -0.6], [half * 0.4, 0.6], [half, -0.8]]
        stds = [std, 0.6 * std, 0.6 * std, std]
        weights = [0.3, 0.2, 0.15, 0.35]
        return cls(means, stds, weights, labels=[0, 0, 1, 1])


def _check_finite(name: str, values: torch.Tensor) -> None:
    _check_where(name, values, torch.isfinite(values), "finite")


def _check_where(name: str, values: torch.Tensor, ok: torch.Tensor, allowed: str) -> None:
    """Refuse `values` unless `ok` everywhere, naming the first bad entry."""
    if not bool(ok.all()):
        index = tuple(int(i) for i in torch.nonzero(~ok)[0])
        raise ValueError(
            f"{name} must be {allowed}; got {name}{list(index)} = {float(values[index])}"
        )


def _check_levels(alpha: torch.Tensor, sigma: torch.Tensor) -> None:
    """Noise levels: finite, alpha >= 0, sigma >= 0, not both zero (one pass on entry)."""
    ok = (alpha >= 0) & (sigma >= 0) & ((alpha > 0) | (sigma > 0))  # False for NaN
    ok = ok & torch.isfinite(alpha) & torch.isfinite(sigma)
    if not bool(ok.all()):
        a, s = torch.broadcast_tensors(alpha, sigma)
        index = tuple(int(i) for i in torch.nonzero(~ok.expand(a.shape))[0])
        raise ValueError(
            "alpha and sigma must be finite with alpha >= 0, sigma >= 0 and not both 0; "
            f"got alpha={float(a[index]):g}, sigma={float(s[index]):g}"
        )


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _is_single_point(x: ArrayLike) -> bool:
    return getattr(x, "ndim", np.ndim(x)) == 1
