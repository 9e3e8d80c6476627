"""Every registered solver against the exact ODE answer: empirical order, NFE, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.diffusion import (
    SOLVERS,
    DiffusionModel,
    ModelOutputError,
    VPSchedule,
    reference_solution,
    sample,
    solvers,
)
from workbench.toy import GaussianMixture

SCHEDULE = VPSchedule.linear_ddpm()
SMOOTH = GaussianMixture([[0.5, -0.3], [-0.8, 0.6]], 0.6)  # wide modes: asymptotic early
STEPS = (40, 80, 160)

# The global order each (solver, order) shows on the logsnr grid. Where it differs from the
# method's nominal order, the comment says why; these are measured facts, not tuning.
EXPECTED_ORDER = {
    ("ddim", 1): 1,
    ("dpmpp_2m", 1): 1,
    ("dpmpp_2m", 2): 2,
    ("dpmpp_3m", 1): 1,
    ("dpmpp_3m", 2): 2,
    # The first-order warm-up step (diffusers' and the paper's start) leaves an O(h^2) global
    # error in the data prediction that dominates: measured 2.0 out to 640 steps.
    ("dpmpp_3m", 3): 2,
    ("heun", 2): 2,
    ("dpm_solver", 1): 1,
    ("dpm_solver", 2): 2,
    ("dpm_solver", 3): 3,
    # UniC-p after UniP-p gives order p + 1 (Zhao et al. 2023, Theorem 3.1).
    ("unipc_bh1", 1): 2,
    ("unipc_bh1", 2): 3,
    ("unipc_bh1", 3): 4,
    ("unipc_bh2", 1): 2,
    ("unipc_bh2", 2): 3,
    ("unipc_bh2", 3): 4,
    ("deis", 1): 1,
    ("deis", 2): 2,
    ("deis", 3): 3,
    ("ipndm", 1): 1,
    ("ipndm", 2): 2,
    # Fixed Adams-Bashforth coefficients assume equal steps in sigma~; on the logsnr grid the
    # step ratio is 1 + O(h), which leaves an O(h^2) global error for orders 3 and 4.
    ("ipndm", 3): 2,
    ("ipndm", 4): 2,
    ("ipndm_v", 1): 1,
    ("ipndm_v", 2): 2,
    ("ipndm_v", 3): 3,
    ("ipndm_v", 4): 4,
}
# Fourth order and DEIS-3 are pre-asymptotic at 40 steps (their error constants cancel there).
STEPS_OVERRIDE = {("deis", 3): (80, 160, 320), ("ipndm_v", 4): (80, 160, 320)}
NFE_PER_STEP = {"heun": lambda order: 2, "dpm_solver": lambda order: order}

# The solvers of workbench.diffusion.solvers; other modules register their own (and test them).
OURS = {name: spec for name, spec in SOLVERS.items() if spec.fn.__module__ == solvers.__name__}
DETERMINISTIC = sorted(
    (name, order) for name, spec in OURS.items() if not spec.stochastic for order in spec.orders
)


@pytest.fixture(scope="module")
def problem():
    model = SMOOTH.denoiser(SCHEDULE)
    x_T = torch.randn(200, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return model, x_T, reference_solution(model, x_T)


def empirical_order(errors: list[float], nfes: list[int]) -> float:
    """Least-squares slope of -log(error) against log(NFE)."""
    slope, _ = np.polyfit(np.log(nfes), np.log(errors), 1)
    return -float(slope)


def test_every_solver_order_has_an_expectation():
    assert set(DETERMINISTIC) == set(EXPECTED_ORDER)


@pytest.mark.parametrize(
    ("name", "order"), DETERMINISTIC, ids=[f"{n}-{o}" for n, o in DETERMINISTIC]
)
def test_empirical_order_matches_theory(problem, name, order):
    model, x_T, ref = problem
    errors, nfes = [], []
    for steps in STEPS_OVERRIDE.get((name, order), STEPS):
        result = sample(model, x_T, solver=name, order=order, steps=steps, lower_order_final=False)
        errors.append((result.x - ref).norm(dim=1).mean().item())
        nfes.append(result.nfe)
        per_step = NFE_PER_STEP.get(name, lambda order: 1)(order)
        assert result.nfe == per_step * steps
    measured = empirical_order(errors, nfes)
    assert abs(measured - EXPECTED_ORDER[name, order]) < 0.3, (measured, errors)


@pytest.mark.parametrize("name", ["dpmpp_2m", "deis", "ipndm_v"])
def test_unic_corrector_raises_the_order_for_free(problem, name):
    model, x_T, ref = problem
    errors, nfes = [], []
    for steps in STEPS:
        result = sample(
            model, x_T, solver=name, order=2, steps=steps, lower_order_final=False, corrector="unic"
        )
        errors.append((result.x - ref).norm(dim=1).mean().item())
        nfes.append(result.nfe)
    assert nfes == list(STEPS)  # the corrector reuses the next model call
    assert abs(empirical_order(errors, nfes) - 3) < 0.4, errors


def test_corrector_flag_matches_the_solvers_that_use_it():
    takes_unic = {name for name, spec in OURS.items() if spec.accepts_corrector}
    assert takes_unic == {"dpmpp_2m", "dpmpp_3m", "deis", "ipndm", "ipndm_v"}


def test_unipc_with_order_one_and_no_history_is_corrected_ddim(problem):
    # UniPC-1's first step is DDIM; with one step there is nothing to correct.
    model, x_T, _ = problem
    one = sample(model, x_T, solver="unipc_bh2", order=1, steps=1).x
    torch.testing.assert_close(one, sample(model, x_T, solver="ddim", steps=1).x)


def test_lower_order_final_only_changes_few_step_solves(problem):
    model, x_T, _ = problem
    for steps, same in ((10, False), (20, True)):
        on = sample(model, x_T, solver="dpmpp_3m", steps=steps).x
        off = sample(model, x_T, solver="dpmpp_3m", steps=steps, lower_order_final=False).x
        assert torch.equal(on, off) is same


def test_sde_dpmpp_2m_matches_the_marginal_in_distribution():
    model = SMOOTH.denoiser(SCHEDULE)
    n = 4000
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    x = sample(model, x_T, solver="sde_dpmpp_2m", steps=200, seed=3).x
    t_end = torch.tensor(SCHEDULE.t_min, dtype=torch.float64)
    exact = SMOOTH.noised(SCHEDULE.alpha(t_end), SCHEDULE.sigma(t_end))
    # Monte Carlo standard error of a mean is sqrt(var / n) ~ 0.015 here; allow 4 of them.
    mean_tolerance = 4 * math.sqrt(exact.covariance().diagonal().max().item() / n)
    assert (x.mean(0) - exact.mean()).abs().max() < mean_tolerance
    # the covariance's standard error is ~ var * sqrt(2 / n) ~ 0.02 relative
    torch.testing.assert_close(torch.cov(x.T), exact.covariance(), atol=0.08, rtol=0)


def test_sde_dpmpp_2m_is_reproducible_and_seeded(problem):
    model, x_T, _ = problem
    first = sample(model, x_T, solver="sde_dpmpp_2m", steps=10, seed=1).x
    assert torch.equal(first, sample(model, x_T, solver="sde_dpmpp_2m", steps=10, seed=1).x)
    assert not torch.equal(first, sample(model, x_T, solver="sde_dpmpp_2m", steps=10, seed=2).x)
    assert SOLVERS["sde_dpmpp_2m"].stochastic


def test_heun_ends_with_euler_only_at_sigma_zero():
    from workbench.diffusion import EDMSchedule

    schedule = EDMSchedule()
    model = SMOOTH.denoiser(schedule)
    x_T = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    to_zero = sample(model, x_T, solver="heun", steps=None, grid=[80.0, 10.0, 1.0, 0.0])
    assert to_zero.nfe == 5 and torch.all(torch.isfinite(to_zero.x))
    assert sample(model, x_T, solver="heun", steps=3).nfe == 6


def test_registry_describes_each_solver():
    for spec in OURS.values():
        assert spec.description and spec.name == spec.name.lower()


def test_bad_requests_are_refused(problem):
    model, x_T, _ = problem
    x = x_T[:4]
    with pytest.raises(ValueError, match="unknown solver 'dpm_solver_4'"):
        sample(model, x, solver="dpm_solver_4", steps=5)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        sample(model, x, solver="unipc_bh2", steps=0)
    for name, order in [("heun", 1), ("dpm_solver", 4), ("unipc_bh2", 4), ("ipndm", 5)]:
        with pytest.raises(ValueError, match=f"{name} supports order .*, got {order}"):
            sample(model, x, solver=name, steps=5, order=order)
    for name in ("heun", "dpm_solver", "unipc_bh2", "sde_dpmpp_2m", "ddim"):
        with pytest.raises(ValueError, match=f"{name} does not take a corrector"):
            sample(model, x, solver=name, steps=5, corrector="unic")


@pytest.mark.parametrize("name", sorted(OURS))
def test_nan_from_the_model_names_the_time(name):
    def broken(x, t):
        return torch.where(t < 0.5, torch.nan, 0.0) * x

    model = DiffusionModel(broken, "data", SCHEDULE, "broken model")
    x = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(ModelOutputError, match=r"broken model returned NaN or infinity at t=0\.4"):
        sample(model, x, solver=name, steps=10, grid="time_uniform", t_end=0.1)
