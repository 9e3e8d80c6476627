"""Our solvers against diffusers' schedulers on the same exact model, noise and time grid.

diffusers' default config (linear betas 1e-4..0.02 over 1000 steps) is VPSchedule.linear_ddpm(),
with timestep k at t = (k + 1) / 1000. Its schedulers take an epsilon model; ours take the same
exact mixture denoiser converted with `as_prediction("noise")`. Where diffusers ends decides our
end: final_sigmas_type="sigma_min" is one more step to t = 1/1000 (timestep 0), "zero" is a last
x_0 prediction (our `denoise_to_zero`), DDIM's set_alpha_to_one=True is the same x_0 prediction.
"""

from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from workbench.diffusion import VPSchedule, peers, reference_solution, sample  # noqa: E402
from workbench.diffusion.peers import T_MIN_DIFFUSERS as T_MIN  # noqa: E402
from workbench.diffusion.peers import diffusers_times  # noqa: E402
from workbench.toy import GaussianMixture  # noqa: E402

SCHEDULE = VPSchedule.linear_ddpm()
# DDIM, UniPC and DEIS then agree to ~1e-14; DPMSolverMultistep still casts the sample to float32
# inside step() (measured 1e-6 at 2M, 3e-5 at 3M / 20 steps).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ring():
    mixture = GaussianMixture.ring()
    model = mixture.denoiser(SCHEDULE)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return model, x_T


def run_diffusers(scheduler, model, x_T: torch.Tensor, steps: int) -> torch.Tensor:
    return peers.run_diffusers(scheduler, model, x_T, steps)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.to(torch.float64) - b.to(torch.float64)).abs().max().item()


# ------------------------------------------------------------------ same algorithm, same answer
@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
def test_ddim_matches(ring, steps, set_alpha_to_one):
    model, x_T = ring

    def make():
        return diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=set_alpha_to_one)

    theirs = run_diffusers(make(), model, x_T, steps)
    # DDIM's "leading" timesteps end at timestep 0; its last step goes to alpha = 1 (an x_0
    # prediction) or, without set_alpha_to_one, to alphas_cumprod[0]: no move at all.
    ours = sample(
        model,
        x_T,
        solver="ddim",
        steps=None,
        grid=diffusers_times(make(), steps),
        denoise_to_zero=set_alpha_to_one,
    )
    assert max_difference(ours.x, theirs) <= TOLERANCE


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize(("solver", "order"), [("dpmpp_2m", 2), ("dpmpp_3m", 3)])
def test_dpmpp_multistep_matches_to_sigma_min(ring, steps, solver, order):
    model, x_T = ring

    def make():
        return diffusers.DPMSolverMultistepScheduler(
            solver_order=order, algorithm_type="dpmsolver++", final_sigmas_type="sigma_min"
        )

    theirs = run_diffusers(make(), model, x_T, steps)
    grid = [*diffusers_times(make(), steps), T_MIN]
    ours = sample(model, x_T, solver=solver, steps=None, grid=grid)
    assert max_difference(ours.x, theirs) <= TOLERANCE


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize(("solver", "order"), [("dpmpp_2m", 2), ("dpmpp_3m", 3)])
def test_dpmpp_multistep_matches_to_zero(ring, steps, solver, order):
    # diffusers always makes the step to sigma 0 first order (= our denoise_to_zero) and lowers
    # the step before it at < 15 steps; ours counts steps without the final x_0 prediction, so
    # the two lower-order rules line up only with lower_order_final off.
    model, x_T = ring
    lower_order_final = steps >= 15

    def make():
        return diffusers.DPMSolverMultistepScheduler(
            solver_order=order, algorithm_type="dpmsolver++", lower_order_final=lower_order_final
        )

    theirs = run_diffusers(make(), model, x_T, steps)
    ours = sample(
        model,
        x_T,
        solver=solver,
        steps=None,
        grid=diffusers_times(make(), steps),
        denoise_to_zero=True,
        lower_order_final=lower_order_final,
    )
    assert max_difference(ours.x, theirs) <= TOLERANCE


@pytest.mark.parametrize("steps", [10, 20])
def test_unipc_bh2_matches(ring, steps):
    # diffusers' UniPC lowers the final orders at every step count; ours (like its multistep
    # schedulers) only below 15 steps, so at 20 steps diffusers runs with lower_order_final off.
    model, x_T = ring

    def make():
        return diffusers.UniPCMultistepScheduler(
            solver_order=2,
            solver_type="bh2",
            final_sigmas_type="sigma_min",
            lower_order_final=steps < 15,
        )

    theirs = run_diffusers(make(), model, x_T, steps)
    grid = [*diffusers_times(make(), steps), T_MIN]
    ours = sample(model, x_T, solver="unipc_bh2", steps=None, grid=grid)
    assert max_difference(ours.x, theirs) <= TOLERANCE


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("order", [2, 3])
def test_deis_matches(ring, steps, order):
    model, x_T = ring

    def make():
        return diffusers.DEISMultistepScheduler(solver_order=order)

    theirs = run_diffusers(make(), model, x_T, steps)
    grid = [*diffusers_times(make(), steps), T_MIN]  # DEIS always ends at sigma_min
    ours = sample(model, x_T, solver="deis", order=order, steps=None, grid=grid)
    assert max_difference(ours.x, theirs) <= TOLERANCE


# ------------------------------------------------------------------ diffusers' pitfalls
def run_diffusers_to_the_end(scheduler, model, x_T, steps):
    """diffusers' loop with its own float32 noise levels (the pitfalls are about its defaults)."""
    eps_model = model.as_prediction("noise")
    scheduler.set_timesteps(steps)
    x = x_T.clone()
    for timestep in scheduler.timesteps:
        x = scheduler.step(eps_model(x, VPSchedule.timestep_to_t(timestep)), timestep, x)
        x = x.prev_sample
    return x


def mean_error(x, ref):
    return (x - ref).norm(dim=1).mean().item()


def test_ddim_default_clipping_destroys_a_ring_of_radius_two(ring):
    model, x_T = ring
    steps = 20
    theirs = run_diffusers_to_the_end(diffusers.DDIMScheduler(), model, x_T, steps)
    times = diffusers_times(diffusers.DDIMScheduler(), steps)
    ref = reference_solution(model, x_T, t_start=times[0])
    ours = sample(model, x_T, solver="ddim", steps=None, grid=times).x
    assert theirs.abs().max() <= 1.0 + 1e-6  # clip_sample=True clips x_0 to [-1, 1]
    assert mean_error(theirs, ref) > 0.8  # measured 0.995: every sample lands inside the box
    assert mean_error(ours, ref) < 0.1  # measured 0.047 (DDIM's own first-order error)


@pytest.mark.parametrize(
    ("solver_type", "lower_order_final", "finite"),
    [("bh2", True, True), ("bh2", False, False), ("bh1", True, False)],
)
def test_unipc_stepping_to_sigma_zero(ring, solver_type, lower_order_final, finite):
    # Reproduces in 0.42.1: at sigma 0, lambda = inf; UniP-2 divides by r_k = 0 and bh1's
    # B(h) = h = -inf multiplies a zero correction. Only the default (bh2, lower order at the
    # end) stays finite. Ours never steps to sigma 0: the end is an x_0 prediction.
    model, x_T = ring
    scheduler = diffusers.UniPCMultistepScheduler(
        solver_type=solver_type, final_sigmas_type="zero", lower_order_final=lower_order_final
    )
    theirs = run_diffusers_to_the_end(scheduler, model, x_T, 10)
    assert bool(torch.isfinite(theirs).all()) is finite
    solver = f"unipc_{solver_type}"
    times = diffusers_times(scheduler, 10)
    ours = sample(model, x_T, solver=solver, steps=None, grid=times, denoise_to_zero=True)
    ours_full = sample(
        model,
        x_T,
        solver=solver,
        steps=None,
        grid=times,
        denoise_to_zero=True,
        lower_order_final=False,
    )
    assert torch.isfinite(ours.x).all() and torch.isfinite(ours_full.x).all()


def test_deis_order_3_error_jumps_at_15_steps_in_diffusers(ring):
    # Reproduces: at 15 steps diffusers stops lowering the order of the last steps, and on its
    # time-uniform grid the last step (timestep ~67 -> 0) is long in lambda: the error grows
    # 6x from 14 to 15 steps (measured 0.069 -> 0.401). Ours uses the same lower-order rule, so
    # on diffusers' grid it is identical (checked above); on our logsnr grid the same switch
    # costs at most a small bump (measured 6.3e-3 -> 7.3e-3) and the error stays 10x lower.
    model, x_T = ring
    ref = reference_solution(model, x_T)
    theirs = {
        n: mean_error(
            run_diffusers_to_the_end(
                diffusers.DEISMultistepScheduler(solver_order=3), model, x_T, n
            ),
            ref,
        )
        for n in (13, 14, 15, 16)
    }
    ours = {
        n: mean_error(sample(model, x_T, solver="deis", order=3, steps=n).x, ref)
        for n in range(10, 21)
    }
    assert theirs[15] > 4 * theirs[14]
    assert all(ours[n + 1] < 1.2 * ours[n] for n in range(10, 20))
    assert all(ours[n] < theirs[n] / 5 for n in theirs)


def test_singlestep_order_3_to_sigma_zero_is_finite_in_this_version(ring):
    # Does not reproduce in 0.42.1: diffusers now makes the step to sigma 0 first order and
    # forces lower_order_final=True with final_sigmas_type="zero", so no NaN appears.
    model, x_T = ring
    for lower_order_final in (True, False):
        scheduler = diffusers.DPMSolverSinglestepScheduler(
            solver_order=3, final_sigmas_type="zero", lower_order_final=lower_order_final
        )
        theirs = run_diffusers_to_the_end(scheduler, model, x_T, 10)
        assert torch.isfinite(theirs).all()
        assert scheduler.order_list[-1] == 1
    ours = sample(model, x_T, solver="dpm_solver", order=3, steps=10, denoise_to_zero=True)
    assert torch.isfinite(ours.x).all()


def test_crosscheck_names_our_solvers_by_their_labels(ring):
    from workbench.diffusion import SOLVERS

    model, x_T = ring
    agreement = peers.crosscheck(model, x_T[:16], 10)
    assert list(agreement["ours"]) == [
        SOLVERS.label(s) for s in ("ddim", "dpmpp_2m", "dpmpp_3m", "unipc_bh2", "deis")
    ]
    assert agreement["max |ours - diffusers|"].max() <= TOLERANCE
