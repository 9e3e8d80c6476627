"""Trained denoisers on the toy mixtures, at tiny sizes (about a second per run).

References: the exact mixture's score (closed form) for what training achieves, the same
network untrained for how much it achieves, bitwise equality for seeds and saved states, and
the same numbers under both MKL code paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mkl_paths import results_under_each_mkl_path

from workbench.diffusion import VPSchedule, prior_noise, sample
from workbench.flows.training import build_network
from workbench.models.decomposition import score_error_by_level
from workbench.models.denoisers import (
    DENOISER_PROBLEMS,
    DenoiserBudget,
    TrainedDenoiser,
    best_device,
    train_denoiser,
    trained_denoisers,
)
from workbench.sweep import CACHE_ENV
from workbench.toy import GaussianMixture

SCHEDULE = VPSchedule.linear_ddpm()
RING = GaussianMixture.ring()
TINY = dict(steps=200, batch=128, lr=3e-3, width=32, depth=2, desc=None)


def trained(mixture=RING, **options) -> TrainedDenoiser:
    return train_denoiser(mixture, SCHEDULE, **(TINY | options))


def test_training_loss_falls():
    """The noise-prediction loss starts at E|eps|^2 = 2 (dim 2) and falls; measured: mean of the
    first 20 steps 1.67, of the last 20 0.67 (the floor is E|eps - E[eps | x_t]|^2 > 0)."""
    losses = trained().losses
    assert losses.shape == (200,) and np.isfinite(losses).all()
    assert losses[:20].mean() == pytest.approx(1.67, abs=0.1)
    assert losses[-20:].mean() < 0.5 * losses[:20].mean()


@pytest.mark.parametrize("prediction", ["noise", "data", "v"])
def test_every_parametrization_learns_the_score(prediction):
    """Each loss's minimizer is the exact model: at t = 0.6 the learned score is within 10% (in
    squared error relative to E|s*|^2) of the exact one (measured 0.6% for noise)."""
    model = trained(prediction=prediction).model()
    table = score_error_by_level(model, RING, [0.6], n=1024)
    assert table.score_error[0] < 0.1 * table.exact_score[0]


def test_seeded_runs_repeat_bit_for_bit_and_states_round_trip():
    first, again = trained(seed=3), train_denoiser(RING, SCHEDULE, **(TINY | {"seed": 3}))
    np.testing.assert_array_equal(first.losses, again.losses)
    other = trained(seed=4)
    assert not np.array_equal(first.losses, other.losses)
    loaded = TrainedDenoiser.from_state(first.state(), SCHEDULE)
    x = prior_noise(SCHEDULE, 64, 2, seed=1)
    np.testing.assert_array_equal(loaded.model()(x, 0.4), first.model()(x, 0.4))
    assert loaded.label_dropout is None and loaded.classes == ()


def test_a_conditional_network_learns_each_class_and_the_null_label():
    """Two-class mixture, label dropout 0.2: the model of label c is closer to p(x | c)'s exact
    score than to p(x)'s (measured 0.06 vs 0.25 at t = 0.3, 0.013 vs 0.049 at 0.6), and the
    null-label model is closer to p(x)'s than to either class's (measured 0.033 vs 0.43 and
    0.013 vs 0.026: at t = 0.6 the classes' scores are already close to p(x)'s)."""
    mixture = GaussianMixture.two_class()
    net = trained(mixture, steps=300, label_dropout=0.2)
    assert net.classes == (0, 1) and net.label_dropout == 0.2
    levels = [0.3, 0.6]
    for label in (0, 1):
        own = score_error_by_level(net.model(label), mixture.condition(label), levels, n=1024)
        full = score_error_by_level(net.model(label), mixture, levels, n=1024)
        assert (own.score_error < 0.5 * full.score_error).all()
    null = score_error_by_level(net.model(), mixture, levels, n=1024).score_error
    for label in (0, 1):
        cls = score_error_by_level(net.model(), mixture.condition(label), levels, n=1024)
        assert (null < 0.75 * cls.score_error).all()
    loaded = TrainedDenoiser.from_state(net.state(), SCHEDULE)
    x = prior_noise(SCHEDULE, 32, 2, seed=2)
    np.testing.assert_array_equal(loaded.model(1)(x, 0.5), net.model(1)(x, 0.5))


def test_the_model_runs_under_every_solver_family_and_autograd():
    model = trained().model()
    x_T = prior_noise(SCHEDULE, 32, 2, seed=0)
    for solver in ("ddim", "dpmpp_2m", "heun"):
        assert torch.isfinite(sample(model, x_T, solver=solver, steps=5).x).all()
    x = x_T.clone().requires_grad_(True)
    model(x, 0.5).sum().backward()  # gradients reach x through the adapter (JVPs, v3's stats)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_the_cached_set_trains_once_and_loads_from_disk(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    budgets = [DenoiserBudget(20, 8), (30, 16)]
    first = trained_denoisers("unequal", budgets)
    assert list(first) == [DenoiserBudget(20, 8), DenoiserBudget(30, 16)]
    assert [len(d.losses) for d in first.values()] == [20, 30]
    assert [d.network.config["width"] for d in first.values()] == [8, 16]
    assert len(list(tmp_path.iterdir())) == 2
    again = trained_denoisers("unequal", budgets)  # from disk: the same arrays
    for a, b in zip(first.values(), again.values(), strict=True):
        np.testing.assert_array_equal(a.losses, b.losses)
        for key, value in a.state().items():
            np.testing.assert_array_equal(value, b.state()[key])
    assert set(DENOISER_PROBLEMS) == {"ring", "unequal", "two_class"}


def test_the_device_setting():
    assert best_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(trained(device="cpu").network.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            trained(device="cuda")


PORTABLE = """
import json
from workbench.diffusion import VPSchedule, prior_noise
from workbench.models.decomposition import decomposition_table, score_error_by_level
from workbench.models.denoisers import train_denoiser
from workbench.toy import GaussianMixture
mixture, schedule = GaussianMixture.two_class(), VPSchedule.linear_ddpm()
net = train_denoiser(mixture, schedule, steps=150, batch=128, lr=3e-3, width=32, depth=2,
                     label_dropout=0.2, desc=None)
errors = score_error_by_level(net.model(1), mixture.condition(1), [0.2, 0.6], n=512)
split = decomposition_table(net.model(1), mixture.denoiser(schedule, 1),
                            prior_noise(schedule, 32, 2, 0), ["dpmpp_2m"], [5])
print(json.dumps({"losses": net.losses.tolist(), "errors": errors.score_error.tolist(),
                  "split": split[["total", "model", "step", "interaction"]].values.tolist()}))
"""


def test_the_same_numbers_under_both_mkl_code_paths():
    """float64 training under MKL_CBWR=COMPATIBLE and AVX2: losses, score errors and the error
    split (workbench.models.decomposition, checked here to start Python twice, not four
    times) agree to 1e-9 relative."""
    results = results_under_each_mkl_path(PORTABLE)
    for key in ("losses", "errors", "split"):
        np.testing.assert_allclose(results[0][key], results[1][key], rtol=1e-9)


def test_an_untrained_network_is_far_off():
    """The reference for "training achieved something": the same network at initialization
    misses the score by about E|s*|^2 (measured 1.95 vs 1.95 at t = 0.6)."""
    config = {"dim": 2, "width": 32, "depth": 2, "frequencies": 4}
    fresh = TrainedDenoiser(build_network(config, 0, "cpu"), SCHEDULE, "noise", (), None,
                            np.zeros(0), 0.0)  # fmt: skip
    table = score_error_by_level(fresh.model(), RING, [0.6], n=1024)
    assert table.score_error[0] == pytest.approx(table.exact_score[0], rel=0.2)


BAD = [
    (lambda: trained(prediction="eps"), "prediction"),
    (lambda: trained(prediction="score"), "prediction"),
    (lambda: trained(steps=0), "steps"),
    (lambda: trained(lr=float("nan")), "lr"),
    (lambda: trained(width=2.5), "width"),
    (lambda: trained(label_dropout=1.0), "label_dropout"),
    (lambda: trained(label_dropout=True), "label_dropout"),
    (lambda: trained(device="tpu"), "device"),
    (lambda: train_denoiser("ring", SCHEDULE, **TINY), "GaussianMixture"),
    (lambda: train_denoiser(RING, "vp", **TINY), "NoiseSchedule"),
    (lambda: trained(steps=5).model(label=0), "takes no label"),
    (lambda: trained(steps=5, label_dropout=0.0).model(), "needs a label"),
    (lambda: trained(steps=5, label_dropout=0.1).model(label=9), "unknown label"),
    (lambda: trained_denoisers("moons"), "moons"),
    (lambda: TrainedDenoiser.from_state({"losses": np.zeros(2)}, SCHEDULE), "missing"),
]


@pytest.mark.parametrize("call, words", BAD)
def test_bad_input_is_refused_in_one_line(call, words):
    with pytest.raises(ValueError) as error:
        call()
    assert words in str(error.value) and "\n" not in str(error.value)
