"""The topic explorers, driven headlessly through every control."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from widgets.explorers import noised_mixture_explorer
from widgets.explorers.noised_mixture import noised_mixture_app
from widgets.explorers.solver_steps import (
    ORDERS,
    TABLE_ROW,
    solver_steps_app,
    solver_steps_explorer,
)
from widgets.solver_steps_figures import ems_figure
from workbench.claims import claims_table
from workbench.diffusion import GRIDS, SOLVERS
from workbench.diffusion.dpm_solver_v3 import EMS
from workbench.diffusion.study import (
    SOLVER_PROBLEMS,
    SOLVER_STEPS_CLAIMS,
    solver_names,
    solver_steps_cost,
    study_for,
    study_size,
)
from workbench.toy.tour import DATASETS, NOISE_LEVEL, TOUR_CHECKS

ROOT = Path(__file__).resolve().parents[1]
NBSP = "\u00a0"


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
    assert any(name.startswith("DDIM (order 1, fitted") for name in names)
    table = update.figures["table"]["data"][0]
    assert table["cells"]["values"][0] == ["DDIM", "UniPC (B(h) = e^h - 1)".replace(" ", NBSP)]
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


# --------------------------------------------------------------------- what a reader sees


def _notebook_parameter(notebook: str, name: str):
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.AnnAssign) and node.target.id == name:
            return ast.literal_eval(node.value)
    raise KeyError(name)


def test_tour_explorer_starts_at_the_notebooks_noise_level_and_labels_its_axes():
    assert NOISE_LEVEL == _notebook_parameter("00_tour.ipynb", "NOISE_LEVEL")
    assert noised_mixture_app(smoke=True).defaults["sigma"] == NOISE_LEVEL
    explorer = noised_mixture_explorer(n_samples=100, grid_size=30, sigma=0.42)
    assert explorer.defaults["sigma"] == 0.42
    update = explorer.update()
    heatmap = update.figures["density"]["data"][0]
    assert heatmap["showscale"] is True
    assert heatmap["colorbar"]["title"]["text"] == "log p<sub>t</sub>(x)"
    for panel in ("density", "score"):
        layout = update.figures[panel]["layout"]
        assert layout["xaxis"]["title"]["text"] == "x₁"
        assert layout["yaxis"]["title"]["text"] == "x₂"
        assert layout["yaxis"]["scaleanchor"] == "x"  # equal scale without a fixed width
    assert "σ = 0.42" in update.figures["density"]["layout"]["title"]["text"]


def test_no_panel_or_notebook_figure_has_a_fixed_width(solver_explorer):
    explorers = (noised_mixture_explorer(n_samples=100, grid_size=30), solver_explorer)
    for explorer in explorers:
        for name, figure in explorer.current_update().figures.items():
            assert "width" not in figure["layout"], name
    assert solver_explorer.panels["table"].wide and solver_explorer.panels["errors"].wide
    lambdas = np.linspace(-3.0, 3.0, 5)
    ems = EMS(*(torch_tensor(v) for v in (lambdas, *[np.ones((5, 2))] * 3)))
    assert ems_figure(ems).layout.width is None


def torch_tensor(values):
    import torch

    return torch.as_tensor(values, dtype=torch.float64)


def test_every_selected_solver_has_its_own_color_label_and_table_row(solver_explorer):
    every = tuple(solver_names())
    assert len(every) == 11
    update = solver_explorer.update(solvers=every, steps=6)
    assert update.ok, update.error
    samples = update.figures["samples"]["data"][1:]
    assert [t["name"] for t in samples] == [SOLVERS.label(s) for s in every]
    colors = [t["marker"]["color"] for t in samples]
    assert len(set(colors)) == 11  # the old eight colors ran out silently
    paths = update.figures["paths"]["data"][1:]
    assert [t["line"]["color"] for t in paths] == colors  # one color per solver in every panel
    lines = [t for t in update.figures["errors"]["data"] if t.get("mode") == "lines+markers"]
    assert [t["line"]["color"] for t in lines] == colors
    assert [t["name"].split(" (order ")[0] for t in lines] == [SOLVERS.label(s) for s in every]
    table = update.figures["table"]
    assert len(table["data"][0]["cells"]["values"][0]) == 11
    assert table["layout"]["height"] >= TABLE_ROW * 12  # every row and the header fit
    # the same solver keeps its color whatever else is selected
    alone = solver_explorer.update(solvers=("deis",)).figures["samples"]["data"][1]
    assert alone["marker"]["color"] == colors[every.index("deis")]


def test_solver_explorer_titles_axes_and_labels_read_well(solver_explorer):
    one = solver_explorer.update(solvers=("ddim",), steps=1, grid="karras").figures
    assert one["samples"]["layout"]["title"]["text"].startswith("samples after 1 step over")
    two = solver_explorer.update(steps=2).figures
    assert two["samples"]["layout"]["title"]["text"].startswith("samples after 2 steps over")
    assert one["errors"]["layout"]["title"]["text"] == "error vs NFE, Karras (rho = 7) grid"
    for axis in ("xaxis", "yaxis"):
        ticks = one["errors"]["layout"][axis]["ticktext"]
        assert ticks and not any("μ" in t or "n" == t[-1:] for t in ticks)  # no SI prefixes
    assert "NFE" in solver_explorer.controls["steps"].label
    values = one["table"]["data"][0]["cells"]["values"]
    assert all("e-0" not in v and "e+0" not in v for column in values[1:] for v in column)


def test_solver_explorer_estimates_a_first_visit_and_not_a_cached_one():
    sizes = {"n_samples": 64, "seed": 7, "curve_steps": (2, 4)}
    explorer = solver_steps_explorer(**sizes)
    values = {**explorer.defaults, "solvers": ("ddim", "dpmpp_2m")}
    assert explorer.update(**values).ok  # computed, so each solve is stored and timed
    assert explorer.cost(**values) is None  # every solve of the current setting is stored
    assert solver_steps_cost(**values, **sizes) is None
    new_grid = {**values, "grid": "karras"}
    estimate = explorer.cost(**new_grid)
    assert estimate is not None and estimate > 0
    assert explorer.update(**new_grid).ok
    assert explorer.cost(**new_grid) is None
    # a problem never studied at this size also needs its exact reference solution
    assert not study_for.cached("unequal", 64, 7)
    assert explorer.cost(**{**values, "problem": "unequal"}) > 0


def _baseline(notebook: str, profile: str) -> dict:
    metrics = json.loads((ROOT / "tests" / "baselines" / f"{notebook}.json").read_text())
    return {name: m["value"] for name, m in metrics["profiles"][profile].items()}


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_notebook_verdicts_read_recorded_metrics(profile):
    tour = claims_table(TOUR_CHECKS, _baseline("00_tour", profile))
    assert list(tour.verdict) == ["holds"] * 3
    solvers = claims_table(SOLVER_STEPS_CLAIMS, _baseline("01_solver_steps", profile))
    assert len(solvers) == len(SOLVER_STEPS_CLAIMS) == 17
    verdicts = dict(zip(solvers.claim, solvers.verdict, strict=True))
    assert verdicts["DDIM is order 1 (fitted order within 0.5)"] == "holds"
    assert verdicts["DPM-Solver-v3 beats DPM-Solver++(2M) at NFE 5 (its error / v3's)"] == "holds"
    # UniPC's few-step gain over DPM-Solver++(2M) is not seen at NFE 5 on this mixture
    unipc = "UniPC (B(h) = e^h - 1) beats DPM-Solver++(2M) at NFE 5"
    assert verdicts[unipc] == "does not hold"
    assert not any(solver in claim.split() for claim in solvers.claim for solver in SOLVERS)


def test_notebook_01_sentences_use_labels_readable_numbers_and_grammar():
    import pandas as pd
    import torch

    from workbench.diffusion.study_findings import (
        best_solvers_paragraph,
        count_text,
        final_step_paragraph,
    )

    assert (count_text(1, "step"), count_text(2, "step")) == ("1 step", "2 steps")
    summary = pd.DataFrame(
        {"NFE 5": [0.26, 0.0945], "NFE 10": [0.104, 0.0224]}, index=["ddim", "dpm_solver_v3"]
    )
    assert best_solvers_paragraph(summary) == (
        "At NFE 5 the best solver is DPM-Solver-v3 (0.0945, against 0.26 for DDIM); at NFE 10 "
        "it is DPM-Solver-v3 (0.0224, against 0.104 for DDIM). At NFE 10 DDIM's error is "
        "4.64x that of DPM-Solver-v3."
    )
    exact = torch.zeros(2, 2)
    theirs = torch.tensor([[float("nan"), 0.0], [0.0, 0.0]])
    assert final_step_paragraph(theirs, exact + 0.5, exact) == (
        "Stepping to σ = 0, diffusers' UniPC (bh1) leaves 1 of 2 samples non-finite; ours "
        "leaves 0, with error 0.707."
    )
