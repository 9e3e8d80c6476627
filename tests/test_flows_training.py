"""Trained flows and MeanFlow against exact references, at tiny sizes (seconds in all).

References: the time densities' own CDFs (Kolmogorov-Smirnov) and derivatives; the single
Gaussian N(mu, s^2 I) on the rectified path, whose flow is affine in closed form (marginal
N((1 - t) mu, sd(t)^2 I), sd(t)^2 = (1 - t)^2 s^2 + t^2, flow map z_r = (1 - r) mu +
sd(r) / sd(t) (z - (1 - t) mu), hence the exact velocity and average velocity); finite
differences for the JVP target; bitwise equality for seeds and saved states.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.diffusion.paths import AffinePath
from workbench.diffusion.sampling import prior_noise, sample
from workbench.flows.meanflow import (
    TrainedMeanFlow,
    average_velocity_network,
    meanflow_target,
    sample_times,
    train_meanflow,
)
from workbench.flows.training import (
    LR_SCHEDULES,
    TIME_DENSITIES,
    TRAINED,
    Adam,
    TrainedFlow,
    VelocityMLP,
    build_network,
    euler_solution,
    exact_velocity_model,
    fine_solution,
    model_error,
    reflow,
    step_error,
    train_flow,
)
from workbench.toy.mixture import GaussianMixture

PATH = AffinePath.rectified()
MU, S = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.5
GAUSSIAN = GaussianMixture(MU[None], S)
TRAINING = dict(steps=300, batch=128, lr=1e-2)
TINY = TRAINING | dict(width=32, depth=2)


def sd(t):
    return math.sqrt((1 - t) ** 2 * S**2 + t**2)


def exact_flow_map(z, r, t):
    """The single Gaussian's ODE from time t to time r (closed form)."""
    return (1 - r) * MU + sd(r) / sd(t) * (z - (1 - t) * MU)


def exact_average_velocity(z, r, t):
    return (z - exact_flow_map(z, r, t)) / (t - r)


def ks_statistic(draws: torch.Tensor, cdf) -> float:
    """sup |F_n - F| of the draws' empirical CDF against `cdf` (at the jumps, both sides)."""
    x = torch.sort(draws).values
    n = len(x)
    f = cdf(x)
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - f
    below = f - torch.arange(n, dtype=torch.float64) / n
    return float(torch.maximum(above, below).max())


# ---------------------------------------------------------------- time densities
@pytest.mark.parametrize("name", list(TIME_DENSITIES))
def test_time_density_samples_follow_its_cdf_and_the_pdf_is_its_derivative(name):
    density = TIME_DENSITIES[name]
    draws = density.sample(20_000, torch.Generator().manual_seed(3))
    assert draws.min() >= 0 and draws.max() <= 1
    # Kolmogorov-Smirnov against the density's own CDF, below its 1% critical value
    # 1.628 / sqrt(n) (fixed seed: the statistic is a fixed number)
    assert ks_statistic(draws, density.cdf) < 1.628 / math.sqrt(len(draws))
    s = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    h = 1e-6
    derivative = (density.cdf(s + h) - density.cdf(s - h)) / (2 * h)
    torch.testing.assert_close(density.pdf(s), derivative, rtol=1e-6, atol=1e-8)
    fine = torch.linspace(1e-9, 1 - 1e-9, 200_001, dtype=torch.float64)
    assert abs(float(torch.trapezoid(density.pdf(fine), fine)) - 1) < 1e-4


def test_u_shaped_density_is_lee_lin_fantis_exponential_mixture():
    """Their t_dist.py: s ~ a e^{a s} / (e^a - 1), flipped to 1 - s for half the draws (a = 4):
    draws of that two-step recipe pass a KS test against our CDF, and the pdf is U-shaped."""
    a, n = 4.0, 200_000
    u = np.random.default_rng(0).random(n)
    s = np.log1p(u * math.expm1(a)) / a
    s = np.where(np.random.default_rng(1).random(n) < 0.5, s, 1 - s)
    assert ks_statistic(torch.as_tensor(s), TIME_DENSITIES["u_shaped"].cdf) < 1.628 / math.sqrt(n)
    # symmetric, lowest at 1/2, and p(0) / p(1/2) = cosh(a / 2)
    pdf = TIME_DENSITIES["u_shaped"].pdf(torch.linspace(0, 1, 101, dtype=torch.float64))
    torch.testing.assert_close(pdf, pdf.flip(0), rtol=1e-12, atol=0)
    assert int(pdf.argmin()) == 50
    assert float(pdf[0] / pdf[50]) == pytest.approx(math.cosh(a / 2), rel=1e-12)


# ---------------------------------------------------------------- flow matching
def test_velocity_mlp_refuses_bad_sizes_and_time_counts():
    with pytest.raises(ValueError, match="width"):
        VelocityMLP(2, width=0)
    net = VelocityMLP(2, 8, 1)
    with pytest.raises(ValueError, match="takes 1 times"):
        net(torch.zeros(3, 2, dtype=torch.float64), 0.5, 0.5)


def test_adam_with_its_schedule_is_torch_optims():
    """Five steps of our Adam with the cosine schedule against torch.optim.Adam + LambdaLR."""
    config = {"dim": 2, "width": 8, "depth": 2}
    ours, theirs = build_network(config, 0, "cpu"), build_network(config, 0, "cpu")
    x = prior_noise(PATH, 16, 2, seed=1)
    adam = Adam(ours, 1e-2, LR_SCHEDULES["cosine"](5))
    reference = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    decay = torch.optim.lr_scheduler.LambdaLR(reference, LR_SCHEDULES["cosine"](5))
    for _ in range(5):
        adam.step((ours(x, 0.3) ** 2).sum())
        reference.zero_grad()
        (theirs(x, 0.3) ** 2).sum().backward()
        reference.step()
        decay.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


def test_train_flow_refuses_bad_input_in_one_line():
    for kwargs, match in [
        (dict(steps=0), "steps"),
        (dict(lr=-1.0), "lr"),
        (dict(time_density="beta"), "unknown time density"),
        (dict(device="tpu"), "device"),
    ]:
        with pytest.raises(ValueError, match=match):
            train_flow(GAUSSIAN, PATH, **(TINY | kwargs))
    with pytest.raises(ValueError, match="one shape"):
        train_flow((torch.zeros(4, 2), torch.zeros(5, 2)), PATH, **TINY)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            train_flow(GAUSSIAN, PATH, **(TINY | dict(device="cuda")))


@pytest.fixture(scope="module")
def gaussian_flow() -> TrainedFlow:
    return train_flow(GAUSSIAN, PATH, **TINY, desc=None)


def test_train_flow_is_deterministic_and_its_state_round_trips():
    short = TINY | dict(steps=40, desc=None)
    first = train_flow(GAUSSIAN, PATH, **short)
    TRAINED.clear()
    again = train_flow(GAUSSIAN, PATH, **short)
    assert again.network is not first.network
    x = prior_noise(PATH, 50, 2, seed=5)
    np.testing.assert_array_equal(again.losses, first.losses)
    assert torch.equal(again.model(x, 0.3), first.model(x, 0.3))
    state = first.state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    restored = TrainedFlow.from_state(state, PATH)
    assert torch.equal(restored.model(x, 0.7), first.model(x, 0.7))
    np.testing.assert_array_equal(restored.losses, first.losses)
    other_seed = train_flow(GAUSSIAN, PATH, **(short | dict(seed=1)))
    assert not torch.equal(other_seed.model(x, 0.3), first.model(x, 0.3))


def test_flow_matching_learns_the_exact_velocity_of_a_gaussian(gaussian_flow):
    """Model error (L2 over p_t against the closed-form velocity) falls far below the
    untrained network's; the exact velocity model scores 0 against itself."""
    exact = exact_velocity_model(GAUSSIAN, PATH)
    x = prior_noise(PATH, 64, 2, seed=2)
    t = torch.full((64, 1), 0.4, dtype=torch.float64)
    closed_form = -MU + (x - 0.6 * MU) * (-0.6 * S**2 + 0.4) / sd(0.4) ** 2
    torch.testing.assert_close(exact(x, t), closed_form, rtol=1e-12, atol=1e-12)
    assert model_error(exact, GAUSSIAN) == 0
    untrained = TrainedFlow(
        build_network({"dim": 2, "width": 32, "depth": 2}, 0, "cpu"), PATH, np.zeros(0), 0.0
    )
    before, after = model_error(untrained, GAUSSIAN), model_error(gaussian_flow, GAUSSIAN)
    assert after < 0.05 * before and after < 0.05


def test_euler_is_ddim_on_the_rectified_path_and_one_step_lands_on_the_mean():
    ring = GaussianMixture.ring()
    exact = exact_velocity_model(ring, PATH)
    x1 = prior_noise(PATH, 100, 2, seed=3)
    one_step = euler_solution(exact, x1, 1)
    torch.testing.assert_close(one_step, ring.mean().expand(100, 2), rtol=0, atol=1e-12)
    ddim = sample(exact, x1, solver="ddim", steps=4, grid="time_uniform", t_start=1.0, t_end=0.0)
    torch.testing.assert_close(euler_solution(exact, x1, 4), ddim.x, rtol=0, atol=1e-12)


def test_fine_solution_matches_the_closed_form_flow_map():
    """Richardson-extrapolated Euler on the exact velocity from t = 1 to 0 (within 1e-5)."""
    x1 = prior_noise(PATH, 200, 2, seed=4)
    x0 = fine_solution(exact_velocity_model(GAUSSIAN, PATH), x1)
    assert float((x0 - exact_flow_map(x1, 0.0, 1.0)).abs().max()) < 1e-5


def test_one_reflow_round_straightens_the_gaussian_flow(gaussian_flow):
    """On a single Gaussian the 1-rectified coupling is affine, so 2-RF paths are straight
    lines: one Euler step of 2-RF lands near its own ODE endpoint, where 1-RF's one step
    collapses to the mean (step error ~ s E|eps| ~ 0.6)."""
    x1 = prior_noise(PATH, 300, 2, seed=6)
    (second,) = reflow(gaussian_flow, 512, rounds=1, **TRAINING, desc=None)
    assert second.name == "2-rectified flow"
    first_error, second_error = step_error(gaussian_flow, x1, 1), step_error(second, x1, 1)
    assert first_error > 0.3 and second_error < 0.25 * first_error


# ---------------------------------------------------------------- MeanFlow
def test_meanflow_target_matches_finite_differences():
    """u_tgt = v - (t - r)(v d_z u + d_t u): the JVP's total derivative against a central
    difference along (z + h v, r, t + h) on a fixed float64 network, to 1e-6, and equal bit for
    bit to torch.func.jvp with tangent (v, 0, 1)."""
    config = {"dim": 2, "width": 16, "depth": 2, "n_times": 2, "frequencies": 2}
    network = build_network(config, 0, "cpu")
    g = torch.Generator().manual_seed(0)
    z, v = (torch.randn(20, 2, generator=g, dtype=torch.float64) for _ in range(2))
    r, t = sample_times(TIME_DENSITIES["uniform"], PATH, 20, 0.0, g)
    u, target = meanflow_target(network, z, r, t, v)
    assert u.requires_grad and not target.requires_grad
    u_fn, h = average_velocity_network(network), 1e-5
    with torch.no_grad():
        total = (u_fn(z + h * v, r, t + h) - u_fn(z - h * v, r, t - h)) / (2 * h)
        torch.testing.assert_close(u, u_fn(z, r, t), rtol=0, atol=0)
    torch.testing.assert_close(target, v - (t - r)[:, None] * total, rtol=0, atol=1e-6)
    _, dudt = torch.func.jvp(u_fn, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    assert torch.equal(target, (v - (t - r)[:, None] * dudt).detach())


def test_meanflow_time_sampler_sets_r_equal_t_on_its_share():
    r, t = sample_times(TIME_DENSITIES["logit_normal"], PATH, 1000, 0.75, torch.Generator())
    assert (t >= r).all() and int((r == t).sum()) == 750


def test_meanflow_on_a_gaussian_approaches_the_exact_average_velocity():
    """Trained briefly, u_theta(z, r, t) on z ~ p_t approaches the closed-form average velocity:
    closely where the paper's sampler puts its (r, t), loosely at the 1-NFE corner (0, 1), which
    a logit-normal pair reaches only in its tails; far better than the untrained network
    everywhere. The sampler's jumps are z - (t - r) u, and the saved state restores."""
    mf = train_meanflow(GAUSSIAN, PATH, **TRAINING, width=32, depth=2, desc=None)
    config = {"dim": 2, "width": 32, "depth": 2, "n_times": 2, "frequencies": 0}
    untrained = TrainedMeanFlow(build_network(config, 0, "cpu"), PATH, np.zeros(0), 0.0)

    def error(flow, r, t):
        z = (1 - t) * MU + sd(t) * prior_noise(PATH, 400, 2, seed=8)
        return float(
            ((flow.average_velocity(z, r, t) - exact_average_velocity(z, r, t)) ** 2).sum(1).mean()
        )

    for (r, t), bound in {(0.5, 1.0): 0.03, (0.25, 0.75): 0.03, (0.0, 1.0): 0.3}.items():
        assert error(mf, r, t) < min(bound, 0.2 * error(untrained, r, t)), (r, t)
    z = prior_noise(PATH, 100, 2, seed=9)
    torch.testing.assert_close(mf.sample(z, 1), z - mf.average_velocity(z, 0.0, 1.0))
    half = z - 0.5 * mf.average_velocity(z, 0.5, 1.0)
    torch.testing.assert_close(mf.sample(z, 2), half - 0.5 * mf.average_velocity(half, 0.0, 0.5))
    restored = TrainedMeanFlow.from_state(mf.state(), PATH)
    assert torch.equal(restored.sample(z, 2), mf.sample(z, 2))
