"""Notebook 06's study against closed forms: Euler on the exact flow, the one-step collapse,
the exact coupling's numbers, and the settings it offers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.diffusion.paths import AffinePath
from workbench.diffusion.sampling import prior_noise, sample
from workbench.flows.exact import exact_velocity
from workbench.flows.meanflow import train_meanflow
from workbench.flows.study import (
    MAX_ROUNDS,
    FlowSetting,
    check_offered,
    claim_metrics,
    euler,
    flow_run,
    flow_size,
    meanflow_jumps,
    mixture,
    nearest_steps,
    offered_settings,
    one_step_collapse,
    setting_for,
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
    paths = run.paths[5]
    assert paths.shape == (6, 24, 2) and run.samples[5].shape == (flow_size(True).n_samples, 2)


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
    assert check_offered(FlowSetting(), smoke=True) == FlowSetting()
    with pytest.raises(ValueError, match="the exact velocity has no reflow rounds"):
        check_offered(FlowSetting("exact", "rectified", rounds=2), smoke=True)
    with pytest.raises(ValueError, match="not computed on the VP"):
        check_offered(FlowSetting("exact", "vp"), smoke=True)
    with pytest.raises(ValueError, match="unknown flow model 'nope'"):
        FlowSetting("nope")


def test_the_settings_offered_are_every_round_per_density_and_meanflow():
    settings = offered_settings(smoke=True)
    trained = [s for s in settings if s.model == "trained"]
    assert {(s.rounds, s.density) for s in trained} == {
        (k, d) for k in range(MAX_ROUNDS + 1) for d in ("uniform", "u_shaped")
    }
    assert FlowSetting("meanflow", "rectified", 0, "logit_normal") in settings
    with pytest.raises(ValueError, match="trained on the rectified path only"):
        check_offered(FlowSetting("trained", "cosine"), smoke=False)
    with pytest.raises(ValueError, match="MeanFlow is trained once"):
        check_offered(FlowSetting("meanflow", "rectified", 1, "logit_normal"), smoke=True)


def test_a_density_does_not_apply_to_the_exact_velocity_nor_to_meanflow():
    assert setting_for("exact", "cosine", 0, "u_shaped") == FlowSetting("exact", "cosine")
    assert setting_for("meanflow", "rectified", 0, "u_shaped").density == "logit_normal"
    assert setting_for("trained", "rectified", 2, "u_shaped").density == "u_shaped"
    assert setting_for("trained", "rectified", 1, "u_shaped").label == "2-RF, " + (
        "U-shaped (a = 4; Lee et al. 2024)"
    )


def test_meanflow_jumps_end_where_its_sampler_does():
    """Peer: the study's jumps (which keep each state) against TrainedMeanFlow.sample."""
    flow = train_meanflow(mixture(), PATH, steps=3, batch=32, lr=1e-3, width=16, depth=2,
                          desc=None)  # fmt: skip
    x1 = prior_noise(PATH, 64, 2, seed=4)
    for steps in (1, 2):
        states = meanflow_jumps(flow, x1, steps)
        assert len(states) == steps + 1
        assert torch.allclose(states[-1], flow.sample(x1, steps), atol=1e-12, rtol=0)


def test_claim_metrics_read_the_rounds_they_name():
    rows = {f"{d}.r{k}": {"sw_nfe1": 2.0 / (k + 1) + (d == "u_shaped"), "straightness": 1.0 / 4**k,
                          "transport_cost": 1.0 - 0.1 * k}
            for d in ("uniform", "u_shaped") for k in range(MAX_ROUNDS + 1)}  # fmt: skip
    rows["meanflow"] = {"sw_nfe1": 1.5, "straightness": 0.0, "transport_cost": 0.0}
    metrics = claim_metrics(pd.DataFrame(rows).T)
    assert metrics["reflow.gain_nfe1"] == pytest.approx(2.0)
    assert metrics["reflow.straightness_ratio_r2"] == pytest.approx(0.25)
    assert metrics["reflow.cost_ratio_r3"] == pytest.approx(0.7 / 0.8)
    assert metrics["meanflow.over_2rf_nfe1"] == pytest.approx(1.5)
    assert metrics["u_shaped.over_uniform_r1_nfe1"] == pytest.approx(2.0)
