"""Inverse problems against exact answers: the posterior against a grid, the exact guidance
term against finite differences, the exact posterior model's samples against exact draws,
DPS's t -> 0 limit, the ensemble method's convergence, TFG's U shape, bad input."""

from __future__ import annotations

import pytest
import torch

from workbench.diffusion.sampling import prior_noise, sample
from workbench.inverse import (
    INVERSE_METHODS,
    PROBLEMS,
    InverseProblem,
    TFGConfig,
    dps_term,
    ensemble_convergence,
    get_problem,
    guidance_term_error,
    posterior_distance,
    sample_posterior,
    tfg_sample,
)
from workbench.toy.mixture import DTYPE

NAMES = list(PROBLEMS)


@pytest.mark.parametrize("name", NAMES)
def test_posterior_matches_a_brute_force_grid(name):
    problem = get_problem(name)
    ticks = torch.linspace(-3.5, 3.5, 701, dtype=DTYPE)
    xs, ys = torch.meshgrid(ticks, ticks, indexing="xy")
    points = torch.stack([xs.flatten(), ys.flatten()], 1)
    log_joint = problem.prior.log_prob(points) + problem.log_observation_likelihood(points)
    cell = float(ticks[1] - ticks[0]) ** 2
    grid_density = torch.softmax(log_joint, 0) / cell
    exact = torch.exp(problem.posterior.log_prob(points))
    assert float((grid_density - exact).abs().max()) < 1e-6 * float(exact.max())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0.02, 0.3, 0.8])
def test_exact_guidance_is_the_gradient_of_the_noised_likelihood(name, t):
    problem = get_problem(name)
    alpha, sigma = problem.levels(t)
    x = problem.noised_posterior_samples(8, t, seed=1)
    h = 1e-5
    columns = [
        (
            problem.log_likelihood(x + h * e, alpha, sigma)
            - problem.log_likelihood(x - h * e, alpha, sigma)
        )
        / (2 * h)
        for e in torch.eye(2, dtype=DTYPE)
    ]
    finite_difference = torch.stack(columns, 1)
    exact = problem.exact_guidance(x, alpha, sigma)
    assert torch.allclose(exact, finite_difference, rtol=1e-5, atol=1e-6)


def test_posterior_denoiser_matches_the_full_covariance_mixture():
    problem = get_problem("blur")
    x = problem.noised_posterior_samples(50, 0.4, seed=2)
    alpha, sigma = problem.levels(0.4)
    assert torch.allclose(
        problem.conditional_mean(x, alpha, sigma),
        problem.posterior.denoise(x, alpha, sigma),
        atol=1e-12,
    )


@pytest.mark.parametrize("name", ["blur", "noisy"])
def test_exact_posterior_model_samples_the_posterior(name):
    problem = get_problem(name)
    x_T = prior_noise(problem.schedule, 1000, 2, seed=3)
    x = sample(problem.posterior_model, x_T, solver="dpmpp_2m", steps=30).x
    distance = posterior_distance(x, problem, seed=3)
    assert distance["sw"] <= 1.5 * distance["floor_max"]
    prior_x = sample(problem.prior_model, x_T, solver="dpmpp_2m", steps=30).x
    assert posterior_distance(prior_x, problem, seed=3)["sw"] > 3 * distance["floor_max"]


@pytest.mark.parametrize("name", NAMES)
def test_dps_is_exact_where_the_posterior_over_x0_is_a_point_mass(name):
    problem = get_problem(name)
    x = problem.posterior_samples(200, seed=4)
    term = dps_term(problem)
    gaps = []
    for sigma in (1e-2, 1e-3, 1e-4):
        alpha = (1 - sigma**2) ** 0.5
        exact = problem.exact_guidance(alpha * x, alpha, sigma)
        gaps.append(float((term(alpha * x, alpha, sigma) - exact).norm() / exact.norm()))
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-5


def test_dps_relative_error_grows_with_noise_on_the_ring():
    table = guidance_term_error("dps", get_problem("blur"), 1.0, [0.002, 0.05, 0.2, 0.7], n=400)
    assert table.relative.is_monotonic_increasing
    assert table.relative.iloc[0] < 1e-3 < 10 < table.relative.iloc[-1]


def test_exact_entry_has_zero_error():
    table = guidance_term_error("exact", get_problem("noisy"), 1.0, [0.01, 0.5], n=200)
    assert float(table.error.max()) < 1e-20


@pytest.mark.parametrize("name", NAMES)
def test_tfg_error_is_u_shaped_in_strength(name):
    problem = get_problem(name)
    strengths = [0.0, 0.5, 2.0]
    errors = [
        float(guidance_term_error("tfg", problem, s, [0.05, 0.2], n=400).error.mean())
        for s in strengths
    ]
    assert errors[1] < errors[0] and errors[1] < errors[2]


def test_ensemble_term_converges_as_the_ensemble_grows():
    table = ensemble_convergence(get_problem("blur"), 0.2, [4, 16, 64, 256], n=2048)
    assert table.to_limit.is_monotonic_decreasing
    assert table.error.is_monotonic_decreasing
    assert table.to_limit.iloc[-1] < 0.01 * table.to_limit.iloc[0]


def test_ensemble_term_uses_no_model_gradient():
    problem = get_problem("inpaint")
    term = INVERSE_METHODS["enkg"].guidance(problem, 1.0)
    x = problem.noised_posterior_samples(64, 0.1, seed=5)
    alpha, sigma = problem.levels(0.1)
    with torch.no_grad():  # would break any autograd-based term
        g = term(x, torch.tensor(alpha, dtype=DTYPE), torch.tensor(sigma, dtype=DTYPE))
    assert g.shape == x.shape and bool(torch.isfinite(g).all())


def test_tfg_recurrence_sampler_counts_and_is_seeded():
    problem = get_problem("noisy")
    x_T = prior_noise(problem.schedule, 64, 2, seed=6)
    config = TFGConfig(n_recur=3).scaled(0.5)
    first = tfg_sample(problem, x_T, config=config, steps=5, seed=1)
    second = tfg_sample(problem, x_T, config=config, steps=5, seed=1)
    assert first.nfe == 15 and torch.equal(first.x, second.x)


def test_every_method_samples_through_the_registry():
    problem = get_problem("noisy")
    for name in INVERSE_METHODS:
        run = sample_posterior(name, problem, strength=0.5, n=64, steps=4)
        assert not run["diverged"] and run["x"].shape == (64, 2)


def test_a_diverging_run_is_reported_not_raised():
    problem = get_problem("inpaint")
    run = sample_posterior("dps", problem, strength=1e300, n=32, steps=6)
    assert run["diverged"] and run["x"] is None


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: INVERSE_METHODS["dps"].guidance(get_problem("blur"), -1.0), "strength"),
        (lambda: INVERSE_METHODS["nope"], "unknown inverse guidance method"),
        (lambda: PROBLEMS["nope"], "unknown inverse problem"),
        (lambda: guidance_term_error("dps", get_problem("blur"), 1.0, [2.0], n=10), "t must be"),
        (lambda: guidance_term_error("dps", get_problem("blur"), 1.0, [0.1], n=1), "n must"),
        (lambda: TFGConfig(n_recur=0), "n_recur"),
        (lambda: posterior_distance(torch.zeros(5, 3), get_problem("blur")), "samples must"),
        (
            lambda: InverseProblem(get_problem("blur").prior, [[1.0, 0.0]], [[0.0]], [0.0], None),
            "positive definite",
        ),
        (
            lambda: InverseProblem(
                get_problem("blur").prior, [[1.0, 0.0, 0.0]], [[1.0]], [0.0], None
            ),
            "A must have shape",
        ),
    ],
)
def test_bad_input_is_a_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)
