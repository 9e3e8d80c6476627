"""The topic explorers, driven headlessly through every control."""

from __future__ import annotations

import numpy as np
import pytest

from widgets.explorers import noised_mixture_explorer
from widgets.explorers.solver_steps import ORDERS, solver_steps_app, solver_steps_explorer
from workbench.diffusion import GRIDS
from workbench.diffusion.study import SOLVER_PROBLEMS, study_size
from workbench.toy.tour import DATASETS


def test_tour_explorer_every_dataset_and_noise_level():
    explorer = noised_mixture_explorer(n_samples=500, grid_size=60)
    assert [value for _, value in explorer.controls["dataset_name"].pairs] == list(DATASETS)
    for dataset in DATASETS:
        for sigma in (0.0, 0.5, 0.99):
            update = explorer.update(dataset_name=dataset, sigma=sigma)
            assert update.ok, update.error
            density, samples = update.figures["density"]["data"]
            assert np.isfinite(density["z"]).all() and samples["x"].shape == (500,)
    assert "must be a number in [0, 0.99], got 1.0" in explorer.update(sigma=1.0).error


def test_tour_samples_move_continuously_with_the_noise_level():
    explorer = noised_mixture_explorer(n_samples=200, grid_size=40)
    a = explorer.update(sigma=0.30).figures["density"]["data"][1]["x"]
    b = explorer.update(sigma=0.31).figures["density"]["data"][1]["x"]
    assert np.abs(a - b).max() < 0.1  # same x_0 and eps: a small move, not a redraw


@pytest.fixture(scope="module")
def solver_explorer():
    return solver_steps_explorer(n_samples=300)


def test_solver_explorer_every_problem_grid_and_order(solver_explorer):
    for problem in SOLVER_PROBLEMS:
        for grid in GRIDS:
            update = solver_explorer.update(
                problem=problem, grid=grid, solvers=("ddim", "dpmpp_2m")
            )
            assert update.ok, update.error
    for order in ORDERS.values():
        update = solver_explorer.update(order=order, steps=4)
        assert update.ok, update.error
        assert update.result.orders["ddim"] == 1  # ddim keeps its only order


def test_solver_explorer_panels_show_what_was_asked(solver_explorer):
    update = solver_explorer.update(solvers=("ddim", "unipc_bh2"), steps=8, grid="logsnr")
    result = update.result
    assert result.nfe == {"ddim": 8, "unipc_bh2": 8}
    assert result.paths["ddim"].shape[0] == 9  # x_T and one point per step
    names = [trace.get("name", "") for trace in update.figures["errors"]["data"]]
    assert any(name.startswith("ddim (order 1, fitted") for name in names)
    table = update.figures["table"]["data"][0]
    assert table["cells"]["values"][0] == ["ddim", "unipc_bh2"]
    # the error at the marked step count equals the study's own number
    assert result.study.error("ddim", 8) == pytest.approx(
        result.curves.query("solver == 'ddim' and steps == 8").error.item()
    )


def test_solver_explorer_refuses_an_empty_selection(solver_explorer):
    update = solver_explorer.update(solvers=())
    assert not update.ok and "solvers must select at least one" in update.error


def test_solver_explorer_selects_from_its_cache(solver_explorer):
    first = solver_explorer.update(steps=5, solvers=("dpmpp_2m",)).result
    second = solver_explorer.update(steps=5, solvers=("dpmpp_2m",)).result
    assert first.study is second.study
    assert first.study.solve("dpmpp_2m", 5) is second.study.solve("dpmpp_2m", 5)


def test_solver_app_is_served_at_the_notebooks_sizes():
    for smoke in (True, False):
        app = solver_steps_app(smoke=smoke)
        assert f"same {study_size(smoke).n_samples:,} noise draws" in app.description
    assert study_size(True).n_samples == 500 and study_size(False).n_samples == 4000
    assert study_size(False, n_samples=123).n_samples == 123
    assert study_size(True, n_samples=123).n_samples == 500  # N_SAMPLES sets the full size only
