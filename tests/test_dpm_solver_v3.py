"""DPM-Solver-v3 against exact ground truth: the reference ODE solution of exact mixture models.

The ring-mixture comparison prints its errors and ratios against DPM-Solver++(2M) (run pytest
with -s to see them).
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from workbench.diffusion import (
    Evaluator,
    Grid,
    VPSchedule,
    make_grid,
    reference_solution,
    sample,
)
from workbench.diffusion import dpm_solver_v3 as v3
from workbench.toy import GaussianMixture

F64 = torch.float64


def prior_noise(n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, 2, generator=generator, dtype=F64)


def mean_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    return (x - reference).norm(dim=1).mean().item()


@pytest.fixture(scope="module")
def ring_model():
    return GaussianMixture.ring().denoiser(VPSchedule.linear_ddpm())


@pytest.fixture(scope="module")
def ring_ems(ring_model):
    """The statistics the registered solver finds by itself (computed lazily, then memoized)."""
    start = time.perf_counter()
    ems = v3.get_ems(ring_model, dim=2)
    print(f"\nEMS of the ring mixture: {time.perf_counter() - start:.1f} s")
    return ems


def test_ems_are_finite_and_cached(ring_model, ring_ems, monkeypatch):
    for values in (ring_ems.l, ring_ems.s, ring_ems.b):
        assert values.shape == (len(ring_ems.lambdas), 2)
        assert torch.all(torch.isfinite(values))
    # pure noise: the data prediction is optimal (l -> 1); clean data: l -> 0 along the data
    assert ring_ems.l[0].min() > 0.99 and ring_ems.l[-1].max() < 0.1

    def fail(*args, **kwargs):
        raise AssertionError("the statistics were recomputed")

    monkeypatch.setattr(v3, "compute_ems", fail)
    start = time.perf_counter()
    assert v3.get_ems(ring_model, dim=2) is ring_ems
    assert time.perf_counter() - start < 0.1


def test_nfe_equals_steps_and_excludes_statistics(ring_model, ring_ems):
    for steps in (1, 2, 5, 8):
        result = sample(ring_model, prior_noise(16, seed=2), solver="dpm_solver_v3", steps=steps)
        assert result.nfe == steps


@pytest.mark.parametrize(
    "l, s", [(1.0, 0.0), (0.0, -1.0)], ids=["data-prediction", "noise-prediction"]
)
def test_degenerate_statistics_reduce_to_ddim(ring_model, l, s):
    """l=1, s=b=0 is DPM-Solver++'s parameterization and l=0, s=-1, b=0 DPM-Solver's; their
    first-order steps are both DDIM. (l=s=b=0 is neither: f = e^{-lambda} eps is held constant
    instead of eps, a worse first-order method.)"""
    schedule = ring_model.schedule
    grid = Grid.of(schedule, make_grid(schedule, "logsnr", 6))
    ems = v3.EMS.constant(v3.default_stat_lambdas(schedule), 2, l=l, s=s, b=0.0)
    x_T = prior_noise(64, seed=3)
    x = v3.v3_solve(Evaluator(ring_model, schedule), x_T, grid, ems, order=1)
    ddim = sample(ring_model, x_T, solver="ddim", steps=6).x
    assert (x - ddim).abs().max().item() < 1e-10


def test_beats_dpmpp_2m_on_the_ring(ring_model, ring_ems):
    x_T = prior_noise(1000, seed=1)
    reference = reference_solution(ring_model, x_T)
    ratios = {}
    for steps in (5, 10, 20):
        v3_error = mean_error(
            sample(ring_model, x_T, solver="dpm_solver_v3", steps=steps).x, reference
        )
        pp_error = mean_error(sample(ring_model, x_T, solver="dpmpp_2m", steps=steps).x, reference)
        ratios[steps] = v3_error / pp_error
        print(
            f"NFE {steps:2d}: DPM-Solver-v3 {v3_error:.4e}  DPM-Solver++(2M) {pp_error:.4e}  "
            f"ratio {ratios[steps]:.3f}"
        )
    assert ratios[5] < 0.5 and ratios[10] < 0.5  # measured: 0.31 and 0.37
    assert ratios[20] < 1.0


@pytest.fixture(scope="module")
def smooth_problem():
    """Two broad, overlapping components on the continuous linear VP schedule: smooth in x and t.
    Its statistics come from forward-noised data samples (the `data` path of compute_ems)."""
    mixture = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [0.8, 0.6], weights=[0.4, 0.6])
    model = mixture.denoiser(VPSchedule.linear())
    lambdas = v3.default_stat_lambdas(model.schedule, n=120)
    return model, v3.compute_ems(model, mixture.sample(512, seed=5), lambdas=lambdas)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_empirical_order(smooth_problem, order):
    """The predictor alone: the error falls as steps^-order (the corrector adds one order)."""
    model, ems = smooth_problem
    schedule = model.schedule
    x_T = prior_noise(64, seed=6)
    t_end = 0.05  # away from t_min, where the step sizes are still in the asymptotic range
    reference = reference_solution(model, x_T, t_end=t_end)
    errors = []
    for steps in (24, 48):
        grid = Grid.of(schedule, make_grid(schedule, "logsnr", steps, t_end=t_end))
        x = v3.v3_solve(Evaluator(model, schedule), x_T, grid, ems, order, corrector=False)
        errors.append(mean_error(x, reference))
    measured = math.log2(errors[0] / errors[1])
    print(f"order {order}: errors {errors}, measured order {measured:.2f}")
    assert abs(measured - order) < 0.4


def test_statistics_travel_through_the_solver_options(ring_model, ring_ems):
    x_T = prior_noise(32, seed=4)
    lambdas = v3.default_stat_lambdas(ring_model.schedule)
    constant = v3.EMS.constant(lambdas, 2, l=1.0, s=0.0, b=0.0)
    options = {"ems": constant}
    given = sample(ring_model, x_T, solver="dpm_solver_v3", steps=6, solver_options=options)
    found = sample(ring_model, x_T, solver="dpm_solver_v3", steps=6)
    assert not torch.equal(given.x, found.x)
    # the same mixture's denoiser built again has the same content: its statistics are found
    twin = GaussianMixture.ring().denoiser(VPSchedule.linear_ddpm())
    assert twin is not ring_model and v3.get_ems(twin, dim=2) is ring_ems


def test_default_statistics_range_refuses_a_path_with_infinite_log_snr():
    from workbench.diffusion import AffinePath
    from workbench.diffusion.dpm_solver_v3 import default_stat_lambdas

    with pytest.raises(ValueError, match="infinite log-SNR at an end"):
        default_stat_lambdas(AffinePath.rectified())
