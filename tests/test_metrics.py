"""workbench.metrics against closed forms, direct implementations and exact samples.

Exact identities are asserted to 1e-12; Monte Carlo quantities to a few of their own standard
errors, with fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench import metrics
from workbench.metrics import (
    empirical_order,
    mean_l2_error,
    mmd,
    mode_coverage,
    mode_weight_error,
    mode_weights,
    sliced_wasserstein,
)
from workbench.toy import GaussianMixture

DTYPE = torch.float64


def gaussian(n: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    x[:, 0] += shift
    return x


# ---------------------------------------------------------------- mean_l2_error
def test_mean_l2_error_is_the_mean_euclidean_distance():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=DTYPE)
    reference = torch.tensor([[3.0, 4.0], [1.0, 1.0]], dtype=DTYPE)
    assert mean_l2_error(x, reference) == pytest.approx(2.5, abs=1e-15)
    assert mean_l2_error(x.numpy(), reference.numpy()) == pytest.approx(2.5, abs=1e-15)


# ---------------------------------------------------------------- empirical_order
NFES = 2.0 ** (np.arange(2, 41) / 2)  # 2 ... 2^20 in steps of sqrt(2)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_empirical_order_is_exact_on_power_laws(order):
    nfes = np.array([4, 8, 16, 32, 64, 128])
    fit = empirical_order(nfes, 0.7 * nfes.astype(float) ** -order)
    assert fit.order == pytest.approx(order, abs=1e-12)
    assert fit.slope == pytest.approx(-order, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(0.7), abs=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.nfes == tuple(nfes.astype(float))
    assert fit.predict(10.0) == pytest.approx(0.7 * 10.0**-order, rel=1e-12)


def contaminated_power_law(order: int) -> np.ndarray:
    """Error ~ NFE^-order over 2+ decades, with a drifting pre-asymptotic start (NFE < ~45),
    a jittery floor at 1e-8 (above the default 1e-9 cut, crossed at NFE = 2^18) and two
    reference-limited points below 1e-9."""
    level = 1e-8
    scale = level * (2.0**18) ** order
    pre_asymptotic = 1 + (8 / NFES) ** 2
    floor = level * (1 + 0.5 * np.sin(2.3 * np.arange(NFES.size)))
    errors = scale * NFES**-order * pre_asymptotic + floor
    errors[-2:] = [3e-10, 1e-11]
    return errors


@pytest.mark.parametrize("order", [1, 2, 3])
def test_auto_finds_the_asymptotic_order(order):
    errors = contaminated_power_law(order)
    fit = empirical_order(NFES, errors, asymptotic="auto")
    assert fit.order == pytest.approx(order, abs=0.05)
    assert fit.r2 > 0.999
    assert min(fit.nfes) > 16  # the pre-asymptotic points are left out
    assert min(fit.errors) > 1e-9  # and so are the reference-limited ones
    # The plateau at 1e-8 is excluded: the fit stays well above it.
    assert min(fit.errors) > 3e-8
    # Fitting everything is worse, which is why "auto" exists.
    fit_all = empirical_order(NFES, errors)
    assert abs(fit_all.order - order) > abs(fit.order - order)
    assert fit_all.r2 < fit.r2


def test_auto_is_invariant_to_point_order_and_input_type():
    errors = contaminated_power_law(2)
    permutation = np.random.default_rng(0).permutation(NFES.size)
    shuffled = empirical_order(
        torch.as_tensor(NFES[permutation]), list(errors[permutation]), asymptotic="auto"
    )
    assert shuffled == empirical_order(NFES, errors, asymptotic="auto")


def test_explicit_range_and_floor():
    nfes = np.array([2.0, 4, 8, 16, 32, 64])
    errors = np.array([1.0, 0.9, 8.0**-2, 16.0**-2, 32.0**-2, 1e-12])
    fit = empirical_order(nfes, errors, asymptotic=(8, 32))
    assert fit.nfes == (8.0, 16.0, 32.0)
    assert fit.order == pytest.approx(2.0, abs=1e-12)
    # The default floor drops the last point; a zero floor keeps it.
    assert 64.0 not in empirical_order(nfes, errors).nfes
    assert 64.0 in empirical_order(nfes, errors, floor=0.0).nfes


@pytest.mark.parametrize(
    ("nfes", "errors", "kwargs", "message"),
    [
        ([1, 2, 3], [1.0, 0.5], {}, "length"),
        ([], [], {}, "empty"),
        ([1, 2], [1.0, float("nan")], {}, "NaN"),
        ([1, 2, 2], [1.0, 0.5, 0.4], {}, "distinct"),
        ([1, 2, 4], [1e-10, 1e-11, 1e-12], {}, "at least 2 points"),
        ([1, 2, 4], [1.0, 1.0, 1.0], {"asymptotic": "auto"}, "at least 2 points"),
        ([1, 2, 4], [1.0, 0.5, 0.25], {"asymptotic": "best"}, "asymptotic"),
    ],
)
def test_empirical_order_rejects_bad_input(nfes, errors, kwargs, message):
    with pytest.raises(ValueError, match=message):
        empirical_order(nfes, errors, **kwargs)


# ---------------------------------------------------------------- sliced Wasserstein
def test_sliced_wasserstein_of_identical_sets_is_zero():
    x = gaussian(500, 3, seed=0)
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x[torch.randperm(500)]) == pytest.approx(0.0, abs=1e-15)


def test_sliced_wasserstein_of_a_shift_matches_the_closed_form():
    # N(0, I) vs N(m e1, I) in 2-D: each projection is a 1-D shift by m cos(theta), so
    # SW2^2 = m^2 E[cos^2 theta] = m^2 / 2. With P directions, E[cos^2] has standard error
    # sqrt(1/8 / P) ~ 0.011 for P = 1024 (2.2% of 1/2, 1.1% on SW2); the finite-sample bias of
    # the 1-D W2 at n = 2000 is far smaller.
    m = 3.0
    x, y = gaussian(2000, 2, seed=1), gaussian(2000, 2, seed=2, shift=m)
    value = sliced_wasserstein(x, y, n_projections=1024, seed=3)
    assert value == pytest.approx(m / math.sqrt(2), rel=0.04)
    # Unequal sizes go through the quantile merge and estimate the same quantity.
    unequal = sliced_wasserstein(x, y[:1500], n_projections=1024, seed=3)
    assert unequal == pytest.approx(m / math.sqrt(2), rel=0.04)


def test_sliced_wasserstein_is_symmetric():
    x, y = gaussian(300, 2, seed=4), gaussian(200, 2, seed=5, shift=1.0)
    assert sliced_wasserstein(x, y, p=1) == pytest.approx(sliced_wasserstein(y, x, p=1), abs=1e-13)
    assert sliced_wasserstein(x, y) == pytest.approx(sliced_wasserstein(y, x), abs=1e-13)


def test_sliced_wasserstein_unequal_sizes_are_exact_in_1d():
    # x = {0, 1}, y = {0, 1, 2}: quantile functions differ by 1 on t in (1/3, 1/2] and (2/3, 1],
    # so W2^2 = 1/6 + 1/3 = 1/2 and W1 = 1/2.
    x, y = np.array([0.0, 1.0]), np.array([0.0, 1.0, 2.0])
    assert sliced_wasserstein(x, y, n_projections=1) == pytest.approx(math.sqrt(0.5), abs=1e-15)
    assert sliced_wasserstein(x, y, n_projections=1, p=1) == pytest.approx(0.5, abs=1e-15)
    # Duplicating every sample leaves the empirical measure, and so the distance, unchanged.
    doubled = np.repeat(x, 2)
    assert sliced_wasserstein(doubled, y, n_projections=1) == pytest.approx(math.sqrt(0.5))


def test_sliced_wasserstein_shrinks_as_same_distribution_samples_grow():
    values = [
        sliced_wasserstein(gaussian(n, 2, seed=10), gaussian(n, 2, seed=11))
        for n in (50, 500, 5000)
    ]
    assert values[0] > values[1] > values[2]


# ---------------------------------------------------------------- MMD
def direct_mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: list[float]) -> float:
    """The unbiased MMD^2 by its definition, with explicit differences."""

    def kernel(a, b):
        squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(torch.exp(-squared / (2 * h**2)) for h in bandwidths)

    def off_diagonal_mean(k):
        n = k.shape[0]
        return (k.sum() - k.diagonal().sum()) / (n * (n - 1))

    return float(
        off_diagonal_mean(kernel(x, x)) + off_diagonal_mean(kernel(y, y)) - 2 * kernel(x, y).mean()
    )


def test_mmd_matches_the_direct_estimator(monkeypatch):
    x, y = gaussian(60, 3, seed=20), gaussian(45, 3, seed=21, shift=0.5)
    bandwidths = [0.3, 1.0, 2.5]
    expected = direct_mmd(x, y, bandwidths)
    assert mmd(x, y, bandwidths=bandwidths) == pytest.approx(expected, abs=1e-12)
    # Forcing tiny row blocks exercises the chunked path, including diagonal removal per block.
    monkeypatch.setattr(metrics, "_KERNEL_BLOCK_ENTRIES", 7 * 60)
    assert mmd(x, y, bandwidths=bandwidths) == pytest.approx(expected, abs=1e-12)


def test_mmd_default_bandwidths_follow_the_median_heuristic():
    x, y = gaussian(40, 2, seed=22), gaussian(30, 2, seed=23, shift=1.0)
    pooled = torch.cat([x, y])
    distances = torch.cdist(pooled, pooled)
    median = float(distances[torch.triu(torch.ones(70, 70, dtype=torch.bool), 1)].median())
    assert metrics.median_bandwidths(x, y).tolist() == pytest.approx(
        [0.5 * median, median, 2 * median], abs=1e-14
    )
    expected = direct_mmd(x, y, [0.5 * median, median, 2 * median])
    assert mmd(x, y) == pytest.approx(expected, abs=1e-12)


def test_mmd_is_near_zero_for_one_distribution_and_clearly_positive_for_two():
    ring = GaussianMixture.ring()
    same = [mmd(ring.sample(1000, seed=2 * s), ring.sample(1000, seed=2 * s + 1)) for s in range(4)]
    # Unbiased: the estimate scatters around 0 at the 1e-3 level for n = 1000 (its null
    # distribution is right-skewed, so most values are slightly negative; a biased V-statistic
    # would be positive every time).
    assert max(abs(v) for v in same) < 3e-3
    assert min(same) < 0
    wider = GaussianMixture.ring(radius=2.5).sample(1000, seed=99)
    assert mmd(ring.sample(1000, seed=0), wider) > 10 * max(abs(v) for v in same)


# ---------------------------------------------------------------- modes
RING = GaussianMixture.ring(n_modes=8, radius=2.0, std=0.1)


def test_mode_assignment_recovers_the_true_components():
    x, components = RING.sample(4000, seed=30, return_components=True)
    assigned = RING.responsibilities(x, 1.0, 0.0).argmax(1)
    assert torch.equal(assigned, components)
    counts = torch.bincount(components, minlength=8).to(DTYPE) / 4000
    assert torch.equal(mode_weights(x, RING), counts)
    assert mode_weights(x.numpy(), RING).sum().item() == pytest.approx(1.0, abs=1e-15)


def test_mode_coverage_counts_the_modes_that_got_their_share():
    x, components = RING.sample(4000, seed=31, return_components=True)
    assert mode_coverage(x, RING) == 1.0
    half = x[components % 2 == 0]
    assert mode_coverage(half, RING) == 0.5
    # A mode with a few stragglers (under 20% of its share) still counts as missed.
    stragglers = x[components == 1][:10]
    assert mode_coverage(torch.cat([half, stragglers]), RING) == 0.5
    assert mode_coverage(torch.cat([half, stragglers]), RING, min_fraction=0.0) == 1.0


def test_mode_weight_error_is_total_variation():
    n = 10_000
    x, components = RING.sample(n, seed=32, return_components=True)
    # E[TV] of a multinomial estimate ~ 0.5 * K * sqrt(2 / pi) * sqrt(w (1 - w) / n) ~ 0.011.
    expected_noise = 0.5 * 8 * math.sqrt(2 / math.pi) * math.sqrt(0.125 * 0.875 / n)
    assert mode_weight_error(x, RING) < 3 * expected_noise
    # Half the modes deleted: each surviving mode has weight 1/4 instead of 1/8, TV = 1/2.
    assert mode_weight_error(x[components % 2 == 0], RING) == pytest.approx(0.5, abs=0.02)


# ---------------------------------------------------------------- input validation
@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: mean_l2_error(a, b),
        lambda a, b: sliced_wasserstein(a, b),
        lambda a, b: mmd(a, b),
    ],
    ids=["mean_l2_error", "sliced_wasserstein", "mmd"],
)
def test_pairwise_metrics_reject_bad_input(call):
    x = gaussian(10, 2, seed=40)
    with pytest.raises(ValueError, match=r"mismatch|same shape"):
        call(x, gaussian(10, 3, seed=41))
    with pytest.raises(ValueError, match="empty"):
        call(x, torch.zeros(0, 2, dtype=DTYPE))
    with pytest.raises(ValueError, match="NaN"):
        call(x, torch.full((10, 2), float("nan"), dtype=DTYPE))
    with pytest.raises(ValueError, match="shape"):
        call(x, torch.zeros(10, 2, 1, dtype=DTYPE))


def test_mode_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="dimension"):
        mode_weights(torch.zeros(5, 3, dtype=DTYPE), RING)
    with pytest.raises(ValueError, match="empty"):
        mode_coverage(torch.zeros(0, 2, dtype=DTYPE), RING)
    with pytest.raises(ValueError, match="NaN"):
        mode_weight_error(torch.tensor([[float("nan"), 0.0]], dtype=DTYPE), RING)
