"""Affine probability paths: exact alpha, sigma, derivatives and log-SNR; solves from pure noise
(t = 1) to data (t = 0); every solver between finite-log-SNR ends; `change_path`.

References: autograd for the derivatives, Lipman et al.'s CondOT formulas (data at s = 1, so
s = 1 - t), the VP-SDE schedule, the closed-form flow map of a single Gaussian (along the
probability-flow ODE the standardized point (x - alpha mu) / sqrt(alpha^2 s^2 + sigma^2) is
constant), a hand-written Euler loop, and the reference ODE solution.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from workbench.diffusion import (
    SOLVERS,
    DiffusionModel,
    VPSchedule,
    make_grid,
    reference_solution,
    sample,
)
from workbench.diffusion.dpm_solver_v3 import compute_ems
from workbench.diffusion.paths import PATHS, AffinePath, change_path
from workbench.diffusion.reference import _solve_in_lambda, _solve_in_u
from workbench.metrics import sliced_wasserstein
from workbench.toy import GaussianMixture

DTYPE = torch.float64
GAUSSIAN = GaussianMixture([[0.7, -0.4]], [[0.3, 0.6]])  # one component, diagonal covariance
SMOOTH = GaussianMixture([[0.5, -0.3], [-0.8, 0.6]], 0.6)  # wide modes: solvers asymptotic early
RING = GaussianMixture.ring()
INTERIOR = torch.linspace(0.01, 0.99, 25, dtype=DTYPE)
EVERY_T = torch.linspace(0.0, 1.0, 41, dtype=DTYPE)
# the ends of each path: (alpha(0), sigma(0), alpha(1), sigma(1)), exactly
VP_ALPHA_1 = math.exp(-0.25 * (20.0 - 0.1) - 0.5 * 0.1)
ENDS = {
    "rectified": (1.0, 0.0, 0.0, 1.0),
    "condot": (1.0, 0.01, 0.0, 1.0),
    "vp": (1.0, 0.0, VP_ALPHA_1, math.sqrt(1 - VP_ALPHA_1**2)),
    "cosine": (1.0, 0.0, 0.0, 1.0),
}
# finite-log-SNR ends every solver can run between
T_START, T_END = 1 - 1e-3, 1e-3


def noise(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(params=list(PATHS), ids=list(PATHS))
def path(request) -> AffinePath:
    return PATHS[request.param]()


# ------------------------------------------------------------------ the paths themselves
def test_registry_labels_every_path_once():
    labels = [PATHS.label(name) for name in PATHS]
    assert list(PATHS) == ["rectified", "condot", "vp", "cosine"]
    assert len(set(labels)) == len(labels) and all(
        label != name for label, name in zip(labels, PATHS, strict=True)
    )
    for name in PATHS:
        built = PATHS[name]()
        assert isinstance(built, AffinePath) and (built.t_min, built.t_max) == (0.0, 1.0)


def test_ends_are_exact(path):
    name = next(n for n in PATHS if PATHS[n]().name == path.name)
    a0, s0, a1, s1 = ENDS[name]
    assert float(path.alpha(0.0)) == a0 and float(path.sigma(0.0)) == s0
    assert float(path.alpha(1.0)) == pytest.approx(a1, abs=1e-15)
    assert float(path.sigma(1.0)) == pytest.approx(s1, abs=1e-15)
    # lambda is infinite exactly where alpha or sigma is 0
    assert math.isinf(float(path.lambda_(0.0))) == (s0 == 0.0)
    assert math.isinf(float(path.lambda_(1.0))) == (a1 == 0.0)


def test_derivatives_are_the_autograd_ones(path):
    for t in INTERIOR:
        t = t.clone().requires_grad_(True)
        (d_alpha,) = torch.autograd.grad(path.alpha(t), t)
        (d_sigma,) = torch.autograd.grad(path.sigma(t), t)
        exact = path.derivatives(t.detach())
        assert float(exact[0]) == pytest.approx(float(d_alpha), rel=1e-12, abs=1e-14)
        assert float(exact[1]) == pytest.approx(float(d_sigma), rel=1e-12, abs=1e-14)


def test_lambda_is_half_the_log_snr_and_t_of_lambda_inverts_it(path):
    lam = path.lambda_(INTERIOR)
    assert max_difference(lam, torch.log(path.alpha(INTERIOR) / path.sigma(INTERIOR))) < 1e-12
    # on the whole of [0, 1], the infinite ends included
    assert max_difference(path.t_of_lambda(path.lambda_(EVERY_T)), EVERY_T) < 1e-12


def test_condot_is_lipmans_path_with_time_reversed():
    """Lipman et al. (arXiv:2210.02747, eqs. 20-21), data x_1 at s = 1: x_s = s x_1 + (1 - (1 -
    sigma_min) s) x_0 and u_s(x | x_1) = (x_1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) s).
    Ours at t = 1 - s, with data x_0 and noise eps: the same point, and velocity -u_s (time
    runs the other way)."""
    sigma_min = 0.01
    path = AffinePath.condot(sigma_min)
    data, eps = noise(8, 1), noise(8, 2)
    for t in INTERIOR:
        s = 1 - t
        x = s * data + (1 - (1 - sigma_min) * s) * eps
        assert max_difference(path.alpha(t) * data + path.sigma(t) * eps, x) < 1e-14
        u_lipman = (data - (1 - sigma_min) * x) / (1 - (1 - sigma_min) * s)
        d_alpha, d_sigma = path.derivatives(t)
        assert max_difference(d_alpha * data + d_sigma * eps, -u_lipman) < 1e-13
    zero = AffinePath.condot(0.0)  # sigma_min = 0 is the rectified path
    rectified = AffinePath.rectified()
    assert max_difference(zero.sigma(EVERY_T), rectified.sigma(EVERY_T)) == 0.0
    assert max_difference(zero.t_of_lambda(rectified.lambda_(EVERY_T)), EVERY_T) < 1e-15


def test_vp_path_is_the_vp_sde_schedule():
    path, schedule = AffinePath.vp(), VPSchedule.linear()
    for fn in ("alpha", "sigma", "lambda_"):
        assert max_difference(getattr(path, fn)(INTERIOR), getattr(schedule, fn)(INTERIOR)) < 1e-13
    assert math.isinf(float(path.derivatives(0.0)[1]))  # sigma ~ sqrt(beta_min t) at t = 0


def test_bad_path_parameters_are_refused():
    with pytest.raises(ValueError, match=r"sigma_min must be a finite number in \[0, 1\)"):
        AffinePath.condot(1.0)
    with pytest.raises(ValueError, match="beta_max"):
        AffinePath.vp(beta_min=2.0, beta_max=1.0)


# ------------------------------------------------------------------ from pure noise to data
def test_mixture_denoiser_at_the_path_ends():
    path, x = AffinePath.rectified(), noise(16, 3)
    model = RING.denoiser(path)
    # pure noise (alpha = 0): E[x_0 | x_1] is the data mean; data (sigma = 0): x itself
    assert max_difference(model(x, 1.0), RING.mean().expand_as(x)) < 1e-15
    assert max_difference(model(x, 0.0), x) < 1e-15


def test_reference_from_pure_noise_to_data_is_the_gaussian_flow_map(path):
    x1 = noise(50)
    mu, std = GAUSSIAN.means[0], GAUSSIAN.stds[0]
    a1, s1, a0, s0 = (
        float(v) for v in (path.alpha(1.0), path.sigma(1.0), path.alpha(0.0), path.sigma(0.0))
    )
    standardized = (x1 - a1 * mu) / torch.sqrt(a1**2 * std**2 + s1**2)
    exact = a0 * mu + torch.sqrt(a0**2 * std**2 + s0**2) * standardized
    ours = reference_solution(GAUSSIAN.denoiser(path), x1, t_start=1.0, t_end=0.0)
    assert max_difference(ours, exact) < 1e-9


def test_reference_end_map_is_the_same_on_paths_with_the_same_ends():
    """Rectified and cosine both run from (alpha, sigma) = (0, 1) to (1, 0): one ODE in log-SNR,
    so the same map from noise to data."""
    x1 = noise(32, 4)
    ends = [
        reference_solution(SMOOTH.denoiser(PATHS[name]()), x1, t_start=1.0, t_end=0.0)
        for name in ("rectified", "cosine")
    ]
    assert max_difference(*ends) < 1e-9


def test_reference_in_u_is_the_lambda_integration_inside(path):
    model, x = SMOOTH.denoiser(path), noise(16, 5)
    in_u = _solve_in_u(model, x, path, 0.9, 0.1, 1e-11, 1e-11)
    in_lambda = _solve_in_lambda(model, x, path, 0.9, 0.1, 1e-11, 1e-11)
    assert max_difference(in_u, in_lambda) < 1e-9


def test_a_noise_model_cannot_start_at_pure_noise():
    model = RING.denoiser(AffinePath.rectified()).as_prediction("noise")
    with pytest.raises(
        ValueError, match=r"gives no x_0 where alpha = 0 \(t_start=1 on rectified\)"
    ):
        reference_solution(model, noise(4), t_start=1.0, t_end=0.0)


@pytest.mark.parametrize("name", ["rectified", "condot"])
def test_ddim_on_a_uniform_time_grid_is_euler(name):
    """alpha and sigma affine in t: DDIM's x = alpha_i x0 + sigma_i eps is x + dt * velocity."""
    path, x1 = PATHS[name](), noise(32, 6)
    model = RING.denoiser(path)
    velocity = model.as_prediction("velocity")
    steps = 7
    ts = torch.linspace(1.0, 0.0, steps + 1, dtype=DTYPE)
    x = x1.clone()
    for t, t_next in itertools.pairwise(ts):
        x = x + (t_next - t) * velocity(x, t)
    ours = sample(
        model, x1, solver="ddim", steps=steps, grid="time_uniform", t_start=1.0, t_end=0.0
    )
    assert max_difference(ours.x, x) < 1e-12


def test_ddim_is_not_euler_on_the_cosine_path():
    """Off the affine-in-t paths DDIM is Euler in u = sigma / (alpha + sigma) for x / (alpha +
    sigma), not in t: the two differ at first order."""
    path, x1 = AffinePath.cosine(), noise(32, 6)
    velocity = RING.denoiser(path).as_prediction("velocity")
    ts = torch.linspace(1.0, 0.0, 5, dtype=DTYPE)
    x = x1.clone()
    for t, t_next in itertools.pairwise(ts):
        x = x + (t_next - t) * velocity(x, t)
    ddim = sample(RING.denoiser(path), x1, solver="ddim", steps=None, grid=ts)
    assert max_difference(ddim.x, x) > 1e-2


@pytest.mark.parametrize("name", ["rectified", "cosine"])
def test_one_ddim_step_from_pure_noise_lands_on_the_mean(name):
    path = PATHS[name]()
    one = sample(RING.denoiser(path), noise(16), solver="ddim", steps=1, grid="time_uniform")
    assert one.nfe == 1 and max_difference(one.x, RING.mean().expand_as(one.x)) < 1e-14


# ------------------------------------------------------------------ every solver on every path
def test_log_snr_solvers_and_grids_refuse_infinite_ends():
    path = AffinePath.rectified()
    model, x1 = RING.denoiser(path), noise(4)
    for grid in ("logsnr", "karras"):
        with pytest.raises(
            ValueError,
            match=(
                f"the '{grid}' grid steps in log-SNR, which is infinite at t_start=1 on rectified "
                r"\(alpha = 0\): start at t_start < 1 \(e.g. 0.999\), or use grid='time_uniform'"
            ),
        ):
            make_grid(path, grid, 10, 1.0, 0.5)
    for name, spec in SOLVERS.items():
        for end, ends in (("t_start", (1.0, 0.5)), ("t_end", (0.5, 0.0))):
            if end in spec.infinite_log_snr:
                continue
            with pytest.raises(ValueError) as error:
                sample(
                    model,
                    x1,
                    solver=name,
                    steps=4,
                    grid="time_uniform",
                    t_start=ends[0],
                    t_end=ends[1],
                )
            message = str(error.value)
            assert "\n" not in message and f"{SOLVERS.label(name)} steps in log-SNR" in message
            assert f"infinite at {end}=" in message and "or use solver='ddim'" in message


def test_solvers_that_take_an_infinite_end_stay_finite(path):
    model, x1 = SMOOTH.denoiser(path), noise(16, 7)
    for name, spec in SOLVERS.items():
        t_start = 1.0 if "t_start" in spec.infinite_log_snr else T_START
        if "t_end" not in spec.infinite_log_snr:
            continue
        for order in spec.orders:
            result = sample(
                model,
                x1,
                solver=name,
                order=order,
                steps=20,
                grid="time_uniform",
                t_start=t_start,
                t_end=0.0,
            )
            assert torch.all(torch.isfinite(result.x)), (name, order)


DETERMINISTIC = sorted(name for name, spec in SOLVERS.items() if not spec.stochastic)


def solver_options(name: str, model, path) -> dict:
    """DPM-Solver-v3's statistics on the solve's own (finite) log-SNR range, from clean data (its
    default range is the schedule's, infinite on a path)."""
    if name != "dpm_solver_v3":
        return {}
    ends = float(path.lambda_(T_START)), float(path.lambda_(T_END))
    lambdas = torch.linspace(*ends, 8, dtype=DTYPE)  # coarse: its jvp statistics are slow
    return {"ems": compute_ems(model, SMOOTH.sample(100, seed=1), lambdas=lambdas)}


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_every_solver_converges_to_the_reference_on_every_path(path, name):
    """On the logsnr grid between finite ends; 4x the steps cuts the error by > 3x (measured
    3.6x for DDIM, the first-order worst case, and more for every other solver)."""
    model, x1 = SMOOTH.denoiser(path), noise(16, 8)
    exact = reference_solution(model, x1, t_start=T_START, t_end=T_END)
    options = solver_options(name, model, path)
    errors = [
        max_difference(
            sample(
                model,
                x1,
                solver=name,
                steps=steps,
                t_start=T_START,
                t_end=T_END,
                solver_options=options,
            ).x,
            exact,
        )
        for steps in (10, 40)
    ]
    assert errors[1] < errors[0] / 3 and errors[1] < 0.25, errors


def test_the_stochastic_solver_reaches_the_data_distribution_on_every_path(path):
    model, x1 = SMOOTH.denoiser(path), noise(800, 9)
    alpha, sigma = float(path.alpha(T_END)), float(path.sigma(T_END))
    exact = SMOOTH.noised(alpha, sigma).sample(800, seed=10)  # exact samples of p_{t_end}
    distances = [
        sliced_wasserstein(
            sample(model, x1, solver="sde_dpmpp_2m", steps=steps, t_start=T_START, t_end=T_END).x,
            exact,
        )
        for steps in (2, 20)
    ]
    # measured: 0.4-0.6 at 2 steps, 0.06-0.08 at 20 (two finite sample sets of 800)
    assert distances[1] < 0.12 and distances[1] < distances[0] / 3, distances


# ------------------------------------------------------------------ change_path
def exact_velocity(mixture: GaussianMixture, path: AffinePath):
    return mixture.denoiser(path).as_prediction("velocity")


@pytest.mark.parametrize("source", list(PATHS))
def test_change_path_turns_one_exact_velocity_into_another(path, source):
    """Every ordered pair: the exact velocity of `source` as `path`'s is `path`'s exact velocity
    wherever the two share a log-SNR; elsewhere it is refused."""
    a = PATHS[source]()
    changed, target = change_path(exact_velocity(RING, a), path), exact_velocity(RING, path)
    lam_lo, lam_hi = float(a.lambda_(1.0)), float(a.lambda_(0.0))
    x, shared = 2.0 * noise(16, 11), 0
    for t in torch.linspace(1e-3, 1 - 1e-3, 41, dtype=DTYPE):
        if lam_lo <= float(path.lambda_(t)) <= lam_hi:
            assert max_difference(changed(x, t), target(x, t)) < 1e-10
            shared += 1
        else:
            with pytest.raises(ValueError, match=r"outside .* the model.s path: change_path"):
                changed(x, t)
    assert shared >= 37  # CondOT's data end and VP's noise end cut at most 2 times each


def test_change_path_refuses_a_noise_level_the_source_never_reaches():
    changed = change_path(exact_velocity(RING, AffinePath.vp()), AffinePath.rectified())
    with pytest.raises(ValueError, match=r"rectified at t=0\.999 has log-SNR/2 lambda=-6\.9"):
        changed(noise(4), 0.999)


def test_sampling_through_change_path_is_sampling_the_target_path():
    cosine, x1 = AffinePath.cosine(), noise(32, 12)
    changed = change_path(exact_velocity(RING, AffinePath.rectified()), cosine)
    for steps in (1, 4, 16):
        ours = sample(changed, x1, solver="ddim", steps=steps, grid="time_uniform")
        direct = sample(
            exact_velocity(RING, cosine), x1, solver="ddim", steps=steps, grid="time_uniform"
        )
        assert max_difference(ours.x, direct.x) < 1e-10
    # the reference solve through it (on the smooth mixture: fewer adaptive steps)
    changed = change_path(exact_velocity(SMOOTH, AffinePath.rectified()), cosine)
    through = reference_solution(changed, x1, t_start=1.0, t_end=0.01)
    direct = reference_solution(SMOOTH.denoiser(cosine), x1, t_start=1.0, t_end=0.01)
    assert max_difference(through, direct) < 1e-8


def test_change_path_is_the_scale_time_transform_for_any_velocity():
    """Flow Matching guide's form, with x_B(t) = s(t) x_A(r(t)): u_B(x, t) = (s'/s) x +
    s r' u_A(x / s, r), r = A.t_of_lambda(B.lambda_(t)) and s = alpha_B / alpha_A(r); s' and r'
    by autograd. The model is an arbitrary (not exact) velocity, so this checks the algebra."""
    a, b = AffinePath.rectified(), AffinePath.cosine()

    def arbitrary(x, t):
        return torch.sin(3 * x) * t + x.flip(-1) ** 2 - 0.5

    model = DiffusionModel(arbitrary, "velocity", a, "arbitrary velocity")
    changed, x = change_path(model, b), noise(8, 13)
    for t in torch.linspace(0.05, 0.95, 10, dtype=DTYPE):
        t = t.clone().requires_grad_(True)
        r = a.t_of_lambda(b.lambda_(t))
        s = (b.alpha(t) + b.sigma(t)) / (a.alpha(r) + a.sigma(r))
        (dr,) = torch.autograd.grad(r, t, retain_graph=True)
        (ds,) = torch.autograd.grad(s, t)
        r, s, t = r.detach(), s.detach(), t.detach()
        guide = (ds / s) * x + s * dr * arbitrary(x / s, r)
        assert max_difference(changed(x, t), guide) < 1e-10
