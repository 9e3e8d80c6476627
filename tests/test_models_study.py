"""Notebook 08's study at its SMOKE size: the split of every solve adds up, the exact model has
no model error, a longer-trained network has less, the claims read what was recorded, and the
prose quotes the numbers it is given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.claims import claims_table
from workbench.models import findings, study


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return study.decomposition(smoke=True)


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return study.score_errors(smoke=True)


def test_every_model_solver_and_step_count_is_solved_once(table):
    size = study.models_size(True)
    assert len(table) == len(study.model_ids(True)) * len(size.solvers) * len(size.steps)
    assert not table.duplicated(["model_id", "solver", "steps"]).any()
    assert (table.nfe == table.steps).all()  # every solver shown costs one call a step


def test_the_split_adds_up_and_the_cross_term_is_the_interaction(table):
    checks = findings.split_checks(table)
    assert checks["split.max_sum_gap"] < 1e-12 and checks["split.max_cross_gap"] < 1e-9


def test_the_exact_model_has_no_model_error_and_more_training_has_less(table):
    model_error = table.groupby("model_id", sort=False).model.first()
    assert model_error[study.EXACT] < 1e-9  # the fine grid against DOP853 on the exact model
    small, default = (study.budget_id(b) for b in study.models_size(True).budgets)
    assert model_error[small] > model_error[default] > 0.1


def test_step_error_falls_with_steps_on_every_model(table):
    for (_, solver), rows in table.groupby(["model_id", "solver"]):
        step = rows.sort_values("steps").step.to_numpy()
        assert step[-1] < step[0] / 10, solver


def test_score_levels_span_the_schedule_and_errors_are_relative(scores):
    levels = study.score_levels(True)
    schedule = study.schedule()
    assert schedule.t_min <= levels.min() < levels.max() <= schedule.t_max
    assert np.all(np.diff(levels) > 0)
    np.testing.assert_allclose(scores.relative, scores.score_error / scores.exact_score)
    # the networks are worst at the smallest noise level (the ring's sharp modes)
    for _, rows in scores.groupby("model_id"):
        assert rows.relative.iloc[0] == rows.relative.max()


def test_the_view_selects_the_computed_samples(table):
    view = study.models_view("600x32", "ddim", 4, 1.2, smoke=True)
    assert view.steps == 3  # the nearest computed step count, ties to the lower
    run = study.model_run("600x32", smoke=True)
    assert view.samples is run.samples["ddim", 3] and len(view.rows) == 5
    assert view.scale == 1.25 and set(view.guided) == {"cfg", "autoguidance"}
    assert study.models_view_cost("600x32", smoke=True) is None  # solved: costs nothing


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: study.models_view("9x9", "ddim", 3, 1, smoke=True), "unknown model '9x9'"),
        (lambda: study.models_view("exact", "heun", 3, 1, smoke=True), "unknown solver 'heun'"),
    ],
)
def test_bad_settings_are_one_line_errors(call, match):
    with pytest.raises(ValueError, match=match) as error:
        call()
    assert "\n" not in str(error.value)


def test_the_claims_read_the_recorded_metrics(table, scores):
    from workbench.models.autoguidance import matched_comparison
    from workbench.models.learned_statistics import statistics_gap

    metrics = findings.claim_metrics(table, scores, smoke=True)
    sources, gap = study.v3_sources(smoke=True), statistics_gap(study.v3_pair(smoke=True))
    metrics |= findings.v3_metrics(sources, gap)
    comparison = matched_comparison(study.guided_table(smoke=True))
    metrics |= findings.guidance_metrics(comparison, study.bad_versions(smoke=True))
    verdicts = claims_table(findings.MODEL_CLAIMS, metrics)
    assert len(verdicts) == len(findings.MODEL_CLAIMS)
    assert metrics["saturation.ddim"] in study.models_size(True).steps
    changed = findings.best_solver_changes(table, smoke=True)
    assert metrics["best_solver_changes"] == bool(changed)


def test_the_prose_quotes_its_numbers(table, scores):
    checks = {"split.max_sum_gap": 1.5e-16, "split.max_cross_gap": 2.5e-16}
    text = findings.split_paragraph(table, True, checks)
    assert "1.5e-16" in text and "2.5e-16" in text
    best = findings.best_at_few_steps(table, True)
    assert findings.best_paragraph(best, []).startswith("At every step count")
    assert findings.best_paragraph(best, [2, 3]).startswith("At 2, 3 steps")


def test_the_guided_comparison_and_its_metrics():
    table = study.guided_table(smoke=True)
    assert len(table) == 2 * len(study.SCALES)
    at_one = table[table.scale == 1.0].set_index("method")
    # at w = 1 CFG and autoguidance are both the good network's conditional model
    assert at_one.loc["cfg", "precision"] == at_one.loc["autoguidance", "precision"]
    from workbench.models.autoguidance import matched_comparison

    comparison = matched_comparison(table)
    metrics = findings.guidance_metrics(comparison, study.bad_versions(smoke=True))
    assert 0 <= metrics["guidance.closer_fraction"] <= 1
    assert metrics["guidance.min_ratio"] <= metrics["guidance.mean_ratio"]
    assert metrics["guidance.best_bad_version"] == "300x32"  # the only other network in SMOKE
    crossover = metrics["guidance.crossover"]
    assert crossover == "none" or metrics["guidance.overlap_low"] <= crossover
