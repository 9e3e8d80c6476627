"""The error split of a trained model into model error, step error and their interaction.

References: the split recomputed by hand from `sample` and `reference_solution`; notebook 01's
solver error (`SolverStudy.error`) for the exact model, whose model error must vanish; the
mixture's closed-form score, whose own score error must vanish; hand-built tables for the
NFE at which steps stop helping.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.diffusion import VPSchedule, prior_noise, reference_solution, sample
from workbench.diffusion.study import SolverStudy
from workbench.models.decomposition import (
    decomposition_table,
    saturation_nfe,
    score_error_by_level,
    split_error,
)
from workbench.models.denoisers import train_denoiser
from workbench.toy import GaussianMixture

SCHEDULE = VPSchedule.linear_ddpm()
RING = GaussianMixture.ring()
EXACT = RING.denoiser(SCHEDULE)
X_T = prior_noise(SCHEDULE, 64, 2, seed=0)
SOLVERS = ["ddim", "dpmpp_2m", "heun"]


@pytest.fixture(scope="module")
def trained():
    return train_denoiser(RING, SCHEDULE, steps=200, batch=128, lr=3e-3, width=32, depth=2,
                          desc=None).model()  # fmt: skip


def test_the_split_adds_up_and_is_the_cross_term(trained):
    """model + step + interaction = total to 1e-6 (by construction), and the interaction is
    the cross term 2 E<a, b> computed on its own, to 1e-6 relative to the total."""
    table = decomposition_table(trained, EXACT, X_T, SOLVERS, [3, 10])
    assert len(table) == 6 and list(table.solver) == [s for s in SOLVERS for _ in (3, 10)]
    parts = table.model + table.step + table.interaction
    np.testing.assert_allclose(parts, table.total, rtol=0, atol=1e-6)
    assert ((table.cross - table.interaction).abs() <= 1e-6 * table.total).all()
    assert (table.model > 0).all() and (table.step > 0).all()
    assert table.model.nunique() == 1  # one fine solve of each model serves every row


def test_each_term_against_a_solve_by_hand(trained):
    split = split_error(trained, EXACT, X_T, "dpmpp_2m", 5)
    x_k = sample(trained, X_T, solver="dpmpp_2m", steps=5).x
    exact_ref = reference_solution(EXACT, X_T)
    own_ref = sample(trained, X_T, solver="dpm_solver", order=3, steps=400).x

    def squared(v):
        return float((v**2).sum(dim=1).mean())

    assert split.total == pytest.approx(squared(x_k - exact_ref), rel=1e-12)
    assert split.model == pytest.approx(squared(own_ref - exact_ref), rel=1e-12)
    assert split.step == pytest.approx(squared(x_k - own_ref), rel=1e-12)
    assert split.step_l2 == pytest.approx(float((x_k - own_ref).norm(dim=1).mean()), rel=1e-12)
    assert split.nfe == 5 and split.steps == 5
    # the exact model on an equal schedule built apart (as a cached denoiser's) is accepted
    again = split_error(trained, RING.denoiser(VPSchedule.linear_ddpm()), X_T, "dpmpp_2m", 5)
    assert again == split


@pytest.mark.parametrize("solver, steps", [("ddim", 10), ("dpmpp_2m", 5), ("heun", 4)])
def test_the_exact_model_has_no_model_error_and_notebook_01s_step_error(solver, steps):
    """The exact model as the "trained" one: model error below 1e-8 (its fixed-grid fine solve
    against DOP853 at 1e-11) and step error equal to notebook 01's solver error of the same
    noise, to 1e-6 relative."""
    split = split_error(EXACT, EXACT, X_T, solver, steps)
    assert split.model < 1e-8
    known = SolverStudy(RING, SCHEDULE, n_samples=64, seed=0).error(solver, steps)
    assert split.step_l2 == pytest.approx(known, rel=1e-6)
    assert split.total == pytest.approx(split.step, rel=1e-6)


def test_score_error_of_a_trained_network_against_an_untrained_one(trained):
    """Finite and positive; at t = 0.3, 0.6 and 1 at least 8x below the untrained network's
    (measured 8.5x, 160x, 21x); the exact model's own score error is rounding (< 1e-18
    relative)."""
    levels = [0.3, 0.6, 1.0]
    ours = score_error_by_level(trained, RING, levels, n=1024)
    # one step at lr 1e-300: the same network at its initial weights
    fresh = train_denoiser(RING, SCHEDULE, steps=1, batch=2, lr=1e-300, width=32, depth=2,
                           desc=None).model()  # fmt: skip
    theirs = score_error_by_level(fresh, RING, levels, n=1024)
    assert list(ours.t) == levels and np.isfinite(ours.score_error).all()
    assert (ours.score_error > 0).all()
    assert (ours.score_error < theirs.score_error / 8).all()
    exact = score_error_by_level(EXACT, RING, levels, n=1024)
    assert (exact.score_error < 1e-18 * exact.exact_score).all()
    np.testing.assert_allclose(
        exact.sigma, SCHEDULE.sigma(torch.tensor(levels, dtype=torch.float64)), rtol=1e-15
    )


def table_of(rows):
    return pd.DataFrame(rows, columns=["solver", "nfe", "model", "step"])


def test_the_nfe_where_more_steps_stop_helping():
    table = table_of([
        ("a", 20, 0.2, 0.01), ("a", 5, 0.2, 1.0), ("a", 10, 0.2, 0.1),  # unsorted: 10
        ("b", 5, 0.2, 1.0), ("b", 10, 0.2, 0.1), ("b", 20, 0.2, 0.5),   # above at the end
        ("c", 5, 0.2, 0.1), ("c", 10, 0.2, 0.05),                       # below from the start
        ("d", 5, 0.2, 0.1), ("d", 10, 0.2, 0.3), ("d", 20, 0.2, 0.01),  # dips, then for good
    ])  # fmt: skip
    found = saturation_nfe(table)
    assert list(found) == ["a", "b", "c", "d"]
    assert found["a"] == 10 and math.isnan(found["b"]) and found["c"] == 5 and found["d"] == 20


def test_on_a_trained_model_steps_stop_helping(trained):
    """The tiny network's model error is reached by DDIM somewhere in 5..80 steps."""
    found = saturation_nfe(decomposition_table(trained, EXACT, X_T, ["ddim"], [5, 20, 80]))
    assert found["ddim"] in (5, 20, 80)


BAD = [
    (lambda m: split_error("net", EXACT, X_T, "ddim", 5), "DiffusionModel"),
    (lambda m: split_error(m, RING.denoiser(VPSchedule.cosine()), X_T, "ddim", 5), "schedules"),
    (lambda m: split_error(m, EXACT, X_T, "ddim", 0), "steps"),
    (lambda m: split_error(m, EXACT, X_T, "euler_maruyama_x", 5), "euler_maruyama_x"),
    (lambda m: decomposition_table(m, EXACT, X_T, "ddim", [5]), "non-empty"),
    (lambda m: decomposition_table(m, EXACT, X_T, ["ddim"], []), "non-empty"),
    (lambda m: score_error_by_level(m, RING, [0.0]), "levels"),
    (lambda m: score_error_by_level(m, RING, [0.5, float("nan")]), "levels"),
    (lambda m: score_error_by_level(m, RING, []), "levels"),
    (lambda m: score_error_by_level(m, "ring", [0.5]), "GaussianMixture"),
    (lambda m: saturation_nfe(pd.DataFrame({"solver": ["ddim"]})), "lacks columns"),
]


@pytest.mark.parametrize("call, words", BAD)
def test_bad_input_is_refused_in_one_line(trained, call, words):
    with pytest.raises(ValueError) as error:
        call(trained)
    assert words in str(error.value) and "\n" not in str(error.value)
