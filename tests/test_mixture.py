"""GaussianMixture: every closed form against an independent computation.

Exact identities (scipy densities, autograd, Bayes' rule) are asserted to 1e-10; Monte Carlo
estimates to five of their own standard errors, with fixed seeds.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from workbench.toy import GaussianMixture
from workbench.toy.checks import autograd_score_error, grid_mass, monte_carlo_posterior_mean

ALPHA, SIGMA = 0.8, 0.6


def diagonal_3d() -> GaussianMixture:
    """Three components in 3-D with diagonal stds, unequal weights and two classes."""
    means = [[0.0, 1.0, -1.0], [2.0, -0.5, 0.3], [-1.5, 0.2, 1.1]]
    stds = [[0.3, 0.5, 0.2], [0.4, 0.4, 0.9], [0.25, 0.6, 0.35]]
    return GaussianMixture(means, stds, weights=[0.5, 0.3, 0.2], labels=[0, 1, 1])


MIXTURES = {
    "ring": GaussianMixture.ring(),
    "grid": GaussianMixture.grid(),
    "two_class": GaussianMixture.two_class(),
    "diagonal_3d": diagonal_3d(),
}


@pytest.fixture(params=list(MIXTURES), ids=list(MIXTURES))
def mixture(request) -> GaussianMixture:
    return MIXTURES[request.param]


def query_points(mixture: GaussianMixture, n: int = 64) -> torch.Tensor:
    """Points where p_t has mass: noised samples plus a few far out."""
    x0 = mixture.sample(n, seed=7)
    noise = torch.randn(n, mixture.dim, generator=torch.Generator().manual_seed(8), dtype=x0.dtype)
    return ALPHA * x0 + SIGMA * noise


def scipy_log_prob(mixture: GaussianMixture, x: np.ndarray, alpha: float, sigma: float):
    terms = [
        math.log(w)
        + stats.multivariate_normal(alpha * m, np.diag(alpha**2 * s**2 + sigma**2)).logpdf(x)
        for w, m, s in zip(
            mixture.weights.numpy(), mixture.means.numpy(), mixture.stds.numpy(), strict=True
        )
    ]
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def test_log_prob_matches_scipy(mixture):
    x = query_points(mixture)
    for alpha, sigma in [(1.0, 0.0), (ALPHA, SIGMA), (0.05, 0.999)]:
        ours = mixture.noised_log_prob(x, alpha, sigma).numpy()
        np.testing.assert_allclose(
            ours, scipy_log_prob(mixture, x.numpy(), alpha, sigma), rtol=1e-10
        )
    np.testing.assert_allclose(mixture.log_prob(x), mixture.noised_log_prob(x, 1.0, 0.0), rtol=0)


def test_density_integrates_to_one_on_a_grid():
    mixture = GaussianMixture.two_class()
    for alpha, sigma in [(1.0, 0.0), (ALPHA, SIGMA)]:
        assert grid_mass(mixture, alpha, sigma, (-5, 5, -5, 5)) == pytest.approx(1.0, abs=1e-6)


def test_noised_density_matches_monte_carlo():
    """p_t(x) = E_{x_0 ~ p}[N(x; alpha x_0, sigma^2 I)], estimated with 200k draws."""
    mixture = diagonal_3d()
    x0 = mixture.sample(200_000, seed=1)
    points = query_points(mixture, 8)
    for point, exact in zip(
        points, mixture.noised_log_prob(points, ALPHA, SIGMA).exp(), strict=True
    ):
        kernel = torch.exp(-((point - ALPHA * x0) ** 2).sum(1) / (2 * SIGMA**2)) / (
            2 * math.pi * SIGMA**2
        ) ** (mixture.dim / 2)
        estimate, stderr = kernel.mean(), kernel.std() / math.sqrt(len(kernel))
        assert abs(estimate - exact) < 5 * stderr


def test_score_matches_autograd(mixture):
    x = query_points(mixture)
    for alpha, sigma in [(1.0, 0.0), (ALPHA, SIGMA), (0.05, 0.999)]:
        assert autograd_score_error(mixture, x, alpha, sigma) < 1e-10


def test_denoiser_satisfies_tweedie(mixture):
    x = query_points(mixture)
    tweedie = (x + SIGMA**2 * mixture.score(x, ALPHA, SIGMA)) / ALPHA
    torch.testing.assert_close(mixture.denoise(x, ALPHA, SIGMA), tweedie, rtol=1e-10, atol=1e-10)


def test_denoiser_matches_monte_carlo_posterior_mean():
    """E[x_0 | x_t] by self-normalized importance sampling over prior draws."""
    mixture = GaussianMixture.two_class()
    points = query_points(mixture, 6)
    estimate, stderr = monte_carlo_posterior_mean(mixture, points, ALPHA, SIGMA, 400_000, seed=2)
    error = (estimate - mixture.denoise(points, ALPHA, SIGMA)).abs()
    assert torch.all(error < 5 * stderr), (error, stderr)


def test_noise_prediction_is_the_residual_of_the_denoiser(mixture):
    x = query_points(mixture)
    eps = mixture.noise_prediction(x, ALPHA, SIGMA)
    torch.testing.assert_close(
        x, ALPHA * mixture.denoise(x, ALPHA, SIGMA) + SIGMA * eps, rtol=1e-10, atol=1e-10
    )


def test_class_posterior_is_bayes_rule(mixture):
    x = query_points(mixture)
    posterior = mixture.class_posterior(x, ALPHA, SIGMA)
    log_prior = torch.stack(
        [mixture.weights[mixture.labels == c].sum().log() for c in mixture.classes]
    )
    log_joint = (
        torch.stack(
            [mixture.condition(int(c)).noised_log_prob(x, ALPHA, SIGMA) for c in mixture.classes], 1
        )
        + log_prior
    )
    torch.testing.assert_close(posterior, torch.softmax(log_joint, 1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(posterior.sum(1), torch.ones(len(x), dtype=x.dtype))


def test_class_posterior_matches_monte_carlo():
    mixture = GaussianMixture.two_class()
    x0, components = mixture.sample(400_000, seed=3, return_components=True)
    is_class_1 = (mixture.labels[components] == 1).to(x0.dtype)
    points = query_points(mixture, 6)
    for point, exact in zip(
        points, mixture.class_posterior(points, ALPHA, SIGMA)[:, 1], strict=True
    ):
        w = torch.softmax(-((point - ALPHA * x0) ** 2).sum(1) / (2 * SIGMA**2), 0)
        estimate = w @ is_class_1
        stderr = torch.sqrt((w**2 * (is_class_1 - estimate) ** 2).sum())
        assert abs(estimate - exact) < 5 * stderr + 1e-12


def test_per_point_noise_levels_equal_scalar_ones(mixture):
    x = query_points(mixture, 10)
    alphas = torch.linspace(0.1, 1.0, 10, dtype=torch.float64)
    sigmas = torch.sqrt(1 - alphas**2) + 1e-3
    batched = mixture.score(x, alphas, sigmas)
    one_by_one = torch.stack([mixture.score(x[i], alphas[i], sigmas[i]) for i in range(10)])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        mixture.noise_prediction(x, alphas, sigmas), -sigmas[:, None] * batched
    )


def test_pure_noise_limit():
    """At alpha = 0, x_t carries no information: E[x_0 | x_t] is the data mean."""
    mixture = GaussianMixture.two_class()
    x = query_points(mixture)
    torch.testing.assert_close(mixture.denoise(x, 0.0, 1.0), mixture.mean().expand_as(x))
    torch.testing.assert_close(mixture.score(x, 0.0, 1.0), -x)


def test_noised_mixture_is_the_marginal(mixture):
    x = query_points(mixture)
    torch.testing.assert_close(
        mixture.noised(ALPHA, SIGMA).log_prob(x), mixture.noised_log_prob(x, ALPHA, SIGMA)
    )


def test_samples_have_the_exact_moments_and_weights(mixture):
    n = 200_000
    x, components = mixture.sample(n, seed=4, return_components=True)
    frequencies = torch.bincount(components, minlength=mixture.n_components) / n
    stderr = torch.sqrt(mixture.weights * (1 - mixture.weights) / n)
    assert torch.all((frequencies - mixture.weights).abs() < 5 * stderr)
    covariance = mixture.covariance()
    mean_stderr = torch.sqrt(torch.diag(covariance) / n)
    assert torch.all((x.mean(0) - mixture.mean()).abs() < 5 * mean_stderr)
    torch.testing.assert_close(torch.cov(x.T), covariance, rtol=0.02, atol=0.02)


def test_conditional_sampling_draws_only_that_class():
    mixture = GaussianMixture.two_class()
    x, components = mixture.sample(1000, seed=5, label=1, return_components=True)
    assert set(mixture.labels[components].tolist()) == {1}
    assert x.shape == (1000, 2)


def test_sampling_is_reproducible():
    mixture = GaussianMixture.ring()
    torch.testing.assert_close(
        mixture.sample(100, seed=3), mixture.sample(100, seed=3), rtol=0, atol=0
    )
    assert not torch.equal(mixture.sample(100, seed=3), mixture.sample(100, seed=4))


def test_constructors():
    ring = GaussianMixture.ring(n_modes=8, radius=2.0, std=0.1)
    torch.testing.assert_close(ring.means.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    assert GaussianMixture.grid(n_per_side=3).means.shape == (9, 2)
    assert GaussianMixture.two_class().classes.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"means": [1.0, 2.0], "stds": 0.1}, "means must have shape"),
        ({"means": [[0.0, 0.0]], "stds": -1.0}, "positive"),
        ({"means": [[0.0, 0.0]], "stds": [0.1, 0.2, 0.3]}, "stds must be"),
        ({"means": [[0.0, 0.0]], "stds": 0.1, "weights": [-1.0]}, "non-negative"),
        ({"means": [[0.0, 0.0]], "stds": 0.1, "labels": [0, 1]}, "labels must have shape"),
    ],
)
def test_invalid_construction_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**kwargs)


def test_invalid_queries_are_refused():
    mixture = GaussianMixture.ring()
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        mixture.score(torch.zeros(4, 3), ALPHA, SIGMA)
    with pytest.raises(ValueError, match="sigma must be a scalar or have shape"):
        mixture.score(torch.zeros(4, 2), ALPHA, torch.ones(3))
    with pytest.raises(ValueError, match="undefined at sigma = 0"):
        mixture.noise_prediction(torch.zeros(4, 2), 1.0, 0.0)
    with pytest.raises(ValueError, match="unknown label 9"):
        mixture.condition(9)
