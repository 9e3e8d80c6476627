"""Guidance against exact ground truth: the tilted target, CFG and its corrections, exact
classifier guidance, autoguidance, Feynman-Kac SMC and SVDD, and diffusers as a peer.

Exact identities are asserted to 1e-8 or tighter; Monte Carlo statements to several of their
own standard errors or with a stated margin over seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from workbench.claims import claims_table, readable
from workbench.diffusion import (
    GUIDANCE,
    DiffusionModel,
    DynamicThreshold,
    GuidanceProblem,
    VPSchedule,
    cfg,
    classifier_guidance,
    fk_smc,
    guidance_study,
    sample,
    smc,
    svdd,
)
from workbench.diffusion import guidance_report as report
from workbench.diffusion.guidance import (
    GuidanceMethod,
    class_log_posterior_gradient,
    class_reward,
)
from workbench.diffusion.guidance_claims import guidance_claims
from workbench.diffusion.guidance_experiments import error_grid, sweep
from workbench.diffusion.guidance_metrics import identity_checks
from workbench.diffusion.guidance_study import Diverged, GuidanceStudy
from workbench.diffusion.guidance_targets import (
    boundary_component,
    run_mode_weights,
    target_mode_weights,
)
from workbench.diffusion.sampling import Grid
from workbench.diffusion.schedules import EDMSchedule
from workbench.memo import content_key
from workbench.metrics import (
    class_precision,
    mean_class_posterior,
    sliced_wasserstein,
    within_class_spread,
)
from workbench.toy import GaussianMixture
from workbench.toy.tilted import TiltedTarget, inflated

F64 = torch.float64
BASELINES = Path(__file__).parent / "baselines"
PROBLEM = GuidanceProblem.two_class()
MIXTURE, LABEL, SCHEDULE = PROBLEM.mixture, PROBLEM.label, PROBLEM.schedule
TIMES = (0.001, 0.05, 0.3, 0.7, 1.0)
REWARD = class_reward(MIXTURE, LABEL)


def noise(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def max_relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / (1 + b.abs())).max())


# ---------------------------------------------------------------- the exact tilted target
@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0, 3.0, 15.0])
def test_grid_normalizer_agrees_with_monte_carlo(scale):
    target = TiltedTarget.guidance(MIXTURE, LABEL, scale)
    grid = target.log_normalizer((-7.0, 7.0, -7.0, 7.0), 400)
    estimate, standard_error = target.log_normalizer_monte_carlo(200_000)
    assert abs(grid - estimate) < 4 * standard_error + 1e-9


def test_tilted_target_at_scales_one_and_zero_is_conditional_and_unconditional():
    x = noise(300, 1) * 2
    at_one = TiltedTarget.guidance(MIXTURE, LABEL, 1.0).log_unnormalized(x)
    at_zero = TiltedTarget.guidance(MIXTURE, LABEL, 0.0).log_unnormalized(x)
    assert torch.allclose(at_one, MIXTURE.condition(LABEL).log_prob(x), rtol=0, atol=1e-12)
    assert torch.allclose(at_zero, MIXTURE.log_prob(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_rejection_samples_have_the_targets_grid_moments(scale):
    """Exact samples: their mean and second moment match the grid integrals of the density."""
    target = TiltedTarget.guidance(MIXTURE, LABEL, scale)
    xs, ys, log_p = target.density_grid((-7.0, 7.0, -7.0, 7.0), 500)
    cell = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    p = torch.exp(log_p) * cell
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    mean = torch.stack([(p * grid_x).sum(), (p * grid_y).sum()])
    draws = target.sample(40_000, seed=3)
    standard_error = draws.std(0) / math.sqrt(len(draws))
    assert torch.all((draws.mean(0) - mean).abs() < 4 * standard_error)
    second = (p * (grid_x**2 + grid_y**2)).sum()
    squared = (draws**2).sum(1)
    assert abs(squared.mean() - second) < 4 * squared.std() / math.sqrt(len(draws))


def test_ratio_bounds_hold_for_every_target_and_noise_level():
    """The rejection sampler is exact only if p_a / p_b <= B everywhere."""
    x = noise(20_000, 2) * 2.5
    targets = [
        TiltedTarget.guidance(MIXTURE, LABEL, 3.0),
        TiltedTarget.autoguidance(MIXTURE, LABEL, 3.0, factor=1.5),
    ]
    for target in targets:
        for alpha, sigma in ((1.0, 1e-12), (0.8, 0.6), (0.1, 0.995)):
            noised = target.noised(alpha, sigma)
            log_ratio = noised.numerator.log_prob(x) - noised.denominator.log_prob(x)
            assert float(log_ratio.max()) <= noised.log_ratio_bound + 1e-12


def test_tilted_target_refuses_bad_input():
    with pytest.raises(ValueError, match="scale w must be a finite number >= 0"):
        TiltedTarget.guidance(MIXTURE, LABEL, -1.0)
    with pytest.raises(ValueError, match="factor must be a finite number >= 1"):
        inflated(MIXTURE, 0.5)
    with pytest.raises(ValueError, match="unknown label 7"):
        TiltedTarget.guidance(MIXTURE, 7, 2.0)


# ---------------------------------------------------------------- CFG and the registry
@pytest.mark.parametrize(
    "name, scale, plain",
    [
        (name, scale, plain)
        for name, method in GUIDANCE.items()
        for scale, plain in method.reduces_to.items()
    ],
)
def test_guided_model_reduces_to_the_plain_model(name, scale, plain):
    """Scale 1 is conditional and scale 0 unconditional (autoguidance: the bad model), in the
    model's outputs and in the samples of a 10-step solve, to 1e-8."""
    guided = GUIDANCE[name].model(PROBLEM, scale)
    model = PROBLEM.plain_model(plain)
    x = noise(256, 0)
    for t in TIMES:
        ours = guided.as_prediction("noise")(x, t)
        assert max_relative(ours, model.as_prediction("noise")(x, t)) < 1e-8
    x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * x
    ours = sample(guided, x_T, solver="dpmpp_2m", steps=10).x
    assert (ours - sample(model, x_T, solver="dpmpp_2m", steps=10).x).abs().max() < 1e-8


@pytest.mark.parametrize("scale", [0.0, 0.5, 3.0, 7.5, 15.0])
def test_noise_and_data_forms_are_the_same_model(scale):
    noise_form = cfg(PROBLEM.model_c, PROBLEM.model_u, scale, form="noise")
    data_form = cfg(PROBLEM.model_c, PROBLEM.model_u, scale, form="data")
    x = noise(256, 4)
    for t in TIMES:
        assert max_relative(data_form.as_prediction("noise")(x, t), noise_form(x, t)) < 1e-10
    x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * x
    a = sample(noise_form, x_T, solver="unipc_bh2", steps=12).x
    b = sample(data_form, x_T, solver="unipc_bh2", steps=12).x
    assert (a - b).abs().max() < 1e-10


def test_guidance_rescale_restores_the_conditional_rms():
    x, t = noise(256, 5), torch.tensor(0.4, dtype=F64)
    plain = cfg(PROBLEM.model_c, PROBLEM.model_u, 6.0, form="data")(x, t)
    full = cfg(PROBLEM.model_c, PROBLEM.model_u, 6.0, form="data", rescale=1.0)(x, t)
    half = cfg(PROBLEM.model_c, PROBLEM.model_u, 6.0, form="data", rescale=0.5)(x, t)
    conditional = PROBLEM.model_c(x, t)

    def rms(v):
        return torch.sqrt((v**2).mean(1))

    assert torch.allclose(rms(full), rms(conditional), rtol=1e-12, atol=0)
    assert torch.allclose(half, 0.5 * full + 0.5 * plain, rtol=1e-12, atol=1e-14)
    cosine = (full * plain).sum(1) / (full.norm(dim=1) * plain.norm(dim=1))
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-12)  # direction kept


def test_guidance_interval_switches_on_sigma_over_alpha():
    interval = (0.28, 5.42)
    guided = cfg(PROBLEM.model_c, PROBLEM.model_u, 4.0, interval=interval)
    full = cfg(PROBLEM.model_c, PROBLEM.model_u, 4.0)
    conditional = PROBLEM.model_c.as_prediction("noise")
    x = noise(128, 6)
    inside = outside = 0
    for t in torch.linspace(SCHEDULE.t_min, SCHEDULE.t_max, 41, dtype=F64):
        level = float(SCHEDULE.sigma(t) / SCHEDULE.alpha(t))
        expected = full(x, t) if interval[0] < level <= interval[1] else conditional(x, t)
        inside += interval[0] < level <= interval[1]
        outside += not interval[0] < level <= interval[1]
        assert max_relative(guided(x, t), expected) < 1e-12
    assert inside > 5 and outside > 5  # both branches were exercised


def test_dynamic_threshold_keeps_x0_in_the_data_range():
    threshold = DynamicThreshold(2.0, 0.995)
    x0 = torch.tensor([[0.5, -1.0], [3.0, 1.0], [-8.0, 6.0], [1.9, 2.0]], dtype=F64)
    out = threshold(x0)
    assert float(out.abs().max()) <= 2.0 + 1e-12
    assert torch.equal(out[0], x0[0]) and torch.allclose(out[3], x0[3], atol=1e-15)
    # the per-sample quantile is torch.quantile's (linear interpolation)
    s = torch.clamp(torch.quantile(x0.abs(), 0.995, dim=1), min=2.0)[:, None]
    assert torch.allclose(out, torch.clamp(x0, -s, s) * 2.0 / s, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="percentile must be in"):
        DynamicThreshold(2.0, 1.5)


def test_dynamic_threshold_tames_few_step_solvers_at_large_scale():
    """The large-scale instability: 5 DPM-Solver++(2M) steps at w = 15 are ~20x worse than at
    w = 1; thresholding x0 to the data range keeps the few-step solve close to its own exact
    ODE solution."""
    study = GuidanceStudy(PROBLEM, n_samples=128, n_error=128)
    plain_1 = study.error("cfg", 1.0, "dpmpp_2m", 5)
    plain_15 = study.error("cfg", 15.0, "dpmpp_2m", 5)
    thresholded_15 = study.error("cfg_threshold", 15.0, "dpmpp_2m", 5)
    assert plain_15 > 10 * plain_1
    assert thresholded_15 < plain_15 / 4


def test_cfg_refuses_bad_input():
    with pytest.raises(ValueError, match="unknown form 'score'; choose from noise, data"):
        cfg(PROBLEM.model_c, PROBLEM.model_u, 2.0, form="score")
    with pytest.raises(ValueError, match=r"rescale \(phi\) must be in \[0, 1\]"):
        cfg(PROBLEM.model_c, PROBLEM.model_u, 2.0, rescale=2.0)
    with pytest.raises(ValueError, match="interval must be"):
        cfg(PROBLEM.model_c, PROBLEM.model_u, 2.0, interval=(3.0, 1.0))
    with pytest.raises(ValueError, match="finite number"):
        cfg(PROBLEM.model_c, PROBLEM.model_u, float("nan"))
    edm = GaussianMixture.two_class().denoiser(EDMSchedule())
    with pytest.raises(ValueError, match="different schedules"):
        cfg(PROBLEM.model_c, edm, 2.0)
    with pytest.raises(ValueError, match="unknown guidance method 'pag'; choose from cfg"):
        GUIDANCE["pag"]
    with pytest.raises(ValueError, match="fk_smc is a particle method"):
        GUIDANCE["fk_smc"].model(PROBLEM, 2.0)


@pytest.mark.parametrize("name", list(GUIDANCE))
def test_every_method_samples_finite_points_at_a_large_scale(name):
    x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * noise(200, 7)
    result = GUIDANCE[name].sample(PROBLEM, x_T, scale=7.5, solver="dpmpp_2m", steps=8)
    assert result.x.shape == (200, 2) and torch.isfinite(result.x).all()
    assert class_precision(result.x, MIXTURE, LABEL) > 0.95


# ---------------------------------------------------------------- exact classifier guidance
@pytest.mark.parametrize("t", TIMES)
def test_classifier_guidance_at_scale_one_is_the_conditional_score(t):
    """score_u + grad log p(c | x_t) (autograd through the posterior) = score_c (Bayes)."""
    x = noise(400, 8) * 1.5
    alpha, sigma = SCHEDULE.alpha(t), SCHEDULE.sigma(t)
    gradient = class_log_posterior_gradient(MIXTURE, LABEL, x, alpha, sigma)
    guided = MIXTURE.score(x, alpha, sigma) + gradient
    conditional = MIXTURE.condition(LABEL).score(x, alpha, sigma)
    assert max_relative(guided, conditional) < 1e-10
    model = classifier_guidance(MIXTURE, LABEL, SCHEDULE, 1.0).as_prediction("score")
    assert max_relative(model(x, t), conditional) < 1e-10


@pytest.mark.parametrize("scale", [3.0, 7.5])
def test_exact_classifier_guidance_equals_cfg_with_exact_models(scale):
    x = noise(300, 9)
    classifier = classifier_guidance(MIXTURE, LABEL, SCHEDULE, scale)
    free = cfg(PROBLEM.model_c, PROBLEM.model_u, scale)
    for t in TIMES:
        assert max_relative(classifier(x, t), free(x, t)) < 1e-10


def test_classifier_guidance_at_scale_one_samples_the_conditional():
    """Within Monte Carlo tolerance: mean (4 standard errors) and class precision."""
    x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * noise(4000, 10)
    model = classifier_guidance(MIXTURE, LABEL, SCHEDULE, 1.0)
    x = sample(model, x_T, solver="unipc_bh2", steps=40).x
    conditional = MIXTURE.condition(LABEL)
    standard_error = torch.sqrt(torch.diag(conditional.covariance()) / len(x))
    assert torch.all((x.mean(0) - conditional.mean()).abs() < 4 * standard_error)
    exact = class_precision(MIXTURE.sample(400_000, seed=11, label=LABEL), MIXTURE, LABEL)
    p = class_precision(x, MIXTURE, LABEL)
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / len(x))


def test_autoguidance_sharpens_the_class_without_leaving_it():
    x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * noise(2000, 12)
    spreads = [
        within_class_spread(
            GUIDANCE["autoguidance"].sample(PROBLEM, x_T, scale=w, steps=20).x, MIXTURE, LABEL
        )
        for w in (1.0, 2.0, 4.0)
    ]
    assert spreads[0] > spreads[1] > spreads[2]


# ---------------------------------------------------------------- Feynman-Kac SMC
def test_diffusion_integral_matches_closed_forms():
    grid = Grid.of(SCHEDULE, torch.linspace(SCHEDULE.t_max, SCHEDULE.t_min, 6, dtype=F64))
    for i in range(1, 6):  # VP: integral of beta dt = 2 log(alpha_i / alpha_{i-1})
        exact = 2 * math.log(float(grid.alphas[i] / grid.alphas[i - 1]))
        assert smc.diffusion_integral(grid, i) == pytest.approx(exact, rel=1e-12)
    edm = EDMSchedule()
    grid = Grid.of(edm, torch.tensor([80.0, 10.0, 1.0, 0.01], dtype=F64))
    for i in range(1, 4):  # alpha = 1: d sigma^2
        exact = float(grid.sigmas[i - 1] ** 2 - grid.sigmas[i] ** 2)
        assert smc.diffusion_integral(grid, i) == pytest.approx(exact, rel=1e-10)


def test_effective_sample_size_and_systematic_resampling():
    assert smc.effective_sample_size(torch.zeros(50, dtype=F64)) == pytest.approx(1.0)
    one_hot = torch.full((50,), -math.inf, dtype=F64)
    one_hot[3] = 0.0
    assert smc.effective_sample_size(one_hot) == pytest.approx(1 / 50)
    weights = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625], dtype=F64)
    index = smc.systematic_resample(torch.log(weights), torch.Generator().manual_seed(0))
    counts = torch.bincount(index, minlength=5)
    expected = len(weights) * weights  # systematic: each count is floor or ceil of N W_k
    assert torch.all(counts >= torch.floor(expected)) and torch.all(counts <= torch.ceil(expected))


@pytest.mark.parametrize("scale, model", [(1.0, "conditional"), (0.0, "unconditional")])
def test_fk_weights_are_constant_at_scales_zero_and_one(scale, model):
    """G ∝ w (w - 1) vanishes: no reweighting, no resampling, plain SDE sampling exactly."""
    x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * noise(300, 13)
    result = fk_smc(PROBLEM.model_c, PROBLEM.model_u, x_T, scale=scale, steps=30, seed=4)
    assert torch.all(result.log_weights == 0)
    assert torch.allclose(result.ess, torch.ones_like(result.ess), rtol=0, atol=1e-12)
    assert not result.resampled.any()
    plain = smc.sde_sample(PROBLEM.plain_model(model), x_T, steps=30, seed=4)
    assert (result.x - plain.x).abs().max() < 1e-12
    # SVDD with one candidate is the same plain SDE sampling
    one = svdd(PROBLEM.plain_model(model), x_T, reward=REWARD, candidates=1, steps=30, seed=4)
    assert (one.x - plain.x).abs().max() < 1e-12


def test_fk_weights_track_the_intermediate_tilted_target():
    """At an intermediate time (lambda = 0) the weighted particles have the mean of
    q_t(x | c)^w q_t(x)^(1-w); the unweighted CFG SDE particles do not."""
    scale = 3.0
    t_end = float(SCHEDULE.t_of_lambda(torch.tensor(0.0, dtype=F64)))
    alpha, sigma = float(SCHEDULE.alpha(t_end)), float(SCHEDULE.sigma(t_end))
    target = TiltedTarget.guidance(MIXTURE, LABEL, scale).noised(alpha, sigma)
    xs, ys, log_p = target.density_grid((-7.0, 7.0, -7.0, 7.0), 400)
    p = torch.exp(log_p) * float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    exact = torch.stack([(p * grid_x).sum(), (p * grid_y).sum()])
    x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * noise(20_000, 14)
    result = fk_smc(
        PROBLEM.model_c,
        PROBLEM.model_u,
        x_T,
        scale=scale,
        steps=100,
        t_end=t_end,
        ess_threshold=0.0,
        trajectory=True,
    )
    particles = result.trajectory[-1]  # before the final resampling
    weighted = (torch.softmax(result.log_weights, 0)[:, None] * particles).sum(0)
    unweighted = particles.mean(0)
    assert (unweighted - exact).norm() > 0.15
    assert (weighted - exact).norm() < 0.25 * (unweighted - exact).norm()


def test_smc_is_closer_to_the_tilted_target_than_cfg():
    """w = 3, 4,000 particles, 100 steps, three seeds: sliced Wasserstein to exact target draws.
    Every SMC run beats every plain-CFG run (SDE, same steps; and the ODE) by a factor 1/0.6.
    (Measured over 8 seeds: SMC 0.057-0.151, the SDE 0.283-0.302, the ODE ~0.46; with 2,000
    particles an occasional SMC run collapses onto a few heavy particles.)"""
    scale = 3.0
    target = TiltedTarget.guidance(MIXTURE, LABEL, scale).sample(4000, seed=15)
    model = cfg(PROBLEM.model_c, PROBLEM.model_u, scale)
    ours, plain = [], []
    for seed in range(3):
        x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * noise(4000, 20 + seed)
        result = fk_smc(PROBLEM.model_c, PROBLEM.model_u, x_T, scale=scale, steps=100, seed=seed)
        ours.append(sliced_wasserstein(result.x, target))
        sde = smc.sde_sample(model, x_T, steps=100, seed=seed)
        plain.append(sliced_wasserstein(sde.x, target))
        ode = sample(model, x_T, solver="unipc_bh2", steps=40)
        plain.append(sliced_wasserstein(ode.x, target))
        assert result.nfe == 101 and result.ess.shape == (100,) and result.resampled.any()
    assert max(ours) < 0.6 * min(plain), (ours, plain)


def test_particle_samplers_refuse_bad_input():
    x_T = noise(10, 0)
    with pytest.raises(ValueError, match=r"ess_threshold must be in \[0, 1\]"):
        fk_smc(PROBLEM.model_c, PROBLEM.model_u, x_T, scale=2.0, steps=5, ess_threshold=2.0)
    with pytest.raises(ValueError, match="scale must be a finite number >= 0"):
        fk_smc(PROBLEM.model_c, PROBLEM.model_u, x_T, scale=-1.0, steps=5)
    with pytest.raises(ValueError, match="N >= 2 particles"):
        fk_smc(PROBLEM.model_c, PROBLEM.model_u, x_T[0], scale=2.0, steps=5)
    with pytest.raises(ValueError, match="candidates must be an integer >= 1"):
        svdd(PROBLEM.model_c, x_T, reward=class_reward(MIXTURE, LABEL), candidates=0, steps=5)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        svdd(PROBLEM.model_c, x_T, reward=class_reward(MIXTURE, LABEL), candidates=2, steps=0)


# ---------------------------------------------------------------- SVDD
def test_svdd_precision_rises_with_the_number_of_candidates():
    """From the unconditional model (w = 0), a non-differentiable reward: the exact posterior's
    class indicator of x0_hat. M = 1 is plain sampling (precision ~ the class prior); by M = 8
    it saturates near 1."""
    x_T = float(SCHEDULE.sigma(SCHEDULE.t_max)) * noise(1000, 16)
    reward = class_reward(MIXTURE, LABEL)
    precisions = []
    for m in (1, 2, 4, 8):
        result = svdd(PROBLEM.model_u, x_T, reward=reward, candidates=m, steps=40, seed=1)
        assert result.nfe == 1 + m * 39 and result.chosen.shape == (40, 1000)
        assert int(result.chosen.max()) < m
        precisions.append(class_precision(result.x, MIXTURE, LABEL))
    assert precisions[0] == pytest.approx(0.5, abs=0.05)
    assert precisions[0] + 0.05 < precisions[1] < precisions[2] - 0.05 < precisions[3] - 0.05
    soft = svdd(PROBLEM.model_u, x_T, reward=reward, candidates=4, steps=40, temperature=0.1)
    assert class_precision(soft.x, MIXTURE, LABEL) > precisions[0] + 0.1


# ---------------------------------------------------------------- metrics
def test_class_metrics_on_exact_samples():
    conditional = MIXTURE.sample(100_000, seed=17, label=LABEL)
    posterior = MIXTURE.class_posterior(conditional, 1.0, 0.0)[:, 1]
    assert mean_class_posterior(conditional, MIXTURE, LABEL) == pytest.approx(
        float(posterior.mean()), abs=1e-12
    )
    assert class_precision(conditional, MIXTURE, LABEL) == pytest.approx(
        float((posterior > 0.5).to(F64).mean()), abs=1e-12
    )
    # one isotropic Gaussian class: RMS distance to the centroid is sqrt(2) std
    single = GaussianMixture([[0.0, 0.0], [5.0, 0.0]], [0.3, 0.3], labels=[0, 1])
    draws = single.sample(50_000, seed=18, label=0)
    assert within_class_spread(draws, single, 0) == pytest.approx(0.3 * math.sqrt(2), rel=0.01)
    with pytest.raises(ValueError, match="unknown label 3"):
        class_precision(draws, single, 3)
    with pytest.raises(ValueError, match="fewer than 2"):
        within_class_spread(draws, single, 1)


# ---------------------------------------------------------------- the study
def test_a_diverging_solve_is_reported_and_the_sweep_keeps_going():
    def broken(problem, scale):
        def fn(x, t):
            broken = scale > 2 and float(t) < 0.5
            return x * math.nan if broken else problem.model_c.fn(x, t)

        return DiffusionModel(fn, "data", problem.schedule, f"broken w={scale}")

    method = GuidanceMethod("broken", "broken", "test", build=broken)
    with GUIDANCE.temporarily("broken", method):
        study = GuidanceStudy(PROBLEM, n_samples=64, n_error=16)
        run = study.run("broken", 3.0, "ddim", 4)
        assert isinstance(run, Diverged) and "NaN or infinity" in run.message
        frame = sweep(study, "broken", "ddim", 4, scales=(1.0, 3.0), distances=False)
        assert math.isnan(frame.loc[3.0, "precision"]) and frame.loc[1.0, "precision"] > 0.9
        assert math.isnan(study.error("broken", 3.0, "ddim", 4))


def test_study_errors_fall_with_nfe_and_v3_uses_its_own_statistics():
    study = GuidanceStudy(PROBLEM, n_samples=128, n_error=128, ems_lambdas=30, ems_samples=64)
    grid = error_grid(study, "cfg", "dpmpp_2m", scales=(1.0, 7.5), nfes=(5, 20, 50))
    assert grid.shape == (2, 3) and (grid.diff(axis=1).iloc[:, 1:] < 0).all().all()
    assert study.error("cfg", 7.5, "dpm_solver_v3", 20) < study.error("cfg", 7.5, "ddim", 20)
    assert (study.key, "cfg", 7.5) in guidance_study.STATISTICS
    with pytest.raises(ValueError, match="has no ODE solution"):
        study.error("fk_smc", 3.0, "ddim", 10)


# ---------------------------------------------------------------- diffusers as a peer
def test_diffusers_agrees_on_the_cfg_model_and_on_dynamic_thresholding():
    """The same CFG model through diffusers' schedulers; and our thresholded model against
    diffusers' DPMSolverMultistepScheduler(thresholding=True), which thresholds x0 inside
    the scheduler with Imagen's R = 1."""
    import diffusers

    from workbench.diffusion.peers import (
        T_MIN_DIFFUSERS,
        crosscheck,
        diffusers_times,
        run_diffusers,
    )

    assert isinstance(SCHEDULE, VPSchedule)
    x_T = noise(128, 19)
    model = cfg(PROBLEM.model_c, PROBLEM.model_u, 7.5)
    agreement = crosscheck(model, x_T, 10)
    assert agreement["max |ours - diffusers|"].max() < 1e-5

    def make():
        return diffusers.DPMSolverMultistepScheduler(
            final_sigmas_type="sigma_min",
            thresholding=True,
            dynamic_thresholding_ratio=0.9,
            sample_max_value=1e6,
        )

    theirs = run_diffusers(make(), model, x_T, 10, image_like=True)
    thresholded = cfg(PROBLEM.model_c, PROBLEM.model_u, 7.5, threshold=DynamicThreshold(1.0, 0.9))
    grid = [*diffusers_times(make(), 10), T_MIN_DIFFUSERS]
    ours = sample(thresholded, x_T, solver="dpmpp_2m", steps=None, grid=grid).x
    unthresholded = sample(model, x_T, solver="dpmpp_2m", steps=None, grid=grid).x
    assert (ours - theirs).abs().max() < 1e-5
    assert (unthresholded - theirs).abs().max() > 0.1  # thresholding did act


def test_identity_checks_and_class_modes_of_the_study():
    assert identity_checks(PROBLEM).max() < 1e-10
    study = GuidanceStudy(PROBLEM, n_samples=400, n_error=16)
    assert boundary_component(PROBLEM) == 0  # class 1's narrow component at (0.4, 0.6)
    weights = run_mode_weights(study, "cfg", 7.5, "dpmpp_2m", 20)
    target = target_mode_weights(study, "cfg", 7.5)
    assert float(weights.sum()) == pytest.approx(1.0) and float(target.sum()) == pytest.approx(1.0)
    # CFG at w = 7.5 empties the narrow component that the tilted target keeps
    assert float(weights[0]) < 0.02 and float(target[0]) > 0.2


def test_guided_models_and_studies_key_memos_by_content():
    a, b = GUIDANCE["cfg"].model(PROBLEM, 3.0), GUIDANCE["cfg"].model(PROBLEM, 3.0)
    assert a is not b and content_key(a) == content_key(b) is not None
    assert content_key(a) != content_key(GUIDANCE["cfg"].model(PROBLEM, 3.5))
    assert content_key(a) != content_key(GUIDANCE["cfg_interval"].model(PROBLEM, 3.0))
    first = GuidanceStudy(PROBLEM, n_samples=32, n_error=8)
    second = GuidanceStudy(GuidanceProblem.two_class(), n_samples=32, n_error=8)
    assert first.key == second.key != GuidanceStudy(PROBLEM, n_samples=32, n_error=8, seed=1).key
    assert first.run("cfg", 2.0, "ddim", 3) is second.run("cfg", 2.0, "ddim", 3)


def test_guidance_registry_labels_and_choices():
    assert GUIDANCE.label("cfg") == "classifier-free guidance (CFG)"
    assert set(GUIDANCE.options().values()) == set(GUIDANCE)
    with pytest.raises(
        ValueError, match="unknown target 'pag'; choose from guidance, autoguidance"
    ):
        PROBLEM.target("pag", 2.0)
    with pytest.raises(ValueError, match="unknown form 'score'; choose from noise, data"):
        classifier_guidance(MIXTURE, LABEL, SCHEDULE, 2.0, form="score")


def test_v3_statistics_reach_the_solver_through_its_options(monkeypatch):
    study = GuidanceStudy(PROBLEM, n_samples=32, n_error=8, ems_lambdas=10, ems_samples=16)
    seen = []
    original = GuidanceMethod.sample

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("solver_options"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GuidanceMethod, "sample", spy)
    study.run("cfg", 2.5, "dpm_solver_v3", 4)
    study.run("cfg", 2.5, "ddim", 4)
    assert seen[0]["ems"] is study.ems("cfg", 2.5) and seen[1] is None


# ---------------------------------------------------------------- what the notebook says
def test_first_visit_estimates_count_what_is_missing_and_vanish_once_stored():
    study = GuidanceStudy(PROBLEM, n_samples=48, n_error=8, ems_lambdas=10, ems_samples=16, seed=5)
    runs, errors = [("cfg", 2.5, "ddim", 4)], [("cfg", 2.5, "ddim", 4)]
    assert study.seconds_to_compute(runs, errors) > 0
    plain = study.seconds_to_compute([("cfg", 2.5, "dpmpp_2m", 4)])
    # DPM-Solver-v3 first computes the guided model's statistics: a larger estimate
    assert study.seconds_to_compute([("cfg", 2.5, "dpm_solver_v3", 4)]) > plain > 0
    study.run("cfg", 2.5, "ddim", 4)
    study.error("cfg", 2.5, "ddim", 4)
    assert study.seconds_to_compute(runs, errors) == 0
    # a particle method's run is keyed by its own sampler, whatever the solver asked for
    study.run("fk_smc", 2.5, "ddim", 4)
    assert study.seconds_to_compute([("fk_smc", 2.5, "dpm_solver_v3", 4)]) == 0


def test_sweeps_show_one_final_progress_line_by_label_when_headless(monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_HEADLESS", "1")
    study = GuidanceStudy(PROBLEM, n_samples=48, n_error=8)
    sweep(study, "cfg_rescale", "dpmpp_2m", 4, (0.0, 1.0), distances=False, progress=True)
    error_grid(study, "cfg", "ddim", (1.0,), (3,), progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        "CFG + guidance rescale (φ = 0.7): 2/2",
        "classifier-free guidance (CFG), DDIM: 1/1",
    ]
    sweep(study, "cfg", "dpmpp_2m", 4, (0.0,), distances=False)  # the explorer's: no bar
    assert capsys.readouterr().out == ""


def words(text: str) -> str:
    """A Markdown paragraph on one line (its line breaks are only source layout)."""
    return " ".join(text.split())


def _smc_table(seeds) -> pd.DataFrame:
    rows = {
        (w, seed): {"FK-SMC": 0.1 * w, "CFG SDE": 0.2 * w, "CFG ODE": 0.3 * w,
                    "exact draws": 0.03, "min ESS": 0.5, "resamplings": 3}
        for w in (3.0, 7.5) for seed in seeds
    }  # fmt: skip
    return pd.DataFrame(rows).T.rename_axis(["w", "seed"])


@pytest.mark.parametrize("seeds, counted", [((0,), "1 seed"), ((0, 1, 2), "3 seeds")])
def test_smc_sentence_counts_seeds_in_words_and_writes_numbers_readably(seeds, counted):
    text = words(report.smc_against_cfg(_smc_table(seeds), 4000, 100))
    assert f"mean over {counted})" in text and "seed(s)" not in text
    assert "4,000 particles" in text and "FK-SMC is 0.3 from the target" in text
    assert "against 0.6 for the unweighted SDE and 0.9 for the ODE (floor 0.03)" in text


def test_report_sentences_name_methods_and_solvers_by_label():
    growth = pd.DataFrame(
        {"w=7.5": [0.2, 0.5], "w=7.5, thresholded": [0.25, 0.09], "growth w=1 to max": [1.3, 15.0]},
        index=["ddim", "dpmpp_2m"],
    )
    grids = {("cfg", "dpm_solver_v3"): pd.DataFrame({10: [0.01, 0.138]}, index=[1.0, 7.5])}
    text = words(report.solver_error_growth(grids, growth, 7.5, 2.5e-7))
    assert "from 1.3 (DDIM) to 15 (DPM-Solver++(2M))" in text
    assert "(dpmpp_2m)" not in text and f"to {readable(2.5e-7)}." in text
    assert (
        report.ode_error_floor(0.013, (1.0, 7.5), 0.44)
        .strip()
        .startswith(
            "DPM-Solver++(2M)'s largest error in 50 steps over $w$ = 1 and 7.5 is\n0.013, far under"
        )
    )
    study = GuidanceStudy(PROBLEM, n_samples=48, n_error=8)
    assert report.setting(study) == (
        "Schedule: VP linear DDPM (1000 steps). Every guided solve starts from the same 48 noise "
        "draws and samples class 1 of a 2-D mixture of 4 Gaussian components in 2 classes."
    )


def _baseline_values(profile: str) -> dict:
    baseline = json.loads((BASELINES / "02_guidance_scales.json").read_text())
    return {name: entry["value"] for name, entry in baseline["profiles"][profile].items()}


@pytest.mark.parametrize("profile, top", [("full", 15.0), ("smoke", 7.5)])
def test_the_claims_read_recorded_metrics_and_their_verdicts_on_the_baselines(profile, top):
    values = _baseline_values(profile)
    claims = guidance_claims(top)
    for claim in claims:
        assert set(claim.metrics()) <= set(values), claim.claim
        assert "arXiv:" in claim.paper
    table = claims_table(claims, values)
    refuted = table.loc[table["verdict"] == "does not hold", "paper"].tolist()
    # DDIM beats DPM-Solver++(2M) at the largest scale in 10 NFE, against Lu et al.'s claim
    assert refuted == ["Lu et al. 2022, arXiv:2211.01095"]
    identity = values["identities.max_relative_difference"]
    assert table.loc[1, "measured"] == f"{readable(identity)} < {readable(1e-10)}"
    assert (table["verdict"] == "holds").sum() == len(claims) - 1
