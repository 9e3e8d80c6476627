"""Schedules, grids, model-output conversions, the reference solution and `sample`'s contract."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.diffusion import (
    GRIDS,
    PREDICTIONS,
    DiffusionModel,
    EDMSchedule,
    ModelOutputError,
    VESchedule,
    VPSchedule,
    convert,
    get_schedule,
    make_grid,
    reference_solution,
    sample,
)
from workbench.toy import GaussianMixture

F64 = torch.float64
SCHEDULES = {
    "vp_linear_ddpm": VPSchedule.linear_ddpm(),
    "vp_linear": VPSchedule.linear(),
    "vp_cosine": VPSchedule.cosine(),
    "ve": VESchedule(),
    "edm": EDMSchedule(),
}


@pytest.fixture(params=list(SCHEDULES), ids=list(SCHEDULES))
def schedule(request):
    return SCHEDULES[request.param]


def noise(n: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_lambda_inverse_round_trips(schedule):
    ts = torch.linspace(schedule.t_min, schedule.t_max, 41, dtype=F64)
    torch.testing.assert_close(
        schedule.t_of_lambda(schedule.lambda_(ts)), ts, rtol=1e-10, atol=1e-12
    )
    lam = schedule.lambda_(ts)
    assert torch.all(torch.diff(lam) < 0), "lambda decreases as t grows"
    torch.testing.assert_close(lam, torch.log(schedule.alpha(ts) / schedule.sigma(ts)))


def test_vp_schedules_preserve_variance():
    for schedule in (SCHEDULES["vp_linear_ddpm"], SCHEDULES["vp_linear"], SCHEDULES["vp_cosine"]):
        ts = torch.linspace(schedule.t_min, schedule.t_max, 17, dtype=F64)
        torch.testing.assert_close(
            schedule.alpha(ts) ** 2 + schedule.sigma(ts) ** 2, torch.ones(17, dtype=F64)
        )


def test_discrete_schedule_hits_ddpm_alphas_cumprod_at_the_knots():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    schedule = VPSchedule.linear_ddpm()
    timesteps = torch.tensor([0, 1, 250, 999])
    t = VPSchedule.timestep_to_t(timesteps)
    torch.testing.assert_close(
        schedule.alpha(t) ** 2, alphas_cumprod[timesteps], rtol=1e-12, atol=0
    )


def test_continuous_linear_schedule_matches_its_sde():
    """log alpha(t) = -1/4 t^2 (b1 - b0) - 1/2 t b0 for the VP-SDE with beta(t) linear."""
    schedule = VPSchedule.linear(0.1, 20.0)
    t = torch.tensor([0.3, 0.9], dtype=F64)
    torch.testing.assert_close(schedule.log_alpha(t), -0.25 * t**2 * 19.9 - 0.05 * t)


def test_derivatives_match_finite_differences(schedule):
    t = torch.tensor((schedule.t_min + schedule.t_max) / 3, dtype=F64)
    d_alpha, d_sigma = schedule.derivatives(t)
    h = 1e-5 * max(1.0, float(t))
    torch.testing.assert_close(
        d_sigma, (schedule.sigma(t + h) - schedule.sigma(t - h)) / (2 * h), rtol=1e-5, atol=1e-8
    )
    torch.testing.assert_close(
        d_alpha, (schedule.alpha(t + h) - schedule.alpha(t - h)) / (2 * h), rtol=1e-5, atol=1e-8
    )


def test_get_schedule_by_name_and_unknown():
    assert isinstance(get_schedule("edm"), EDMSchedule)
    with pytest.raises(ValueError, match="unknown schedule 'vp'; choose from vp_linear_ddpm"):
        get_schedule("vp")


@pytest.mark.parametrize("grid", list(GRIDS))
def test_named_grids_run_from_start_to_end(schedule, grid):
    ts = make_grid(schedule, grid, 12)
    assert ts.shape == (13,)
    assert ts[0] == schedule.t_max and ts[-1] == schedule.t_min
    assert torch.all(torch.diff(ts) < 0)


def test_logsnr_grid_is_uniform_in_lambda(schedule):
    lam = schedule.lambda_(make_grid(schedule, "logsnr", 10))
    torch.testing.assert_close(
        torch.diff(lam), torch.full((10,), float(lam[1] - lam[0]), dtype=F64), rtol=1e-8, atol=1e-10
    )


def test_karras_grid_is_uniform_in_sigma_to_the_one_over_rho():
    schedule = EDMSchedule()
    ts = make_grid(schedule, "karras", 8, rho=7.0)
    spacing = torch.diff(ts ** (1 / 7))
    torch.testing.assert_close(spacing, spacing[:1].expand(8), rtol=1e-10, atol=1e-12)


def test_grid_errors_are_clear():
    schedule = VPSchedule.linear_ddpm()
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        make_grid(schedule, "logsnr", 0)
    with pytest.raises(ValueError, match="unknown grid 'log'; choose from time_uniform, logsnr"):
        make_grid(schedule, "log", 5)
    with pytest.raises(ValueError, match="strictly decreasing"):
        make_grid(schedule, [0.1, 0.5, 1.0], None)
    with pytest.raises(ValueError, match="steps=3 but the explicit grid has 2 steps"):
        make_grid(schedule, [1.0, 0.5, 0.1], 3)
    with pytest.raises(ValueError, match=r"t_start .* must be greater than t_end"):
        make_grid(schedule, "logsnr", 5, t_start=0.1, t_end=0.5)


@pytest.mark.parametrize("source", PREDICTIONS)
@pytest.mark.parametrize("target", PREDICTIONS)
def test_prediction_conversions_are_exact_inverses(schedule, source, target):
    mixture = GaussianMixture.two_class()
    model = mixture.denoiser(schedule)
    t = torch.tensor((schedule.t_min + schedule.t_max) / 2, dtype=F64)
    x = noise(16, seed=1) * float(schedule.sigma(t))
    as_source = convert(model(x, t), source="data", target=source, x=x, t=t, schedule=schedule)
    as_target = convert(as_source, source=source, target=target, x=x, t=t, schedule=schedule)
    back = convert(as_target, source=target, target="data", x=x, t=t, schedule=schedule)
    torch.testing.assert_close(back, model(x, t), rtol=1e-9, atol=1e-9)


def test_noise_and_score_predictions_are_the_mixtures_own():
    mixture = GaussianMixture.ring()
    schedule = VPSchedule.cosine()
    t = torch.tensor(0.4, dtype=F64)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    x = noise(32, seed=2)
    eps = mixture.denoiser(schedule).as_prediction("noise")(x, t)
    torch.testing.assert_close(eps, mixture.noise_prediction(x, alpha, sigma))
    score = mixture.denoiser(schedule).as_prediction("score")(x, t)
    torch.testing.assert_close(score, mixture.score(x, alpha, sigma))


def test_reference_solution_is_exact_for_a_gaussian(schedule):
    """One Gaussian: the ODE is linear, x_t = a_t mu + sqrt(a_t^2 s^2 + s_t^2) z."""
    gaussian = GaussianMixture([[0.7, -1.2]], [[0.3, 0.5]])
    x_T = noise(50, seed=3, scale=float(schedule.sigma(schedule.t_max)))
    ref = reference_solution(gaussian.denoiser(schedule), x_T)

    def spread(t):
        return torch.sqrt(schedule.alpha(t) ** 2 * gaussian.stds[0] ** 2 + schedule.sigma(t) ** 2)

    mu = gaussian.means[0]
    z = (x_T - schedule.alpha(schedule.t_max) * mu) / spread(schedule.t_max)
    exact = schedule.alpha(schedule.t_min) * mu + spread(schedule.t_min) * z
    assert (ref - exact).abs().max() < 1e-9


def test_reference_solution_is_cached():
    model = GaussianMixture.ring().denoiser(VPSchedule.linear_ddpm())
    x_T = noise(64, seed=4)
    first = reference_solution(model, x_T)
    first.add_(1.0)  # callers get copies: mutating one must not poison the cache
    torch.testing.assert_close(reference_solution(model, x_T), first - 1.0)


def test_sample_reports_what_it_did():
    model = GaussianMixture.ring().denoiser(VPSchedule.linear_ddpm())
    result = sample(model, noise(10), solver="dpmpp_2m", steps=6, trajectory=True)
    assert result.x.shape == (10, 2) and result.x.dtype == F64
    assert result.nfe == 6 and result.order == 2 and len(result.ts) == 7
    assert len(result.trajectory) == 7
    torch.testing.assert_close(result.trajectory[-1], result.x)
    zero = sample(model, noise(10), solver="ddim", steps=6, denoise_to_zero=True)
    assert zero.nfe == 7


def test_ddim_converges_to_the_reference_at_first_order():
    model = GaussianMixture([[0.5, -0.3], [-0.8, 0.6]], 0.6).denoiser(VPSchedule.linear_ddpm())
    x_T = noise(200, seed=5)
    ref = reference_solution(model, x_T)
    errors = [
        (sample(model, x_T, solver="ddim", steps=n).x - ref).norm(dim=1).mean().item()
        for n in (40, 80, 160)
    ]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(order - 1) < 0.15 for order in orders), orders


def test_sample_refuses_bad_requests():
    schedule = VPSchedule.linear_ddpm()
    model = GaussianMixture.ring().denoiser(schedule)
    x = noise(4)
    with pytest.raises(ValueError, match="unknown solver 'dpm'; choose from ddim"):
        sample(model, x, solver="dpm", steps=5)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        sample(model, x, solver="ddim", steps=0)
    with pytest.raises(ValueError, match="ddim supports order 1, got 2"):
        sample(model, x, solver="ddim", steps=5, order=2)
    with pytest.raises(ValueError, match="the model was built for VP linear DDPM"):
        sample(model, x, solver="ddim", steps=5, schedule=EDMSchedule())
    with pytest.raises(ValueError, match="unknown corrector 'unipc'"):
        sample(model, x, solver="dpmpp_2m", steps=5, corrector="unipc")

    def broken(x, t):
        return torch.where(t < 0.5, torch.nan, 0.0) * x

    nan_model = DiffusionModel(broken, "data", schedule, "broken model")
    with pytest.raises(ModelOutputError, match=r"broken model returned NaN or infinity at t=0\.4"):
        sample(nan_model, x, solver="ddim", steps=10, grid="time_uniform", t_end=0.1)


def test_conditional_denoiser_is_the_conditional_mixture():
    mixture = GaussianMixture.two_class()
    schedule = VPSchedule.linear()
    x, t = noise(8, seed=6), torch.tensor(0.3, dtype=F64)
    torch.testing.assert_close(
        mixture.denoiser(schedule, label=1)(x, t),
        mixture.condition(1).denoise(x, schedule.alpha(t), schedule.sigma(t)),
    )
