"""Our probability paths against torchcfm's conditional paths, and DDIM on the rectified path
against diffusers' FlowMatchEulerDiscreteScheduler, on the same inputs.

Conventions. torchcfm writes x0 for the noise and x1 for the data, with time s running from
noise (s = 0) to data (s = 1); ours is data x_0 at t = 0 and noise eps at t = 1. So s = 1 - t,
and torchcfm's target u = dx/ds is minus our velocity dx/dt. Every difference is named where it
is tested:

- `ConditionalFlowMatcher(sigma=0)` is our rectified path exactly (u = data - noise).
- `ConditionalFlowMatcher(sigma>0)` is NOT Lipman's sigma_min: it adds sigma z with a third
  Gaussian z, independent of data and noise, around the straight path, and keeps the target
  u = x1 - x0 (blind to z). Its ends are blurred both ways: data + sigma z at s = 1 and
  noise + sigma z (variance 1 + sigma^2) at s = 0. No affine path of (x_0, eps) alone is that.
- `TargetConditionalFlowMatcher(sigma)` is Lipman's CondOT, our `AffinePath.condot(sigma)`: the
  noise itself shrinks to sigma_min eps at the data end; no extra variable. Its noise is the
  `epsilon` it draws (or is given); its x0 argument is not used.
- `VariancePreservingConditionalFlowMatcher` is our cosine path (cos and sin swap with s = 1 - t).
- diffusers' flow-matching Euler (shift=1, no dynamic shifting) runs x_sigma = (1 - sigma) x_0 +
  sigma noise, our rectified path with t = sigma, and its model output is noise - data: the same
  sign as our velocity (the opposite of torchcfm's u). Its timesteps are sigma * 1000 (float32;
  only used to find the step index: our model is called at the float64 sigma), its sigmas end
  with an appended 0 (the data end, our t_end = 0), its default sigmas run uniformly from 1 to
  its training sigma_min = 1/1000 before that last jump, and `step` casts the sample to float32.
"""

from __future__ import annotations

import math

import pytest
import torch

torchcfm = pytest.importorskip("torchcfm.conditional_flow_matching")
diffusers = pytest.importorskip("diffusers")

from workbench.diffusion import sample  # noqa: E402
from workbench.diffusion.paths import AffinePath  # noqa: E402
from workbench.toy import GaussianMixture  # noqa: E402

DTYPE = torch.float64
RING = GaussianMixture.ring()


def draw(seed: int, n: int = 64) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


@pytest.fixture(scope="module")
def inputs():
    """Fixed data, noise, extra Gaussian z and torchcfm times s (ours: t = 1 - s)."""
    data, noise, z = RING.sample(64, seed=1), draw(2), draw(3)
    s = torch.rand(64, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    return data, noise, z, s


def ours(path: AffinePath, data, noise, t):
    """Our conditional point and velocity, per sample time t (N,)."""
    alpha, sigma = path.alpha(t)[:, None], path.sigma(t)[:, None]
    d_alpha, d_sigma = (d[:, None] for d in path.derivatives(t))
    return alpha * data + sigma * noise, d_alpha * data + d_sigma * noise


def theirs(matcher, data, noise, s, epsilon):
    x = matcher.sample_xt(noise, data, s, epsilon)
    return x, matcher.compute_conditional_flow(noise, data, s, x)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.to(DTYPE) - b.to(DTYPE)).abs().max().item()


# ------------------------------------------------------------------ torchcfm
def test_rectified_is_torchcfm_with_sigma_zero(inputs):
    data, noise, z, s = inputs
    x, u = theirs(torchcfm.ConditionalFlowMatcher(sigma=0.0), data, noise, s, z)
    x_ours, v_ours = ours(AffinePath.rectified(), data, noise, 1 - s)
    assert max_difference(x, x_ours) < 1e-15
    assert max_difference(u, -v_ours) == 0.0  # u = x1 - x0 = data - noise = -velocity


def test_torchcfm_sigma_blurs_the_straight_path_with_a_third_gaussian(inputs):
    data, noise, z, s = inputs
    sigma = 0.1
    x, u = theirs(torchcfm.ConditionalFlowMatcher(sigma=sigma), data, noise, s, z)
    x_straight, v_straight = ours(AffinePath.rectified(), data, noise, 1 - s)
    assert max_difference(x, x_straight + sigma * z) < 1e-15  # z enters x ...
    assert max_difference(u, -v_straight) == 0.0  # ... but not the target
    # both ends blurred: at s = 0 it is noise + sigma z, not our (or Lipman's) pure noise
    ends = torch.zeros(64, dtype=DTYPE), torch.ones(64, dtype=DTYPE)
    at_noise, _ = theirs(torchcfm.ConditionalFlowMatcher(sigma=sigma), data, noise, ends[0], z)
    at_data, _ = theirs(torchcfm.ConditionalFlowMatcher(sigma=sigma), data, noise, ends[1], z)
    assert max_difference(at_noise, noise + sigma * z) < 1e-15
    assert max_difference(at_data, data + sigma * z) < 1e-15


def test_lipmans_sigma_min_is_condot_and_differs_from_torchcfm_sigma(inputs):
    """TargetConditionalFlowMatcher(sigma) = CondOT: x_s = s x1 + (1 - (1 - sigma) s) epsilon,
    the noise shrinking to sigma_min at the data end. Its noise is the `epsilon` argument (x0 is
    not used), so our eps is handed in there. ConditionalFlowMatcher(sigma) adds sigma z
    instead: same sigma, different paths."""
    data, noise, z, s = inputs
    sigma_min = 0.1
    unused = torch.full_like(noise, math.nan)  # x0 plays no part in Lipman's path
    target = torchcfm.TargetConditionalFlowMatcher(sigma=sigma_min)
    x, u = theirs(target, data, unused, s, noise)
    x_ours, v_ours = ours(AffinePath.condot(sigma_min), data, noise, 1 - s)
    # u = (x1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) s): a few ulps apart from ours
    assert max_difference(x, x_ours) < 1e-15 and max_difference(u, -v_ours) < 1e-13
    blurred, _ = theirs(torchcfm.ConditionalFlowMatcher(sigma=sigma_min), data, noise, s, z)
    assert max_difference(x, blurred) > 0.1


def test_variance_preserving_matcher_is_the_cosine_path(inputs):
    data, noise, z, s = inputs
    x, u = theirs(torchcfm.VariancePreservingConditionalFlowMatcher(sigma=0.0), data, noise, s, z)
    x_ours, v_ours = ours(AffinePath.cosine(), data, noise, 1 - s)
    # cos / sin of pi s / 2 there, sin of pi (1 - t) / 2 here: ulps apart
    assert max_difference(x, x_ours) < 1e-14 and max_difference(u, -v_ours) < 1e-14


def test_torchcfm_draws_its_own_noise_on_the_same_path(inputs):
    """sample_location_and_conditional_flow with our t: its x_t is mu_t + sigma eps for the
    eps it returns, so the rectified point holds for its own draws too."""
    data, noise, _, s = inputs
    matcher = torchcfm.ConditionalFlowMatcher(sigma=0.0)
    t_back, x, u, _ = matcher.sample_location_and_conditional_flow(
        noise, data, t=s, return_noise=True
    )
    x_ours, v_ours = ours(AffinePath.rectified(), data, noise, 1 - t_back)
    assert max_difference(x, x_ours) < 1e-15 and max_difference(u, -v_ours) == 0.0


# ------------------------------------------------------------------ diffusers
def flow_match_euler(sigmas=None, steps: int | None = None):
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    scheduler.set_timesteps(num_inference_steps=steps, sigmas=sigmas)
    return scheduler


def diffusers_trajectory(scheduler, velocity, x1: torch.Tensor, sigmas: torch.Tensor):
    """diffusers' loop on our velocity, at `sigmas` (float64, ending at 0) in place of its
    float32 copy. `step` casts the sample to float32 (a ~1e-7 loss per step); handing it the
    float32 part of x and adding the remainder keeps float64, since its Euler step is
    x + dt * v, with coefficient 1 on x."""
    scheduler.sigmas = sigmas.clone()
    x, path = x1.clone(), [x1.clone()]
    for i, timestep in enumerate(scheduler.timesteps):
        v = velocity(x, sigmas[i])
        high = x.to(torch.float32).to(DTYPE)
        x = scheduler.step(v, timestep, high).prev_sample + (x - high)
        path.append(x.clone())
    return path


@pytest.mark.parametrize("steps", [1, 4, 10])
def test_flow_match_euler_is_ddim_on_the_rectified_path(steps):
    """On identical sigmas (our time_uniform grid 1 -> 0), every step of diffusers' trajectory
    is ours to 1e-10."""
    path, x1 = AffinePath.rectified(), draw(5)
    model = RING.denoiser(path)
    ts = torch.linspace(1.0, 0.0, steps + 1, dtype=DTYPE)
    scheduler = flow_match_euler(sigmas=ts[:-1].numpy())
    # what diffusers does with them: the same values in float32, a 0 appended, timesteps 1000x
    assert max_difference(scheduler.sigmas, ts) < 1e-7 and float(scheduler.sigmas[-1]) == 0.0
    assert max_difference(scheduler.timesteps, 1000 * scheduler.sigmas[:-1]) == 0.0
    theirs_path = diffusers_trajectory(scheduler, model.as_prediction("velocity"), x1, ts)
    ours_path = sample(model, x1, solver="ddim", steps=steps, grid="time_uniform", trajectory=True)
    assert len(theirs_path) == len(ours_path.trajectory) == steps + 1
    for a, b in zip(theirs_path, ours_path.trajectory, strict=True):
        assert max_difference(a, b) < 1e-10
    if steps == 1:  # one Euler step from pure noise lands on the mean
        assert max_difference(theirs_path[-1], RING.mean().expand_as(x1)) < 1e-12


def test_flow_match_euler_defaults_end_at_its_sigma_min_then_jump_to_zero():
    """Its default grid: uniform from 1 to 1/1000 (the smallest training sigma), then 0. Our DDIM
    on that explicit grid is the same trajectory."""
    scheduler = flow_match_euler(steps=8)
    sigmas = scheduler.sigmas.to(DTYPE)
    expected = torch.linspace(1.0, 1e-3, 8, dtype=DTYPE)
    assert max_difference(sigmas[:-1], expected) < 1e-6 and float(sigmas[-1]) == 0.0
    path, x1 = AffinePath.rectified(), draw(6)
    model = RING.denoiser(path)
    theirs_path = diffusers_trajectory(scheduler, model.as_prediction("velocity"), x1, sigmas)
    ours_x = sample(model, x1, solver="ddim", steps=None, grid=sigmas).x
    assert max_difference(theirs_path[-1], ours_x) < 1e-10


def test_flow_match_euler_as_shipped_agrees_to_float32():
    """Without the float64 sigmas and the sample split, diffusers as it runs (float32 sigmas, a
    float32 sample inside step) agrees to float32 precision only."""
    path, x1 = AffinePath.rectified(), draw(7)
    model = RING.denoiser(path)
    velocity = model.as_prediction("velocity")
    scheduler = flow_match_euler(steps=10)
    x = x1.clone()
    for timestep, sigma in zip(scheduler.timesteps, scheduler.sigmas, strict=False):
        x = scheduler.step(velocity(x, float(sigma)), timestep, x).prev_sample
    grid = scheduler.sigmas.to(DTYPE)
    ours_x = sample(model, x1, solver="ddim", steps=None, grid=grid).x
    difference = max_difference(x, ours_x)
    assert 1e-9 < difference < 1e-5 and math.isfinite(difference)
