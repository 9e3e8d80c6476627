"""Notebook 06's study against closed forms: Euler on the exact flow, the one-step collapse,
the exact coupling's numbers, and the settings it offers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.diffusion.paths import AffinePath
from workbench.diffusion.sampling import prior_noise, sample
from workbench.flows.exact import exact_velocity
from workbench.flows.study import (
    FlowSetting,
    check_offered,
    euler,
    flow_run,
    flow_size,
    mixture,
    nearest_steps,
    one_step_collapse,
)
from workbench.metrics import mean_l2_error
from workbench.toy import GaussianMixture

PATH = AffinePath.rectified()


@pytest.fixture(scope="module")
def run():
    return flow_run(FlowSetting("exact", "rectified"), smoke=True)


def test_euler_is_ddim_on_the_rectified_path():
    """Peer: the workbench's DDIM on alpha = 1 - t, sigma = t is Euler in t (to rounding)."""
    model = exact_velocity(mixture(), PATH)
    x1 = prior_noise(PATH, 256, 2, seed=3)
    ours = euler(model, x1, 7)[-1]
    ddim = sample(model, x1, solver="ddim", steps=7, grid="time_uniform", t_start=1.0, t_end=0.0)
    assert torch.allclose(ours, ddim.x, atol=1e-12, rtol=0)


def test_one_euler_step_lands_on_the_mean_of_any_mixture():
    """v(x, 1) = x - E[x_0] on the rectified path, so x_1 - v(x_1, 1) = E[x_0] for every x_1
    (a mixture whose mean is not 0, unlike the ring's)."""
    target = GaussianMixture.unequal()
    x1 = prior_noise(PATH, 300, 2, seed=1)
    landed = euler(exact_velocity(target, PATH), x1, 1)[-1]
    assert torch.allclose(landed, target.mean().expand_as(landed), atol=1e-12, rtol=0)
    assert target.mean().norm() > 0.1


def test_euler_converges_at_order_one_to_the_single_gaussian_flow_map():
    """For one Gaussian N(mu, s^2 I) the exact flow is x_t = (1 - t) mu + sqrt((1-t)^2 s^2 +
    t^2) x_1, so x_0 = mu + s x_1; Euler's error halves when the steps double."""
    mu, s = torch.tensor([[1.0, -0.5]], dtype=torch.float64), 0.3
    single = GaussianMixture(mu, torch.full((1, 2), s, dtype=torch.float64), torch.ones(1))
    x1 = prior_noise(PATH, 200, 2, seed=2)
    exact = mu + s * x1
    errors = [mean_l2_error(euler(exact_velocity(single, PATH), x1, k)[-1], exact)
              for k in (20, 40, 80)]  # fmt: skip
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.allclose(ratios, 2.0, rtol=0.05), ratios


def test_the_exact_setting_has_no_model_error_and_collapses_at_one_step(run):
    curve = run.curve
    assert list(curve.steps) == list(flow_size(True).steps)
    assert run.model_error == 0
    np.testing.assert_array_equal(curve.l2, curve.step_error)  # the error is all steps'
    assert curve.l2.is_monotonic_decreasing
    collapse = one_step_collapse(smoke=True)
    assert collapse["max_distance_to_mean"] < 1e-12 and collapse["spread"] < 1e-12
    paths = run.paths[4]
    assert paths.shape == (5, 24, 2) and run.samples[4].shape == (flow_size(True).n_samples, 2)


def test_the_exact_coupling_costs_less_than_the_independent_one(run):
    """Liu et al.'s theorem: rectification does not raise a convex transport cost. The
    independent coupling's E|x_1 - x_0|^2 = E|x_1|^2 + E|x_0|^2 (x_0, x_1 independent)."""
    independent = 2.0 + float((mixture().sample(20000, seed=5) ** 2).sum(1).mean())
    assert run.transport_cost < 0.3 * independent
    assert run.straightness > 0.5  # the exact 1-RF's paths bend toward the modes


def test_nearest_steps_snaps_in_log_scale():
    offered = (1, 2, 4, 10, 50)
    assert [nearest_steps(s, offered) for s in (1, 1.41, 1.42, 3, 6.3, 6.4, 22, 23)] == [
        1, 1, 2, 4, 4, 10, 10, 50,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="steps must be positive"):
        nearest_steps(0, offered)


def test_only_computed_settings_are_offered():
    assert check_offered(FlowSetting()) == FlowSetting()
    with pytest.raises(ValueError, match="the exact velocity has no reflow rounds"):
        check_offered(FlowSetting("exact", "rectified", rounds=2))
    with pytest.raises(ValueError, match="unknown flow model 'nope'"):
        FlowSetting("nope")
