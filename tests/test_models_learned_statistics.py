"""DPM-Solver-v3 statistics of trained networks against the exact model's.

References: the exact mixture model disguised as a network (its statistics must be the exact
model's to rounding: the JVP path through the adapter is exact); the statistics of networks
trained longer (closer to the exact ones); the network's own fine solve (the limit v3 must
converge to). Statistics on a 40-point grid from 256 clean samples keep the file fast.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from workbench.diffusion import VPSchedule, prior_noise
from workbench.models import from_denoiser
from workbench.models.denoisers import train_denoiser
from workbench.models.learned_statistics import (
    STATISTICS_SOURCES,
    StatisticsPair,
    statistics_gap,
    statistics_lambdas,
    statistics_pair,
    statistics_table,
    v3_error_table,
)
from workbench.toy import GaussianMixture

SCHEDULE = VPSchedule.linear_ddpm()
RING = GaussianMixture.ring()
EXACT = RING.denoiser(SCHEDULE)
DATA = RING.sample(256, seed=1)
LAMBDAS = statistics_lambdas(SCHEDULE, 40)
X_T = prior_noise(SCHEDULE, 64, 2, seed=0)
STEPS = [5, 8, 12, 20]


def network(steps: int, width: int = 32):
    return train_denoiser(RING, SCHEDULE, steps=steps, width=width, batch=256, lr=3e-3,
                          depth=3, desc=None).model()  # fmt: skip


@pytest.fixture(scope="module")
def short():
    return network(300)


@pytest.fixture(scope="module")
def short_pair(short):
    return statistics_pair(short, EXACT, DATA, lambdas=LAMBDAS)


@pytest.fixture(scope="module")
def short_errors(short, short_pair):
    return v3_error_table(short, EXACT, X_T, STEPS, short_pair)


class ExactAsNetwork(nn.Module):
    """The mixture's exact data prediction behind the network interface net(x, (N,) times)."""

    def forward(self, x, t):
        return EXACT.fn(x, t[0])


def test_the_exact_model_disguised_as_a_network_has_the_exact_statistics():
    """Through `from_denoiser` and its JVPs, l, s and b agree with the exact model's to 1e-10."""
    disguised = from_denoiser(ExactAsNetwork(), "data", SCHEDULE)
    pair = statistics_pair(disguised, EXACT, DATA, lambdas=LAMBDAS)
    for name in ("l", "s", "b"):
        ours, theirs = getattr(pair.network, name), getattr(pair.exact, name)
        scale = float(theirs.abs().max())
        assert float((ours - theirs).abs().max()) <= 1e-10 * max(scale, 1.0), name
    gap = statistics_gap(pair)
    assert gap["l"] < 1e-10 and gap["s"] < 1e-10 and gap["b_rms"] < 1e-10


def test_a_network_s_statistics_differ_by_a_bounded_amount_that_training_shrinks(short_pair):
    """Nonzero, bounded gaps; from 300 to 1500 training steps the l and b gaps shrink
    (measured on this grid in the module's report). s does not: at high noise the network's f
    is its eps error scaled by sigma / alpha, so s ~ -1 there, where the exact s ~ 3."""
    gap = statistics_gap(short_pair)
    longer = statistics_gap(statistics_pair(network(1500), EXACT, DATA, lambdas=LAMBDAS))
    for g in (gap, longer):
        assert 0.01 < g["l_rms"] < 0.5 and 0.01 < g["b_rms"] < 5 and 0.5 < g["s_rms"] < 4
        assert all(math.isfinite(v) for v in g.values())
    assert longer["l_rms"] < 0.8 * gap["l_rms"] and longer["b_rms"] < 0.8 * gap["b_rms"]
    table = statistics_table(short_pair)
    noisy = table[table["lambda"] < -2.5]  # measured: network s in -2.1..-0.3, mean -1.1
    assert (noisy.s_exact > 2.5).all() and (noisy.s_network < 0).all()
    assert abs(noisy.s_network.mean() - (-1.0)) < 0.5


def test_the_statistics_table_has_a_row_per_lambda_and_the_differences(short_pair):
    table = statistics_table(short_pair)
    assert len(table) == len(LAMBDAS) and table["lambda"].is_monotonic_increasing
    for name in ("l", "s", "b"):
        for prefix in (name, f"{name}0", f"{name}1"):
            diff = table[f"{prefix}_network"] - table[f"{prefix}_exact"]
            assert (diff - table[f"{prefix}_diff"]).abs().max() == 0
        mean = 0.5 * (table[f"{name}0_network"] + table[f"{name}1_network"])
        assert (mean - table[f"{name}_network"]).abs().max() < 1e-14


def test_the_pair_is_memoized_by_content(short, short_pair):
    assert statistics_pair(short, EXACT, DATA.clone(), lambdas=LAMBDAS) is short_pair
    assert short_pair.n_samples == len(DATA) and short_pair.dim == 2
    assert short_pair.network_seconds > 0 and short_pair.exact_seconds > 0


def test_v3_with_the_network_s_statistics_converges_to_its_fine_solve(short_errors):
    """The step error against the network's own fine solve falls at every step count, by more
    than 30x from 5 to 20 steps (measured 75x; from 3 to 5 steps it does not fall on this
    network: 4.0e-3, 3.8e-3, 4.5e-3)."""
    own = short_errors[short_errors.statistics == "network"].sort_values("steps")
    assert list(own.steps) == STEPS and list(own.nfe) == STEPS
    assert (own.step.diff().dropna() < 0).all()
    assert own.step.iloc[-1] < own.step.iloc[0] / 30
    # the model error is the same fine solve's in every row
    assert short_errors.model.nunique() == 1


def test_the_network_s_own_statistics_beat_the_exact_model_s_and_the_constant_ones(
    short_errors,
):
    """Borrowing the exact model's statistics blows up at few steps (its s ~ 3 at high noise
    amplifies the network's error: measured 1.7e11 at 5 steps); the network's own beat them and
    the constant ones (DPM-Solver++) at every step count, by more than 10x (measured 160x at
    20 steps against the constant ones)."""
    by = short_errors.pivot(index="steps", columns="statistics", values="step")
    assert list(by.columns.sort_values()) == sorted(STATISTICS_SOURCES)
    assert (10 * by.network < by.exact).all() and (10 * by.network < by.constant).all()
    assert by.exact.loc[5] > 1e4 * by.network.loc[5]


BAD = [
    (lambda m, p: statistics_pair(m, RING.denoiser(VPSchedule.cosine()), DATA), "schedules"),
    (lambda m, p: statistics_pair("net", EXACT, DATA), "DiffusionModel"),
    (lambda m, p: statistics_pair(m, EXACT, torch.zeros(8, 3, dtype=torch.float64)), "3-dim"),
    (lambda m, p: statistics_pair(m, EXACT, DATA[:, 0]), "shape"),
    (lambda m, p: statistics_pair(m, EXACT, DATA.tolist()), "tensor"),
    (lambda m, p: statistics_pair(m, EXACT, DATA * math.nan), "finite"),
    (lambda m, p: statistics_pair(m, EXACT, DATA, lambdas=LAMBDAS.flip(0)), "increasing"),
    (lambda m, p: v3_error_table(m, EXACT, X_T[:, :1], [3], p), "x_T must be (N, 2)"),
    (lambda m, p: v3_error_table(m, EXACT, X_T, [], p), "non-empty"),
    (lambda m, p: v3_error_table(m, EXACT, X_T, [3], p, sources=["mine"]), "subset"),
    (lambda m, p: v3_error_table(m, EXACT, X_T, [3], "pair"), "StatisticsPair"),
    (lambda m, p: statistics_gap({"l": 1}), "StatisticsPair"),
    (lambda m, p: statistics_lambdas(SCHEDULE, 1), "n >= 2"),
]


@pytest.mark.parametrize("call, words", BAD)
def test_bad_input_is_refused_in_one_line(short, short_pair, call, words):
    with pytest.raises(ValueError) as error:
        call(short, short_pair)
    assert words in str(error.value) and "\n" not in str(error.value)
    assert isinstance(short_pair, StatisticsPair)
