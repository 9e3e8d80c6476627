"""Fields of a 2-D mixture on a plotting grid, computed exactly: what the explorers draw."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from workbench.memo import memoized
from workbench.toy.mixture import DTYPE, GaussianMixture


def evaluation_grid(
    bounds: tuple[float, float, float, float], n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(xs, ys, points): n x n grid over (x_min, x_max, y_min, y_max); points is (n*n, 2)."""
    x_min, x_max, y_min, y_max = bounds
    xs = torch.linspace(x_min, x_max, n, dtype=DTYPE)
    ys = torch.linspace(y_min, y_max, n, dtype=DTYPE)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    return xs, ys, torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)


def plot_bounds(
    mixture: GaussianMixture, margin: float = 4.0, at_least: float = 0.0
) -> tuple[float, float, float, float]:
    """A square window centred at 0 holding every mode to `margin` of its std.

    `at_least` widens it to [-at_least, at_least]^2: 3 keeps the standard normal that a
    variance-preserving process ends in, so one window serves every noise level.
    """
    reach = (mixture.means.abs() + margin * mixture.stds).max().item()
    half = max(reach, at_least)
    return (-half, half, -half, half)


def variance_preserving(sigma: float) -> tuple[float, float]:
    """(alpha, sigma) with alpha^2 + sigma^2 = 1, the DDPM / VP convention."""
    if not 0.0 <= sigma < 1.0:
        raise ValueError(f"a variance-preserving noise level sigma must be in [0, 1), got {sigma}")
    return math.sqrt(1.0 - sigma**2), sigma


@dataclass(frozen=True)
class NoisedSnapshot:
    """The noised marginal p_t of a 2-D mixture at one noise level, on a grid."""

    alpha: float
    sigma: float
    xs: torch.Tensor  # (n,) grid ticks
    ys: torch.Tensor  # (n,)
    log_density: torch.Tensor  # (n, n), rows follow ys
    samples: torch.Tensor  # (N, 2) exact samples of p_t
    arrow_points: torch.Tensor  # (m*m, 2) where the score field is drawn
    tweedie_steps: torch.Tensor  # (m*m, 2) sigma^2 * score = alpha E[x_0 | x_t] - x_t


@memoized("clean draws", maxsize=8)
def clean_draws(mixture: GaussianMixture, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed x_0 and eps, so one sample moves continuously as the noise level changes."""
    generator = torch.Generator().manual_seed(seed)
    x0 = mixture.sample(n, seed=generator)
    eps = torch.randn(n, mixture.dim, generator=generator, dtype=DTYPE)
    return x0, eps


def noised_snapshot(
    mixture: GaussianMixture,
    alpha: float,
    sigma: float,
    *,
    n_samples: int = 4000,
    seed: int = 0,
    grid_size: int = 120,
    arrow_grid_size: int = 21,
    bounds: tuple[float, float, float, float] | None = None,
) -> NoisedSnapshot:
    """Density, exact samples and score field of p_t on a grid.

    x_t = alpha x_0 + sigma eps; the samples reuse fixed x_0 and eps (see `clean_draws`).
    """
    if mixture.dim != 2:
        raise ValueError(f"snapshots are drawn in 2-D; this mixture has dimension {mixture.dim}")
    bounds = bounds or plot_bounds(mixture, at_least=3.0)
    xs, ys, points = evaluation_grid(bounds, grid_size)
    log_density = mixture.noised_log_prob(points, alpha, sigma).reshape(grid_size, grid_size)
    _, _, arrow_points = evaluation_grid(bounds, arrow_grid_size)
    steps = alpha * mixture.denoise(arrow_points, alpha, sigma) - arrow_points
    x0, eps = clean_draws(mixture, n_samples, seed)
    return NoisedSnapshot(
        alpha=alpha,
        sigma=sigma,
        xs=xs,
        ys=ys,
        log_density=log_density,
        samples=alpha * x0 + sigma * eps,
        arrow_points=arrow_points,
        tweedie_steps=steps,
    )
