"""Notebook 09's study and explorer at SMOKE size: every offered run measured, the exact method
within its floor, the claims read what was recorded, the panels select computed runs, and the
settings it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from widgets.explorers.inverse_problems import inverse_problems_app
from widgets.topics import topic
from workbench.claims import claims_table
from workbench.inverse import findings, study


@pytest.fixture(scope="module")
def table():
    return study.posterior_table(smoke=True)


def test_every_offered_setting_is_run_once(table):
    assert len(table) == len(study.settings(True))
    assert not table.duplicated(["problem", "noise", "method", "strength", "steps"]).any()
    assert not table.diverged.any()


def test_the_exact_posterior_model_lands_within_the_floor(table):
    exact = table[table.method == "exact"]
    assert (exact.ratio < 1.2).all(), exact.ratio.tolist()


def test_a_problem_at_another_noise_changes_only_r():
    base = study.problem_at("inpaint", study.base_noise("inpaint"))
    other = study.problem_at("inpaint", 0.5)
    assert float(base.noise_covariance[0, 0]) == pytest.approx(0.1**2)
    assert float(other.noise_covariance[0, 0]) == pytest.approx(0.25)
    assert base.observation.tolist() == other.observation.tolist()


def test_the_claims_read_the_recorded_metrics(table):
    terms, tfg = study.term_errors(smoke=True), study.tfg_strength_errors(smoke=True)
    metrics = findings.claim_metrics(table, terms, tfg, study.composition_table(smoke=True))
    verdicts = claims_table(findings.INVERSE_CLAIMS, metrics)
    assert len(verdicts) == len(findings.INVERSE_CLAIMS)
    # the naive sum of scores misses the product by many floors; MALA recovers most of it
    assert metrics["composition.naive_ode_gap_over_floor"] > 5
    assert metrics["composition.mala_over_naive_ode"] < 0.5
    records = findings.posterior_records(table)
    assert len(records) == len(table) and records.index.is_unique


def test_u_shape_and_term_trend_on_hand_made_tables():
    import pandas as pd

    tfg = pd.DataFrame({"problem": ["a"] * 3 + ["b"] * 3, "strength": [0, 1, 2] * 2,
                        "relative": [1, 0.1, 2, 1, 2, 3]})  # fmt: skip
    assert findings.u_shaped(tfg) == {"a": True, "b": False}


@pytest.fixture(scope="module")
def explorer():
    app = inverse_problems_app(smoke=True)
    assert app.update().ok
    return app


def test_every_panel_draws_the_selected_run(explorer):
    update = explorer.update(strength=0.5, method="tfg", problem="noisy", noise=0.5)
    assert update.ok and set(update.figures) == {"samples", "distance", "terms"}
    samples = update.figures["samples"]["data"][2]
    assert len(samples["x"]) == study.inverse_size(True).n_shown
    run = study.posterior_run("noisy", 0.5, "tfg", 0.5, 10, smoke=True)
    np.testing.assert_allclose(samples["x"], run.samples[:, 0], rtol=1e-6)


def test_uncomputed_settings_are_one_line_messages(explorer):
    before = explorer.values
    update = explorer.update(noise=0.05)  # a full-size noise level
    assert not update.ok and "\n" not in update.error
    assert explorer.values == before


def test_the_topic_entry_moves_the_strength_slider():
    entry = topic("inverse-problems")
    assert entry.app is inverse_problems_app and entry.control == "strength"
    control = inverse_problems_app(smoke=True).controls["strength"]
    low, high, _ = entry.sweep
    assert control.min <= low < high <= control.max


@pytest.mark.parametrize("smoke", [True, False])
def test_each_size_offers_every_problems_own_noise(smoke):
    size = study.inverse_size(smoke)
    assert all(study.base_noise(p) in size.noise_stds for p in size.problems)
