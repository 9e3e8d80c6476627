"""The exact flow of a Gaussian mixture against independent references.

Divergence against autograd's trace of the Jacobian (1e-9); the log-likelihood by the change of
variables against mixture.log_prob (1e-7), which holds only if velocity and divergence are both
right; the velocity against Monte Carlo (five standard errors) and the mixture's own denoiser;
a single Gaussian against its closed forms (linear flow map on every path, straightness by
Gauss-Legendre quadrature, one reflow exactly straight); MeanFlow's average velocity against its
definition as an integral and the MeanFlow identity. Every path of PATHS where it applies.
"""

import math

import pytest
import torch
from scipy.special import roots_legendre

from workbench.diffusion import AffinePath, DiffusionModel, ModelOutputError, prior_noise
from workbench.diffusion.paths import PATHS
from workbench.flows import (
    average_velocity,
    exact_velocity,
    flow_log_likelihood,
    flow_map,
    straightness,
    transport_cost,
    velocity_divergence,
)
from workbench.toy import GaussianMixture
from workbench.toy.checks import monte_carlo_posterior_mean

RECTIFIED = AffinePath.rectified()
MIXTURES = {"ring": GaussianMixture.ring(), "two_class": GaussianMixture.two_class()}
TIMES = (0.0, 0.05, 0.3, 0.7, 1.0)  # both ends included: the forms must stay finite there


ALL_PATHS = {name: PATHS[name]() for name in PATHS}


def finite_velocity(path, t) -> bool:
    """Whether a velocity converts to (x_0, eps) at t: not where sigma' is infinite (VP, t = 0)."""
    return all(bool(torch.isfinite(d)) for d in path.derivatives(t))


def gaussian() -> GaussianMixture:
    """One diagonal Gaussian: its exact flow is linear and known in closed form."""
    return GaussianMixture([[1.0, -0.5]], [[0.5, 1.6]])


def points(mixture: GaussianMixture, n: int = 24, seed: int = 0) -> torch.Tensor:
    """Data draws and wider draws, so both the modes and the space between them are tested."""
    generator = torch.Generator().manual_seed(seed)
    wide = 2.5 * torch.randn(n, mixture.dim, generator=generator, dtype=torch.float64)
    return torch.cat([mixture.sample(n, seed=seed), wide])


@pytest.mark.parametrize("name", list(MIXTURES))
@pytest.mark.parametrize("t", TIMES)
def test_divergence_is_the_trace_of_the_autograd_jacobian(name, t):
    mixture = MIXTURES[name]
    for path in ALL_PATHS.values():
        x = points(mixture).requires_grad_(True)
        velocity = exact_velocity(mixture, path)(x, t)
        trace = sum(
            torch.autograd.grad(velocity[:, d].sum(), x, retain_graph=True)[0][:, d]
            for d in range(mixture.dim)
        )
        closed = velocity_divergence(mixture, path, x.detach(), t)
        assert torch.allclose(closed, trace, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path_name", list(PATHS))
@pytest.mark.parametrize("name", list(MIXTURES))
def test_velocity_matches_the_denoiser_and_monte_carlo(name, path_name):
    mixture, t = MIXTURES[name], 0.45
    path = ALL_PATHS[path_name]
    alpha, sigma = float(path.alpha(t)), float(path.sigma(t))
    x = alpha * mixture.sample(8, seed=1) + sigma * prior_noise(path, 8, 2, seed=3)
    velocity = exact_velocity(mixture, path)(x, t)
    peer = mixture.denoiser(path).as_prediction("velocity")(x, t)
    assert torch.allclose(velocity, peer, rtol=1e-12, atol=1e-12)
    # E[x_1 - x_0 | x_t = x] by importance-weighting prior draws x_0 by N(x; alpha x_0, sigma^2):
    # the velocity is affine in E[x_0 | x_t], u = alpha' m + sigma' (x - alpha m) / sigma
    d_alpha, d_sigma = (float(d) for d in path.derivatives(t))
    mean, error = monte_carlo_posterior_mean(mixture, x, alpha, sigma, n=100_000, seed=2)
    slope = d_alpha - d_sigma * alpha / sigma
    estimate = d_sigma / sigma * x + slope * mean
    assert float(error.max()) * abs(slope) < 0.02  # the check has teeth
    assert torch.all((velocity - estimate).abs() <= 5 * abs(slope) * error)


def test_the_vp_velocity_at_the_data_end_is_its_limit():
    """sigma' is infinite at the VP path's t = 0 but sigma sigma' is not: velocity and divergence
    there are their limits (both are linear in t near 0, so t = 1e-9 is 1e-9 times a slope away);
    a velocity model still cannot be solved to t = 0 (it gives no eps there), a data model can."""
    mixture, vp = MIXTURES["two_class"], ALL_PATHS["vp"]
    model, x = exact_velocity(mixture, vp), points(mixture, n=6)
    assert torch.allclose(model(x, 0.0), model(x, 1e-9), rtol=0, atol=1e-6)
    assert not torch.allclose(model(x, 0.0), model(x, 1e-7), rtol=0, atol=1e-6)
    divergences = [velocity_divergence(mixture, vp, x, t) for t in (0.0, 1e-9)]
    assert torch.allclose(*divergences, rtol=0, atol=1e-6)
    x1 = prior_noise(vp, 4, 2, seed=13)
    with pytest.raises(ModelOutputError, match="data-prediction model"):
        straightness(model, x1)
    assert straightness(mixture.denoiser(vp), x1) > 0


def test_a_label_conditions_the_velocity():
    mixture = MIXTURES["two_class"]
    x = points(mixture, n=6)
    conditioned = exact_velocity(mixture, RECTIFIED, label=1)(x, 0.4)
    assert torch.allclose(conditioned, exact_velocity(mixture.condition(1), RECTIFIED)(x, 0.4))
    assert not torch.allclose(conditioned, exact_velocity(mixture, RECTIFIED)(x, 0.4))


# every path on two_class; the ring (narrow modes: the slowest solves) and one Gaussian once
LIKELIHOOD_CASES = [("two_class", path) for path in PATHS] + [
    ("ring", "rectified"),
    ("gaussian", "rectified"),
]


@pytest.mark.parametrize(("name", "path_name"), LIKELIHOOD_CASES)
def test_log_likelihood_along_the_flow_is_log_prob(name, path_name):
    mixture, path = MIXTURES.get(name) or gaussian(), ALL_PATHS[path_name]
    x0 = mixture.sample(12, seed=4)
    alpha, sigma = path.alpha(path.t_min), path.sigma(path.t_min)
    expected = mixture.noised_log_prob(x0, alpha, sigma)  # log_prob itself where sigma = 0
    assert torch.allclose(flow_log_likelihood(mixture, path, x0), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("path_name", list(PATHS))
def test_gaussian_flow_map_is_linear_on_every_path(path_name):
    """x_t = alpha mu + sqrt(alpha^2 s^2 + sigma^2) x_1 / sigma(t_max): the flow of a Gaussian
    to the source, both ways and from the mixture's velocity and its denoiser alike."""
    mixture, path = gaussian(), ALL_PATHS[path_name]
    mu, s = mixture.means[0], mixture.stds[0]
    x1 = prior_noise(path, 20, 2, seed=11)
    white = x1 / path.sigma(path.t_max)  # prior_noise has the source's std sigma(t_max)

    def closed(t):
        alpha, sigma = path.alpha(t), path.sigma(t)
        return alpha * mu + torch.sqrt(alpha**2 * s**2 + sigma**2) * white

    velocity, denoiser = exact_velocity(mixture, path), mixture.denoiser(path)
    for model in [denoiser] + [velocity] * finite_velocity(path, path.t_min):
        x0 = flow_map(model, closed(path.t_max), path.t_max, path.t_min)
        assert torch.allclose(x0, closed(path.t_min), atol=1e-9)
        middle = flow_map(model, x0, path.t_min, 0.4)
        assert torch.allclose(middle, closed(0.4), atol=1e-9)


def test_flow_map_runs_both_ways_and_inverts():
    model = exact_velocity(MIXTURES["two_class"], RECTIFIED)
    x1 = prior_noise(RECTIFIED, 8, 2, seed=5)
    x0 = flow_map(model, x1, 1.0, 0.0)
    assert torch.allclose(flow_map(model, x0, 0.0, 1.0), x1, atol=1e-8)
    middle = flow_map(model, x1, 1.0, 0.4)
    assert torch.allclose(flow_map(model, middle, 0.4, 0.0), x0, atol=1e-8)
    # the exact flow carries the noise onto the mixture: the endpoints sit on the modes
    assert float(MIXTURES["two_class"].log_prob(x0).min()) > -10


def test_gaussian_flow_is_linear_and_one_reflow_makes_it_straight():
    mixture = gaussian()
    mu, s = mixture.means[0], mixture.stds[0]
    model = exact_velocity(mixture, RECTIFIED)
    x1 = prior_noise(RECTIFIED, 400, 2, seed=6)
    # the flow map is linear: x_t = (1 - t) mu + sqrt((1 - t)^2 s^2 + t^2) x_1
    for t in (0.0, 0.3):
        spread = torch.sqrt((1 - t) ** 2 * s**2 + t**2)
        assert torch.allclose(flow_map(model, x1, 1.0, t), (1 - t) * mu + spread * x1, atol=1e-9)

    # straightness of the exact flow: per dimension E[x_1^2] int ((sqrt v)' - (1 - s))^2 dt,
    # by Gauss-Legendre with 200 nodes (the integrand is analytic on [0, 1]: converged to 1e-15)
    roots, weights = roots_legendre(200)
    t, variance = torch.as_tensor((roots + 1) / 2)[:, None], s**2
    speed = (t - (1 - t) * variance) / torch.sqrt((1 - t) ** 2 * variance + t**2)
    per_dim = torch.as_tensor(weights / 2) @ (speed - (1 - s)) ** 2
    closed = float(((x1**2) * per_dim).sum(-1).mean())
    assert closed > 0.1
    assert straightness(model, x1) == pytest.approx(closed, abs=1e-9)

    # one reflow: the rectified flow of the exact coupling x_0 = mu + s x_1, read off the flow
    # map, moves along the coupling's straight lines, v(x, t) = x_1 - x_0 with x_1 solved from
    # x = (1 - t) x_0 + t x_1; its straightness is 0 and its coupling the same one
    identity = torch.eye(2, dtype=torch.float64)  # float64: a float32 factor jitters the solve
    shift = flow_map(model, torch.zeros(1, 2), 1.0, 0.0)[0]
    scale = flow_map(model, identity, 1.0, 0.0) - shift  # row d: the image of e_d, x_0 = x_1 A^T
    assert torch.allclose(shift, mu, atol=1e-9)
    assert torch.allclose(scale, torch.diag(s), atol=1e-9)

    def reflowed(x, t):
        noise = torch.linalg.solve((1 - t) * scale + t * identity, x - (1 - t) * shift, left=False)
        return noise - (noise @ scale + shift)

    rectified = DiffusionModel(reflowed, "velocity", RECTIFIED, "2-rectified Gaussian flow")
    assert abs(straightness(rectified, x1)) < 1e-9
    assert torch.allclose(flow_map(rectified, x1, 1.0, 0.0), mu + s * x1, atol=1e-9)
    # transport costs: the independent coupling's E|x_1 - x_0|^2 = |mu|^2 + sum s^2 + D (Monte
    # Carlo, 20,000 pairs: relative standard error ~0.6%); the 1-RF coupling's, on the same
    # noise, is that of x_0 = mu + s x_1 (its expectation |mu|^2 + sum (s - 1)^2 is far lower)
    x0, noise = mixture.sample(20_000, seed=7), prior_noise(RECTIFIED, 20_000, 2, seed=8)
    independent = float(mu @ mu + (s**2).sum() + 2)
    assert transport_cost(x0, noise) == pytest.approx(independent, rel=0.03)
    coupled = transport_cost(flow_map(model, x1, 1.0, 0.0), x1)
    assert coupled == pytest.approx(transport_cost(mu + s * x1, x1), abs=1e-9)
    assert coupled < 0.5 * independent


def test_straightness_of_the_mixture_flow_is_positive():
    model = exact_velocity(MIXTURES["two_class"], RECTIFIED)
    x1 = prior_noise(RECTIFIED, 64, 2, seed=9)
    assert straightness(model, x1) > 0.1


def test_straightness_depends_on_the_path():
    """A standard normal target: on the cosine path every marginal is N(0, I), the velocity is
    0 and S = 0; on the rectified path x_t = sqrt((1 - t)^2 + t^2) x_1 slows down and speeds
    up, S = E|x_1|^2 int_0^1 ((2 t - 1) / sqrt((1 - t)^2 + t^2))^2 dt = 2 (1 - pi / 4) |x_1|^2."""
    normal = GaussianMixture([[0.0, 0.0]], 1.0)
    x1 = prior_noise(RECTIFIED, 32, 2, seed=12)
    cosine = exact_velocity(normal, ALL_PATHS["cosine"])
    assert torch.equal(cosine(x1, 0.3), torch.zeros_like(x1))
    assert abs(straightness(cosine, x1)) < 1e-12
    closed = 2 * (1 - math.pi / 4) * float((x1**2).sum(-1).mean())
    assert straightness(exact_velocity(normal, RECTIFIED), x1) == pytest.approx(closed, abs=1e-9)


def test_transport_cost_refuses_unpaired_samples():
    with pytest.raises(ValueError, match="paired samples"):
        transport_cost(torch.zeros(3, 2), torch.zeros(4, 2))


def test_average_velocity_is_the_mean_velocity_along_the_trajectory():
    model = exact_velocity(MIXTURES["two_class"], RECTIFIED)
    z = prior_noise(RECTIFIED, 8, 2, seed=10) * 0.8
    r, t = 0.2, 0.9
    u = average_velocity(model, z, r, t)
    # definition: (1 / (t - r)) int_r^t v(z_tau, tau) dtau, by 16-node Gauss-Legendre along
    # the trajectory (1e-9 here: the integrand is smooth away from the data end)
    roots, weights = roots_legendre(16)
    integral, point, now = 0.0, z, t
    for root, weight in zip(roots[::-1], weights[::-1], strict=True):  # from t down to r
        tau = r + (t - r) * (root + 1) / 2
        point, now = flow_map(model, point, now, tau), tau
        integral = integral + weight / 2 * model(point, tau)
    assert torch.allclose(u, integral, atol=1e-7)
    # one step of any length is exact, and the limit r -> t is the velocity
    assert torch.allclose(z - (t - r) * u, flow_map(model, z, t, r), atol=1e-12)
    assert torch.equal(average_velocity(model, z, t, t), model(z, t))
    near = average_velocity(model, z, t - 1e-5, t)
    assert torch.allclose(near, model(z, t), atol=1e-4)
    # the MeanFlow identity u = v - (t - r) du/dt, the total derivative along the trajectory
    h = 1e-4
    ahead, behind = (flow_map(model, z, t, t + d) for d in (h, -h))
    slope = (
        average_velocity(model, ahead, r, t + h) - average_velocity(model, behind, r, t - h)
    ) / (2 * h)
    assert torch.allclose(u, model(z, t) - (t - r) * slope, atol=1e-6)
