"""Notebook 07's study at SMOKE size: the gradient errors against the exact shape derivative,
the fits' tables, the claims' metrics, and the settings the explorer may ask for."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.surfaces import findings, study


@pytest.fixture(scope="module")
def errors():
    return study.gradient_errors(smoke=True)


def test_the_meshsdf_velocity_converges_at_second_order_and_marching_slowly(errors):
    """Ellipse radii at 9, 17, 33 points per axis: MeshSDF's largest error falls at order
    ~1.9 (measured 1.89; a marching vertex is O(h^2) off the surface), marching's
    interpolation velocity at order ~0.4 (measured 0.39) and stays above 10% of the velocity."""
    orders = study.gradient_orders(errors)
    assert orders["meshsdf"] > 1.5 and orders["marching"] < 1.0
    meshsdf = errors[errors.method == "meshsdf"].error.to_numpy()
    marching = errors[errors.method == "marching"].error.to_numpy()
    assert (np.diff(meshsdf) < 0).all() and meshsdf[-1] < 1e-3 and (marching > 0.1).all()


def test_meshsdf_agrees_with_finite_differences_on_a_grid_of_values():
    assert study.finite_difference_check() < 1e-8  # measured 4e-11


def test_the_sharp_table_and_the_claim_metrics():
    sharp = findings.sharp_table(smoke=True)
    assert list(sharp.index) == ["marching", "meshsdf", "flexicubes"]
    assert (sharp.status == "ok").all()
    metrics = findings.claim_metrics(sharp, {"meshsdf": 2.0, "marching": 0.5}, 1e-10)
    # FlexiCubes' dual vertices reach the corners: measured 2.9x below marching's Chamfer
    assert metrics["sharp.marching_over_flexicubes"] > 2
    assert sharp.hausdorff["flexicubes"] < sharp.hausdorff["marching"]


def test_every_offered_fit_runs_and_the_best_table_has_one_row_per_extractor():
    runs = study.fit_runs(study.offered_settings(smoke=True), smoke=True)
    assert all(not run.diverged for run in runs)
    for run in runs:  # every fit improves on its starting circle (or sphere)
        assert run.losses[-1] < run.losses[0]
        assert max(run.snapshots) == len(run.losses) - 1
    best = findings.best_fits(findings.sensitivity_table(runs))
    assert len(best) == 4 * 3  # (circle, box, sphere, cube) x three extractions


def test_an_uncomputed_setting_is_a_one_line_message():
    with pytest.raises(ValueError, match="is not computed"):
        study.iso_view(study.FitSetting("circle", "marching", 24, -5), 0, smoke=True)
    with pytest.raises(ValueError, match="3-D fits are computed at resolution"):
        study.iso_view(study.FitSetting("cube", "marching", 16, -3), 0, smoke=True)


def test_the_view_shows_the_nearest_kept_iteration():
    view = study.iso_view(study.FitSetting("box", "flexicubes", 16, -5), 7, smoke=True)
    assert view.iteration == 5 and len(view.compared) == 3 and len(view.sweep) == 9
    vertices, faces, gradient = view.run.snapshots[5]
    assert vertices.shape == gradient.shape and faces.max() < len(vertices)
