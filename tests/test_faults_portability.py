"""Nonsense arguments to the fitted grid and the learning-rate sweeps: a ValueError whose one-line
message says what is wrong, before any work is done."""

from __future__ import annotations

import math

import pytest

from workbench.diffusion import VPSchedule, fit_grid
from workbench.scaling import lr_sweep
from workbench.scaling.studies import log2_grid
from workbench.toy import GaussianMixture

MODEL = GaussianMixture.ring().denoiser(VPSchedule.linear_ddpm())
SWEEP = dict(parametrization="mup", widths=[8], steps=2, cache=False, progress=False)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    return message


@pytest.mark.parametrize("n_train", [0, -3, 2.5, True, None])
def test_fit_grid_refuses_a_training_set_without_noises(n_train):
    with pytest.raises(ValueError, match="n_train must be an integer >= 1") as excinfo:
        fit_grid(MODEL, solver="ddim", steps=5, n_train=n_train)
    assert repr(n_train) in one_line(excinfo)


@pytest.mark.parametrize("max_iter", [0, -1, 1.5])
def test_fit_grid_refuses_no_iterations(max_iter):
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1") as excinfo:
        fit_grid(MODEL, solver="ddim", steps=5, max_iter=max_iter)
    one_line(excinfo)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -1e-3])
def test_lr_sweep_refuses_a_learning_rate_that_is_not_finite_and_positive(bad):
    with pytest.raises(ValueError, match="learning rates must be finite and > 0") as excinfo:
        lr_sweep(lrs=[1e-3, bad, 1e-1], **SWEEP)
    assert str(bad) in one_line(excinfo)


@pytest.mark.parametrize(
    ("lrs", "named"),
    [([1e-1, 1e-2, 1e-3], "0.01 after 0.1"), ([1e-3, 1e-1, 1e-2], "0.01 after 0.1"),
     ([1e-2, 1e-2], "0.01 after 0.01")],
    ids=["reversed", "unsorted", "repeated"],
)  # fmt: skip
def test_lr_sweep_refuses_a_reversed_or_unsorted_range(lrs, named):
    with pytest.raises(ValueError, match="lrs must be strictly increasing") as excinfo:
        lr_sweep(lrs=lrs, **SWEEP)
    assert named in one_line(excinfo)


def test_lr_sweep_refuses_an_empty_range():
    with pytest.raises(ValueError, match="at least one learning rate") as excinfo:
        lr_sweep(lrs=[2.0**k for k in range(0, -4)], **SWEEP)  # a reversed range is empty
    one_line(excinfo)


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, -4), r"low < high, got \(0, -4\)"), ((3, 3), r"low < high"),
     ((-4, 0, 0), "step must be >= 1"), ((-4.5, 0), "low must be an integer exponent"),
     ((-4, math.nan), "high must be an integer exponent")],
)  # fmt: skip
def test_log2_lr_ranges_run_low_to_high(args, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        log2_grid(*args)
    one_line(excinfo)


def test_a_valid_log2_range_is_every_step_from_low_to_high():
    assert log2_grid(-4, 0, 2) == [2.0**-4, 2.0**-2, 1.0]
