"""The library refuses nonsense instead of computing it (issue 11, part 7).

Each case failed before its fix: it computed a silent NaN, an empty result or a huge number,
or raised a traceback that blamed the wrong thing. Now it is a ValueError whose one-line
message names the argument, the bad value and what is allowed, or, for a blow-up during a
solve or a training run, a reported divergence.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.diffusion import EDMSchedule, VESchedule, VPSchedule, make_grid, sample
from workbench.diffusion.grids import MAX_STEPS
from workbench.diffusion.guidance_metrics import class_metrics, metrics
from workbench.diffusion.guidance_study import (
    DIVERGED_ABOVE,
    METRIC_NAMES,
    Diverged,
    GuidanceStudy,
    data_radius,
)
from workbench.diffusion.sampling import ModelOutputError, reference_solution
from workbench.diffusion.smc import fk_smc
from workbench.optim.problems import KroneckerQuadratic
from workbench.optim.race import lr_sweep, race, sweep_cell, train
from workbench.optim.registry import OPTIMIZERS, make_optimizer
from workbench.toy import GaussianMixture

F64 = torch.float64
MIXTURE = GaussianMixture.two_class()
SCHEDULE = VPSchedule.linear_ddpm()
MODEL = MIXTURE.denoiser(SCHEDULE)


def noise(n: int = 16, dim: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ sample: x_T, ends, steps
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("solver", ["ddim", "dpmpp_2m", "dpm_solver_v3"])
def test_sample_blames_a_non_finite_x_T_not_the_model(bad, solver):
    x_T = noise()
    x_T[3, 1] = bad
    with pytest.raises(ValueError, match=r"x_T contains (NaN|inf|-inf) at index \(3, 1\)") as exc:
        sample(MODEL, x_T, solver=solver, steps=5)
    assert not isinstance(exc.value, ModelOutputError)
    assert "model" not in one_line(exc)


def test_reference_solution_and_particles_check_x_T_too():
    x_T = noise()
    x_T[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"x_T contains NaN at index \(0, 0\)"):
        reference_solution(MODEL, x_T)
    model_c = MIXTURE.denoiser(SCHEDULE, 1)
    with pytest.raises(ValueError, match=r"x_T contains NaN at index \(0, 0\)"):
        fk_smc(model_c, MODEL, x_T, scale=2.0, steps=5)


@pytest.mark.parametrize(
    ("ends", "name", "value"),
    [
        ({"t_end": -0.1}, "t_end", "-0.1"),
        ({"t_end": math.nan}, "t_end", "nan"),
        ({"t_start": 5.0}, "t_start", "5"),
        ({"t_start": math.inf}, "t_start", "inf"),
        ({"t_start": 0.0}, "t_start", "0"),
    ],
)
def test_sample_refuses_ends_outside_the_schedule(ends, name, value):
    # before: t_end < 0 gave "model returned NaN" at t=nan; t_start = 5 extrapolated silently
    with pytest.raises(ValueError, match=rf"{name}={value} is outside the schedule's range") as exc:
        sample(MODEL, noise(), solver="ddim", steps=5, **ends)
    assert "[0.001, 1]" in one_line(exc)


def test_reference_solution_refuses_ends_outside_the_schedule():
    with pytest.raises(ValueError, match=r"t_end=-0\.5 is outside"):
        reference_solution(MODEL, noise(), t_end=-0.5)


@pytest.mark.parametrize("steps", [0, -3, 2.5, None, "5", True])
def test_sample_refuses_a_non_integer_or_non_positive_step_count(steps):
    with pytest.raises(ValueError, match=r"steps must be an integer >= 1, got") as exc:
        sample(MODEL, noise(), solver="ddim", steps=steps)
    assert repr(steps) in one_line(exc)


def test_sample_refuses_more_steps_than_the_documented_cap():
    # before: 10**9 steps was accepted and ran for days
    assert MAX_STEPS == 10_000
    with pytest.raises(
        ValueError, match=r"steps must be at most MAX_STEPS = 10000, got 1000000000"
    ):
        sample(MODEL, noise(), solver="ddim", steps=10**9)
    with pytest.raises(ValueError, match="explicit grid's steps must be at most MAX_STEPS"):
        make_grid(SCHEDULE, np.linspace(1.0, 0.001, MAX_STEPS + 2), None)
    assert "MAX_STEPS" in sample.__doc__
    assert len(make_grid(SCHEDULE, "logsnr", MAX_STEPS)) == MAX_STEPS + 1  # the cap itself is fine


def test_integral_float_steps_still_work():
    assert sample(MODEL, noise(), solver="ddim", steps=4.0).nfe == 4


# ------------------------------------------------------------------ explicit grids and schedules
def test_explicit_grids_name_the_bad_time():
    with pytest.raises(ValueError, match=r"strictly decreasing .* got t\[1\]=0.5 <= t\[2\]=0.7"):
        make_grid(SCHEDULE, [1.0, 0.5, 0.7, 0.01], None)
    with pytest.raises(ValueError, match=r"non-finite time t\[1\]=nan"):
        make_grid(SCHEDULE, [1.0, math.nan, 0.01], None)
    # before: extrapolated beyond t_max, or NaN samples below t = 0
    with pytest.raises(ValueError, match=r"explicit grid's t_start=3 is outside"):
        make_grid(SCHEDULE, [3.0, 0.5, 0.01], None)
    with pytest.raises(ValueError, match=r"explicit grid's t_end=-0\.01 is outside"):
        make_grid(SCHEDULE, [1.0, 0.5, -0.01], None)
    # an explicit grid may still end at t = 0 (EDM's final step to sigma = 0)
    assert make_grid(EDMSchedule(), [80.0, 1.0, 0.0], None)[-1] == 0.0


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: VESchedule(sigma_min=1.0, sigma_max=0.5), r"sigma_min \(1.0\) must be smaller"),
        (lambda: VESchedule(sigma_min=-0.1), r"sigma_min must be a finite number in \(0, inf\)"),
        (lambda: EDMSchedule(sigma_max=math.nan), "sigma_max must be a finite number"),
        (lambda: VPSchedule.linear(beta_min=-1.0), r"beta_min must be a finite number in \[0"),
        (lambda: VPSchedule.linear(beta_min=5.0, beta_max=1.0), r"beta_max \(1.0\) must be >="),
        (lambda: VPSchedule.cosine(t_max=1.5), r"t_max must be a finite number in \(0, 1\)"),
        (lambda: VPSchedule.discrete(torch.tensor([0.1, 1.2, 0.3])), r"betas\[1\]=1.2"),
        (lambda: VPSchedule.discrete(torch.tensor([0.1, -0.2])), r"in \(0, 1\), got betas\[1\]"),
    ],
)
def test_schedules_refuse_nonsense_parameters(build, message):
    # before: NaN alphas (betas >= 1), or a VE schedule whose sigma falls with t
    with pytest.raises(ValueError, match=message):
        build()


def test_a_sample_of_the_wrong_dimension_names_the_shape():
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\), got \(10, 3\)"):
        sample(MODEL, noise(10, 3), solver="ddim", steps=5)


def test_an_unknown_solver_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown solver 'foo'; choose from ddim, dpmpp_2m"):
        sample(MODEL, noise(), solver="foo", steps=5)


def test_a_solve_that_blows_up_is_called_a_divergence_not_a_model_fault():
    def explode(x, t):  # finite for finite x; x0 = (x - sigma eps) / alpha overflows
        return torch.full_like(x, 1e308) if float(t) > 0.5 else x.clone()

    from workbench.diffusion import DiffusionModel

    model = DiffusionModel(explode, "noise", SCHEDULE, "exploding")
    with pytest.raises(ModelOutputError, match="the solve diverged: the sample was already"):
        sample(model, noise(), solver="ddim", steps=10)


# ------------------------------------------------------------------ guidance blow-ups
@pytest.fixture(scope="module")
def study():
    return GuidanceStudy.two_class(n_samples=200, n_error=32, ems_lambdas=10, ems_samples=32)


@pytest.mark.parametrize("solver", ["dpmpp_2m", "heun"])
def test_an_absurd_guidance_scale_is_reported_as_diverged(study, solver):
    # before: samples at |x| ~ 1e4-1e5 came back as a result, sliced W 1.1e4 as a metric
    run = study.run("cfg", 1e6, solver, 10)
    assert isinstance(run, Diverged)
    assert run.message.startswith("diverged: a sample reached")
    found = metrics(study, "cfg", 1e6, solver, 10)
    assert set(found) == set(METRIC_NAMES)
    assert all(math.isnan(v) for v in found.values())  # the notebook's "diverged", no number
    assert math.isnan(study.error("cfg", 1e6, solver, 10))


def test_a_diverged_guided_solve_never_reaches_the_metric_functions(study, monkeypatch):
    import workbench.diffusion.guidance_metrics as guidance_metrics
    import workbench.diffusion.guidance_study as guidance_study

    def refuse(*args, **kwargs):
        raise AssertionError("a metric was computed on diverged samples")

    for name in ("sliced_wasserstein", "mmd", "class_precision"):
        monkeypatch.setattr(guidance_metrics, name, refuse)
    monkeypatch.setattr(guidance_study, "mean_l2_error", refuse)
    metrics(study, "cfg", 3e6, "dpmpp_2m", 10)
    class_metrics(study, "cfg", 3e6, "dpmpp_2m", 10)
    study.error("cfg", 3e6, "dpmpp_2m", 10)


def test_ordinary_scales_stay_results(study):
    # the notebook's scales (w <= 15) are nowhere near the divergence bound
    bound = DIVERGED_ABOVE * data_radius(study.problem.mixture)
    for scale in (0.0, 1.0, 7.5, 15.0):
        run = study.run("cfg", scale, "dpmpp_2m", 10)
        assert not isinstance(run, Diverged)
        assert float(run.x.abs().max()) < bound / 100


# ------------------------------------------------------------------ the mixture
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"means": [[0.0, 0.0], [math.nan, 1.0]]},
            r"means must be finite; got means\[1, 0\] = nan",
        ),
        (
            {"means": [[0.0, 0.0], [1.0, math.inf]]},
            r"means must be finite; got means\[1, 1\] = inf",
        ),
        ({"stds": [0.5, -0.1]}, r"stds must be positive and finite; got stds\[1, 0\] = -0.1"),
        ({"stds": [0.5, math.nan]}, r"stds must be positive and finite; got stds\[1, 0\] = nan"),
        ({"weights": [1.2, -0.2]}, r"weights must be non-negative and finite; got weights\[1\]"),
        ({"weights": [0.0, 0.0]}, "weights must not all be zero"),
        ({"labels": [0.5, 1]}, r"labels must be integers, got \[0.5, 1.0\]"),
    ],
)
def test_mixture_refuses_invalid_parameters(kwargs, message):
    # before: NaN or infinite means were accepted and every density was NaN
    arguments = {"means": [[0.0, 0.0], [1.0, 1.0]], "stds": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**arguments)


def test_mixture_weights_are_still_normalized_as_documented():
    assert torch.equal(
        GaussianMixture([[0, 0], [1, 1]], 0.5, [1.0, 3.0]).weights,
        torch.tensor([0.25, 0.75], dtype=F64),
    )


@pytest.mark.parametrize(
    ("alpha", "sigma"), [(0.0, 0.0), (1.0, -0.5), (1.0, math.nan), (math.nan, 0.5), (-1.0, 0.5)]
)
@pytest.mark.parametrize("method", ["score", "denoise", "noised_log_prob", "responsibilities"])
def test_mixture_refuses_nonsense_noise_levels(method, alpha, sigma):
    # before: NaN everywhere (alpha = sigma = 0, NaN) or an answer for sigma < 0
    with pytest.raises(ValueError, match="alpha and sigma must be finite with alpha >= 0") as exc:
        getattr(MIXTURE, method)(noise(5), alpha, sigma)
    assert f"sigma={sigma:g}" in one_line(exc)


def test_mixture_refuses_a_negative_noise_level_among_per_point_levels():
    sigma = torch.tensor([0.1, 0.2, -0.3, 0.1, 0.1], dtype=F64)
    with pytest.raises(ValueError, match=r"got alpha=1, sigma=-0\.3"):
        MIXTURE.score(noise(5), torch.ones(5, dtype=F64), sigma)
    with pytest.raises(ValueError, match="sigma=-1"):
        MIXTURE.noised(1.0, -1.0)


def test_mixture_limits_that_make_sense_still_work():
    assert torch.isfinite(MIXTURE.score(noise(5), 1.0, 0.0)).all()  # clean data
    assert torch.isfinite(MIXTURE.denoise(noise(5), 0.0, 1.0)).all()  # pure noise
    with pytest.raises(ValueError, match=r"n must be a non-negative integer, got 2\.5"):
        MIXTURE.sample(2.5)


# ------------------------------------------------------------------ optimizers
QUADRATIC = KroneckerQuadratic(kappa=100.0, rotated=True)


@pytest.mark.parametrize("lr", [math.nan, math.inf, -1.0])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_every_optimizer_refuses_a_nan_or_infinite_learning_rate(optimizer, lr):
    # before: torch's SGD trained at lr=nan, SGD/Adam/Adafactor at lr=inf (Adafactor even
    # "converged"), each reported as a run
    with pytest.raises(ValueError, match=f"lr must be a finite number >= 0, got {lr!r}"):
        train(QUADRATIC, optimizer, lr, 5)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        make_optimizer(optimizer, QUADRATIC.init_params(), lr)


def test_race_refuses_a_nan_learning_rate_before_any_run():
    with pytest.raises(ValueError, match="the learning rate of sgd must be a finite number >= 0"):
        race(QUADRATIC, {"adam": 1e-3, "sgd": math.nan}, 5, progress=False)


class NaNGradient(KroneckerQuadratic):
    """A quadratic whose gradient turns NaN from the `after`-th evaluation on (optionally its
    loss too)."""

    def __init__(self, after: int, nan_loss: bool = False):
        super().__init__(kappa=100.0, rotated=True)
        self.after, self.nan_loss, self.calls = after, nan_loss, 0

    def loss_and_grad(self, params):
        loss = super().loss_and_grad(params)
        self.calls += 1
        if self.calls >= self.after:
            for p in params:
                p.grad.fill_(math.nan)
            if self.nan_loss:
                return math.nan
        return loss


@pytest.mark.parametrize("after", [1, 3])
@pytest.mark.parametrize("nan_loss", [False, True])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_a_nan_gradient_is_a_divergence_for_every_optimizer(optimizer, after, nan_loss):
    # before: Shampoo raised torch._C._LinAlgError from eigh on the NaN statistics
    trace = train(NaNGradient(after, nan_loss), optimizer, 1e-3, 10)
    assert trace.diverged and trace.final_loss == math.inf


def test_the_race_reports_a_diverged_run_and_goes_on():
    problem = NaNGradient(after=3)
    traces = race(problem, {"shampoo": 1e-3, "soap": 3e-3, "muon": 0.02}, 8, progress=False)
    assert list(traces) == ["shampoo", "soap", "muon"]
    assert all(t.diverged for t in traces.values())


def test_lr_sweep_refuses_a_reversed_range():
    # before: an empty sweep, silently
    with pytest.raises(
        ValueError, match=r"lr_log2 must be \(low, high\) with low <= high, got \(2, -2\)"
    ) as exc:
        lr_sweep("quadratic", ["adam"], 5, kappa=10.0, lr_log2=(2, -2), progress=False)
    assert "did you mean (-2, 2)?" in one_line(exc)
    with pytest.raises(ValueError, match="low <= high"):
        sweep_cell("quadratic", "adam", 5, kappa=10.0, lr_log2_min=2, lr_log2_max=-2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr_log2": (-2.5, 1)}, "lr_log2 must be a pair"),
        ({"lr_log2": 3}, "lr_log2 must be a pair"),
        ({"lr_log2": (-2, 2000)}, "lr_log2 must lie in -1000..1000"),
        ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
        ({"optimizers": []}, "optimizers must be a non-empty list"),
        ({"optimizers": "adam"}, "optimizers must be a non-empty list"),
        ({"frequency": 0, "optimizers": ["shampoo"]}, "frequency must be an integer >= 1, got 0"),
    ],
)
def test_lr_sweep_and_train_refuse_other_nonsense(options, message):
    arguments = {"optimizers": ["adam"], "steps": 5, "lr_log2": (-2, 1), **options}
    with pytest.raises(ValueError, match=message):
        if "frequency" in options:  # before: frequency 0 silently meant "the default"
            train(QUADRATIC, "shampoo", 1e-3, 5, options["frequency"])
        else:
            lr_sweep(
                "quadratic",
                arguments["optimizers"],
                arguments["steps"],
                kappa=10.0,
                lr_log2=arguments["lr_log2"],
                progress=False,
            )
