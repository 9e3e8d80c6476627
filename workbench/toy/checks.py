"""Independent checks of the mixture's closed forms: autograd and Monte Carlo.

The notebooks print these as evidence that the ground truth is what it claims to be.
"""

from __future__ import annotations

import pandas
import torch

from workbench.toy.fields import evaluation_grid, plot_bounds
from workbench.toy.mixture import DTYPE, GaussianMixture


def autograd_score_error(
    mixture: GaussianMixture, x: torch.Tensor, alpha: float, sigma: float
) -> float:
    """Max |closed-form score - autograd gradient of the closed-form log-density|."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.noised_log_prob(x, alpha, sigma).sum(), x)
    return (mixture.score(x.detach(), alpha, sigma) - grad).abs().max().item()


def monte_carlo_posterior_mean(
    mixture: GaussianMixture,
    x_t: torch.Tensor,
    alpha: float,
    sigma: float,
    n: int,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """E[x_0 | x_t] by self-normalized importance sampling with n prior draws.

    Returns (estimate, standard error), both (P, D); the error is the delta-method one.
    """
    if sigma <= 0:
        raise ValueError("the Monte Carlo posterior needs sigma > 0")
    x0 = mixture.sample(n, seed=seed)
    estimates, errors = [], []
    for point in x_t.to(DTYPE):
        weights = torch.softmax(-((point - alpha * x0) ** 2).sum(1) / (2 * sigma**2), 0)
        estimate = weights @ x0
        estimates.append(estimate)
        errors.append(torch.sqrt((weights[:, None] ** 2 * (x0 - estimate) ** 2).sum(0)))
    return torch.stack(estimates), torch.stack(errors)


def grid_mass(
    mixture: GaussianMixture,
    alpha: float,
    sigma: float,
    bounds: tuple[float, float, float, float],
    n: int = 801,
) -> float:
    """Integral of p_t over a 2-D window (a Riemann sum on the grid's nodes).

    It is 1 when the window holds the mass and the grid resolves the narrowest mode.
    """
    xs, ys, points = evaluation_grid(bounds, n)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    return (mixture.noised_log_prob(points, alpha, sigma).exp().sum() * cell).item()


def closed_form_report(
    mixtures: dict[str, GaussianMixture],
    alpha: float,
    sigma: float,
    *,
    n_monte_carlo: int,
    seed: int = 0,
    n_points: int = 64,
) -> pandas.DataFrame:
    """The three checks for each 2-D mixture at one noise level, one row per mixture (indexed
    by the mixtures' keys).

    Score against autograd on `n_points` noised samples; denoiser against Monte Carlo on the
    first 8 (as the largest |error| / standard error); mass of p_t on a window wide enough for
    the noised mixture.
    """
    rows = []
    for name, mixture in mixtures.items():
        generator = torch.Generator().manual_seed(seed + 1)
        noise = torch.randn(n_points, mixture.dim, generator=generator, dtype=DTYPE)
        x_t = alpha * mixture.sample(n_points, seed=seed) + sigma * noise
        estimate, stderr = monte_carlo_posterior_mean(
            mixture, x_t[:8], alpha, sigma, n_monte_carlo, seed=seed
        )
        z = ((estimate - mixture.denoise(x_t[:8], alpha, sigma)) / stderr).abs().max().item()
        window = plot_bounds(mixture.noised(alpha, sigma), margin=8.0)
        rows.append(
            {
                "mixture": name,
                "score vs autograd (max abs)": autograd_score_error(mixture, x_t, alpha, sigma),
                "denoiser vs Monte Carlo (max |z|)": z,
                "mass of p_t on grid": grid_mass(mixture, alpha, sigma, window),
            }
        )
    return pandas.DataFrame(rows).set_index("mixture")
