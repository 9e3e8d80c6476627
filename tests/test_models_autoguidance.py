"""Autoguidance with a weaker network vs CFG (workbench.models.autoguidance): the identities at
w = 1, the wiring against notebook 02's exact guided ODE, the precision matching and the claim
function on a hand-made table."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.diffusion.guidance import GuidanceProblem
from workbench.diffusion.guidance_metrics import class_metrics
from workbench.diffusion.guidance_study import GuidanceStudy
from workbench.diffusion.sampling import prior_noise, sample
from workbench.metrics import mean_class_posterior, sliced_wasserstein
from workbench.models import autoguidance as ag
from workbench.models.denoisers import train_denoiser
from workbench.toy.tilted import TiltedTarget

PROBLEM = GuidanceProblem.two_class()
N, STEPS = 600, 20


@pytest.fixture(scope="module")
def networks():
    """A good and a smaller, shorter-trained bad network (tiny budgets: about a second)."""
    common = dict(batch=128, lr=3e-3, depth=2, label_dropout=0.1, desc=None)
    good = train_denoiser(PROBLEM.mixture, PROBLEM.schedule, steps=200, width=32, **common)
    bad = train_denoiser(PROBLEM.mixture, PROBLEM.schedule, steps=60, width=16, **common)
    return good, bad


def one_line_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_cfg_and_autoguidance_at_one_are_the_good_conditional_model(networks):
    good, bad = networks
    runs = ag.guided_runs(good, bad, PROBLEM, [1.0], n=N, steps=STEPS)
    x_T = prior_noise(PROBLEM.schedule, N, 2, 0)
    plain = sample(good.model(PROBLEM.label), x_T, solver="dpmpp_2m", steps=STEPS).x.numpy()
    assert [r.method for r in runs] == ["cfg", "autoguidance"]
    for run in runs:
        np.testing.assert_allclose(run.samples, plain, rtol=1e-10, atol=1e-12)
    # and the bad network really is worse: guided away from it, the runs move
    guided = ag.guided_runs(good, bad, PROBLEM, [3.0], n=N, steps=STEPS)
    assert all(np.abs(r.samples - plain).max() > 1e-3 for r in guided)


def test_runs_are_memoized_by_content(networks):
    good, bad = networks
    first = ag.guided_runs(good, bad, PROBLEM, [1.5], n=N, steps=STEPS)
    again = ag.guided_runs(good, bad, PROBLEM, [1.5], n=N, steps=STEPS)
    assert all(a is b for a, b in zip(first, again, strict=True))


def test_exact_cfg_run_matches_notebook_02s_guided_ode():
    """Exact models in place of the networks: the CFG run's precision is the one notebook 02's
    study measures for the same noise, solver and steps (to round-off)."""
    good, bad = ag.ExactDenoiser(PROBLEM), ag.ExactDenoiser(PROBLEM, bad=True)
    scales = [1.0, 3.0]
    runs = ag.guided_runs(good, bad, PROBLEM, scales, methods=["cfg"], n=N, steps=STEPS)
    study = GuidanceStudy(PROBLEM, n_samples=N, n_error=2, seed=0)
    for run, w in zip(runs, scales, strict=True):
        measured = class_metrics(study, "cfg", w, "dpmpp_2m", STEPS)
        assert run.precision == pytest.approx(measured["mean posterior"], rel=1e-10)
        assert run.argmax_precision == pytest.approx(measured["precision"], rel=1e-10)
    # the exact w = 1 ODE samples p(x | c): its precision is P*(1) up to sampling error, and
    # its matched scale is 1 to within what that error moves it
    assert runs[0].precision == pytest.approx(ag.target_precision(PROBLEM, 1.0), abs=0.01)
    assert runs[0].matched_scale == pytest.approx(1.0, abs=0.25)
    assert runs[1].precision > runs[0].precision


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0, 2.5, 10.0, 60.0])
def test_matched_scale_inverts_the_precision_curve(w):
    assert ag.matched_scale(PROBLEM, ag.target_precision(PROBLEM, w)) == pytest.approx(
        w, rel=1e-6, abs=1e-9
    )


def test_precision_curve_is_increasing_and_bounds_the_matching():
    _, ps = ag.precision_curve(PROBLEM)
    assert np.all(np.diff(ps) > 0)
    assert ps[0] == pytest.approx(float(PROBLEM.mixture.weights[2:].sum()), abs=0.01)  # pi_c
    assert math.isnan(ag.matched_scale(PROBLEM, 0.2))  # below P*(0)
    assert math.isnan(ag.matched_scale(PROBLEM, 0.99999))  # beyond P*(W_MAX)
    assert math.isnan(ag.matched_scale(PROBLEM, math.nan))  # a diverged run


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_precision_curve_agrees_with_exact_draws(w):
    draws = ag.exact_tilted_draws(PROBLEM, w, 20_000, seed=5)
    posterior = torch.exp(ag._log_posterior(PROBLEM, draws))
    standard_error = float(posterior.std()) / math.sqrt(len(draws))
    assert float(posterior.mean()) == pytest.approx(
        ag.target_precision(PROBLEM, w), abs=4 * standard_error
    )


def test_exact_draws_agree_with_tilted_target_and_are_continuous_in_w():
    w, n = 2.0, 3000
    ours = ag.exact_tilted_draws(PROBLEM, w, n, seed=3)
    theirs = TiltedTarget.guidance(PROBLEM.mixture, PROBLEM.label, w).sample(n, seed=4)
    floor = sliced_wasserstein(
        theirs, TiltedTarget.guidance(PROBLEM.mixture, PROBLEM.label, w).sample(n, seed=9)
    )
    assert sliced_wasserstein(ours, theirs) < 2 * floor
    p_ours = mean_class_posterior(ours, PROBLEM.mixture, PROBLEM.label)
    p_theirs = mean_class_posterior(theirs, PROBLEM.mixture, PROBLEM.label)
    assert p_ours == pytest.approx(p_theirs, abs=0.005)
    # a change of w in the 12th digit keeps every draw (across w = 1 too), where
    # TiltedTarget.sample switches proposal at w = 1 and redraws its whole set
    for w in (1.0, 2.0, 7.3):
        nudged = ag.exact_tilted_draws(PROBLEM, w * (1 + 1e-12), n, seed=3)
        assert torch.equal(ag.exact_tilted_draws(PROBLEM, w, n, seed=3), nudged)
    below = ag.exact_tilted_draws(PROBLEM, 1 - 1e-12, n, seed=3)
    assert torch.equal(below, ag.exact_tilted_draws(PROBLEM, 1 + 1e-12, n, seed=3))
    tilted_below = TiltedTarget.guidance(PROBLEM.mixture, PROBLEM.label, 1 - 1e-12).sample(n)
    tilted_above = TiltedTarget.guidance(PROBLEM.mixture, PROBLEM.label, 1 + 1e-12).sample(n)
    assert not torch.equal(tilted_below, tilted_above)


def hand_made_table() -> pd.DataFrame:
    rows = [
        ("cfg", 1.0, 0.90, 0.10),
        ("cfg", 2.0, 0.92, 0.20),
        ("cfg", 3.0, 0.94, 0.30),
        ("autoguidance", 1.0, 0.90, 0.10),
        ("autoguidance", 2.0, 0.91, 0.05),
        ("autoguidance", 3.0, 0.93, 0.30),
        ("autoguidance", 4.0, 0.92, 0.05),  # past the peak: left out
    ]
    table = pd.DataFrame(rows, columns=["method", "scale", "precision", "sw_matched"])
    return table.assign(argmax_precision=table.precision, matched_scale=1.0)


def test_matched_comparison_on_a_hand_made_table():
    result = ag.matched_comparison(hand_made_table(), points=3)
    assert result["overlap"] == pytest.approx((0.90, 0.93))
    np.testing.assert_allclose(result["precisions"], [0.91, 0.92, 0.93])
    np.testing.assert_allclose(result["sw_cfg"], [0.15, 0.20, 0.25])
    np.testing.assert_allclose(result["sw_autoguidance"], [0.05, 0.175, 0.30])
    np.testing.assert_allclose(result["ratio"], [1 / 3, 0.875, 1.2])
    assert result["mean_ratio"] == pytest.approx((1 / 3 + 0.875 + 1.2) / 3)
    assert (result["min_ratio"], result["max_ratio"]) == pytest.approx((1 / 3, 1.2))
    assert result["closer_fraction"] == pytest.approx(2 / 3)
    assert result["crossover"] == pytest.approx(0.93)
    assert result["worse_at"] == pytest.approx([0.93])
    assert result["autoguidance_closer"] is False
    assert result["peak_precision"] == pytest.approx({"cfg": 0.94, "autoguidance": 0.93})
    better = hand_made_table().assign(
        sw_matched=lambda t: t.sw_matched.where(t.method == "cfg", 0.01)
    )
    everywhere = ag.matched_comparison(better, points=3)
    assert everywhere["autoguidance_closer"] is True and math.isnan(everywhere["crossover"])


def test_no_overlap_gives_an_empty_comparison():
    table = hand_made_table()
    table.loc[table.method == "autoguidance", "precision"] -= 0.5
    result = ag.matched_comparison(table)
    assert result["overlap"] is None and math.isnan(result["mean_ratio"])


def test_bad_input_is_one_line(networks):
    good, bad = networks
    one_line_error(lambda: ag.guided_runs(good, bad, PROBLEM, [1.0], methods=["pag"]), "pag")
    one_line_error(lambda: ag.guided_runs(good, bad, PROBLEM, []), "scales")
    one_line_error(lambda: ag.guided_runs(good, bad, PROBLEM, [math.nan]), "finite")
    one_line_error(lambda: ag.guided_runs(good, bad, PROBLEM, [1.0], n=1), "n must")
    one_line_error(lambda: ag.guided_runs("net", bad, PROBLEM, [1.0]), "good must")
    one_line_error(lambda: ag.guided_runs(good, bad, "two_class", [1.0]), "GuidanceProblem")
    one_line_error(lambda: ag.guided_runs(good, bad, PROBLEM, [1.0], solver="rk9"), "rk9")
    one_line_error(lambda: ag.matched_scale(PROBLEM, 1.5), "precision")
    one_line_error(lambda: ag.target_precision(PROBLEM, -1.0), "scale")
    one_line_error(lambda: ag.exact_tilted_draws(PROBLEM, 1.0, 0, 0), "n must")
    one_line_error(lambda: ag.guidance_table([]), "GuidedRun")
    one_line_error(lambda: ag.matched_comparison(pd.DataFrame({"x": [1]})), "guidance_table")
    cfg_only = hand_made_table().query("method == 'cfg'")
    one_line_error(lambda: ag.matched_comparison(cfg_only), "autoguidance")
    one_line_error(lambda: ag.ExactDenoiser(PROBLEM, bad=True).model(None), "label")


def test_bad_version_table_has_a_row_per_bad_network_and_seed(networks):
    good, bad = networks
    bads = {"60x16": bad, "exact inflated": ag.ExactDenoiser(PROBLEM, bad=True)}
    options = dict(scales=[1.0, 2.0, 4.0], seeds=(0, 1), n=N, steps=STEPS)
    table = ag.bad_version_table(good, bads, PROBLEM, **options)
    assert list(table.index) == [(b, s) for b in bads for s in (0, 1)]
    assert tuple(table.columns) == ag.SUMMARY_COLUMNS
    runs = ag.guidance_table(ag.guided_runs(good, bad, PROBLEM, [1.0, 2.0, 4.0], n=N, steps=STEPS))
    autoguided = runs[runs.method == "autoguidance"]
    assert table.loc[("60x16", 0), "peak_precision"] == pytest.approx(autoguided.precision.max())
    one_line_error(lambda: ag.bad_version_table(good, {}, PROBLEM), "bads")
