"""Notebook 05's explorer driven headlessly through every control."""

from __future__ import annotations

import re

import numpy as np
import pytest

from widgets.explorers.optimizers import (
    COLORS,
    FREQUENCIES,
    optimizer_explorer,
    optimizers_app,
)
from widgets.optimizer_figures import gd_rate_figure, race_figure, sensitivity_figure
from workbench.optim.race import race, race_table
from workbench.optim.registry import OPTIMIZERS
from workbench.optim.study import (
    SECONDS_PER_STEP,
    SWEEPS,
    OptimizerStudy,
    RaceResult,
    RaceSetup,
    study_size,
)
from workbench.optim.theory import GDStepScan

STEPS, LR_LOG2 = 30, (-6, -1)
READABLE_TICK = re.compile(r"2<sup>-?\d+</sup>|1e-?\d+|\d+(\.\d+)?")


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("WORKBENCH_CACHE", str(tmp_path_factory.mktemp("sweeps")))
    SWEEPS.clear()
    SECONDS_PER_STEP.clear()
    yield optimizer_explorer(OptimizerStudy(steps=STEPS, lr_log2=LR_LOG2))
    SWEEPS.clear()
    SECONDS_PER_STEP.clear()
    mp.undo()


def _finite_and_nonempty(figure):
    for trace in figure["data"]:
        if trace["type"] == "table":
            continue
        y = np.asarray(trace["y"], dtype=float)
        assert len(y) and np.isfinite(y).all(), trace.get("name")


def test_every_control_updates(explorer):
    for frequency in FREQUENCIES.values():
        update = explorer.update(frequency=frequency)
        assert update.ok, update.error
    for rotated in (False, True):
        for kappa in (1e2, 1e3):
            update = explorer.update(rotated=rotated, kappa=kappa, frequency="default")
            assert update.ok, update.error
            for name in ("sensitivity", "steps", "clock"):
                _finite_and_nonempty(update.figures[name])
    for shift in range(-4, 5):
        assert explorer.update(lr_shift=shift).ok


def test_panels_show_the_selected_runs(explorer):
    update = explorer.update(
        optimizers=("adam", "soap"), lr_shift=0, kappa=1e3, rotated=True, frequency="default"
    )
    view = update.result
    sweep = OptimizerStudy(steps=STEPS, lr_log2=LR_LOG2).sweep(1e3, True, None)
    for entry in view.entries:
        assert entry.run is sweep.tuned(entry.optimizer)
    steps = update.figures["steps"]["data"]
    assert [t["name"] for t in steps[:2]] == ["Adam", "SOAP"]
    assert np.allclose(steps[0]["y"], np.maximum(sweep.tuned("adam").losses, 1e-30))
    table = update.figures["table"]["data"][0]["cells"]["values"]
    assert table[0] == ["Adam", "SOAP"]
    assert table[1] == [f"2^{sweep.tuned_lr_log2(n)}" for n in ("adam", "soap")]
    # the clock panel is the step panel stretched by each method's measured seconds per step
    clock = update.figures["clock"]["data"]
    ratio = clock[0]["x"][1:] / steps[0]["x"][1:]
    assert np.allclose(ratio, view.entries[0].seconds_per_step)


def test_the_slider_moves_every_optimizer_by_the_same_factor(explorer):
    base = explorer.update(optimizers=("sgd", "adam"), lr_shift=0, frequency="default").result
    moved = explorer.update(lr_shift=-2).result
    for before, after in zip(base.entries, moved.entries, strict=True):
        assert after.run.lr_log2 == max(before.run.lr_log2 - 2, LR_LOG2[0])
    # beyond the swept grid the optimizer shows the grid's end, and the view says so
    far = explorer.update(lr_shift=4).result
    clamped = [e for e in far.entries if e.clamped]
    assert clamped, "a shift of 4 octaves leaves the 6-point grid for some optimizer"
    for entry in clamped:
        assert entry.run.lr_log2 == LR_LOG2[1] < entry.requested_lr_log2


def test_frequency_reaches_the_preconditioned_methods(explorer):
    soap_default = explorer.update(optimizers=("soap",), frequency="default", lr_shift=0)
    soap_every_step = explorer.update(frequency=1)
    assert not np.array_equal(
        soap_default.result.entries[0].run.losses, soap_every_step.result.entries[0].run.losses
    )


def test_reader_errors(explorer):
    update = explorer.update(optimizers=())
    assert not update.ok and "optimizers must select at least one" in update.error
    update = explorer.update(optimizers=("adam",), kappa=1e7)
    assert (
        not update.ok
        and "condition number κ = λmax / λmin must be a number in [10, 100000]" in (update.error)
    )


def test_updates_select_from_the_cache(explorer):
    first = explorer.update(optimizers=("adam",), kappa=1e3, rotated=True, lr_shift=0).result
    second = explorer.update(lr_shift=1).result
    third = explorer.update(lr_shift=0).result
    assert first.entries[0].runs is not None
    assert first.entries[0].run is third.entries[0].run
    assert second.entries[0].run is not first.entries[0].run


def test_the_notebook_figures_are_finite_and_complete(explorer):
    study = OptimizerStudy(steps=STEPS, lr_log2=LR_LOG2)
    sweep = study.sweep(1e3, True, None)
    figure = sensitivity_figure({"quadratic": sweep})
    names = {trace.name for trace in figure.data if trace.showlegend is not False}
    assert names == {OPTIMIZERS.label(name) for name in sweep.optimizers}
    problem = study.problem(1e3, True)
    traces = race(problem, {"adam": 0.1, "soap": 0.1}, steps=10, progress=False)
    table = race_table(traces, 1e-6, problem.n_params * 8)
    figure = race_figure({"quadratic": RaceResult(RaceSetup("quadratic", 10), 1e-6, traces, table)})
    assert len(figure.data) == 2 * 2 + 2  # two optimizers x (steps, clock) + two target lines
    eigenvalues = problem.eigenvalues().numpy()
    rates = np.array([0.9, 0.95])
    figure = gd_rate_figure(GDStepScan(eigenvalues, np.array([0.5, 1.0]), rates))
    for trace in figure.data:
        assert len(trace.y) and np.isfinite(np.asarray(trace.y, dtype=float)).all()
    theory = np.asarray(figure.data[0].y)
    assert theory.min() == pytest.approx(
        (eigenvalues.max() / eigenvalues.min() - 1) / (eigenvalues.max() / eigenvalues.min() + 1),
        rel=1e-3,
    )


def test_the_step_panel_names_optimizers_shifted_off_the_grid(explorer):
    update = explorer.update(optimizers=("sgd", "adam"), lr_shift=4, frequency="default")
    clamped = [OPTIMIZERS.label(e.optimizer) for e in update.result.entries if e.clamped]
    title = update.figures["steps"]["layout"]["title"]["text"]
    assert clamped and f"past the swept grid, at its end: {', '.join(clamped)}" in title
    assert (
        "past the swept grid"
        not in explorer.update(lr_shift=0).figures["steps"]["layout"]["title"]["text"]
    )
    table = update.figures["table"]["data"][0]["cells"]["values"]
    assert [v.endswith("(grid\u00a0end)") for v in table[2]] == [
        e.clamped for e in update.result.entries
    ]


def test_the_served_app_is_the_notebooks_smoke_size(explorer):
    size = study_size(True)
    served = optimizers_app(smoke=True)
    assert f"2^{size.lr_log2[0]}..2^{size.lr_log2[1]}" in served.description
    assert f"after {size.quad_steps} steps" in served.description
    assert study_size(False).quad_steps == 200 and size.quad_steps == 40


def test_the_view_counts_steps_and_seconds_to_the_target(explorer):
    view = explorer.update(optimizers=("adam", "sgd"), lr_shift=0, frequency="default").result
    for entry in view.entries:
        reached = entry.steps_to_target
        if reached is None:
            assert entry.seconds_to_target is None
        else:
            assert entry.run.losses[reached] <= view.target
            assert entry.seconds_to_target == reached * entry.seconds_per_step


def _every_lr_shift(explorer):
    slider = explorer.controls["lr_shift"]
    return range(int(slider.min), int(slider.max) + 1)


def test_every_offered_setting_draws_every_selected_optimizer():
    """At the SMOKE size (the served page) every slider position, in both bases, draws a
    curve and a table row for each selected optimizer: none is left empty ("not swept")."""
    served = optimizers_app(smoke=True)
    selected = tuple(OPTIMIZERS)
    assert list(_every_lr_shift(served)) == list(range(-4, 5))  # the 5-rate SMOKE grid's span
    for rotated in (True, False):
        for shift in _every_lr_shift(served):
            update = served.update(optimizers=selected, lr_shift=shift, rotated=rotated)
            assert update.ok, update.error
            for name in ("sensitivity", "steps", "clock"):
                _finite_and_nonempty(update.figures[name])
            curves = [t for t in update.figures["steps"]["data"] if t.get("legendgroup")]
            assert [t["name"] for t in curves] == [OPTIMIZERS.label(n) for n in selected]
            rows = update.figures["table"]["data"][0]["cells"]["values"]
            cells = [cell for column in rows for cell in column]
            assert len(rows[0]) == len(selected) and "not\u00a0swept" not in cells


def _shown_text(figure) -> list[str]:
    """Every string a reader sees in a figure: trace names, titles and table cells."""
    texts = [t["name"] for t in figure["data"] if "name" in t]
    for trace in figure["data"]:
        if trace["type"] == "table":
            texts += trace["header"]["values"]
            texts += [cell for column in trace["cells"]["values"] for cell in column]
    layout = figure["layout"]
    texts.append(layout["title"]["text"])
    for axis in ("xaxis", "yaxis"):
        texts.append(layout.get(axis, {}).get("title", {}).get("text", ""))
    return texts


def test_one_label_per_id_and_one_color_per_optimizer(explorer):
    update = explorer.update(optimizers=tuple(OPTIMIZERS), lr_shift=4, frequency="default")
    for figure in update.figures.values():
        for text in _shown_text(figure):
            for name in OPTIMIZERS:
                if name != OPTIMIZERS.label(name):
                    assert name not in text.split(), (name, text)
            assert "psgd_kron" not in text and "soap_adam_betas" not in text, text
    assert len(set(COLORS.values())) == len(OPTIMIZERS)
    for trace in update.figures["steps"]["data"]:
        if trace.get("legendgroup"):
            assert trace["line"]["color"] == COLORS[trace["legendgroup"]]


def _log_axes(figure):
    layout = figure["layout"] if isinstance(figure, dict) else figure.to_dict()["layout"]
    return [a for key, a in layout.items() if key[1:5] == "axis" and a.get("type") == "log"]


def test_figures_take_the_container_width_and_log_axes_read(explorer):
    update = explorer.update(optimizers=tuple(OPTIMIZERS), lr_shift=0, frequency="default")
    assert {name for name, panel in explorer.panels.items() if panel.wide} == {
        "sensitivity",
        "table",
    }
    log_axes = []
    for figure in update.figures.values():
        assert "width" not in figure["layout"]
        log_axes += _log_axes(figure)
    assert len(log_axes) == 4  # sensitivity x and y, the loss axes of steps and clock
    for axis in log_axes:
        ticks = axis["ticktext"]
        # 2^k, 1e-4 or 0.01 style: never an SI prefix ("100μ", "10n")
        assert len(ticks) >= 2 and all(READABLE_TICK.fullmatch(t) for t in ticks), ticks
    x = update.figures["sensitivity"]["layout"]["xaxis"]["ticktext"]
    assert x == [f"2<sup>{k}</sup>" for k in range(LR_LOG2[0], LR_LOG2[1] + 1)]


def test_the_notebook_figures_take_the_container_width(explorer):
    study = OptimizerStudy(steps=STEPS, lr_log2=LR_LOG2)
    figure = sensitivity_figure({"quadratic": study.sweep(1e3, True, None)})
    assert figure.layout.width is None and len(_log_axes(figure)) == 2
    problem = study.problem(1e3, True)
    traces = race(problem, {"adam": 0.1, "psgd_kron": 0.1}, steps=10, progress=False)
    table = race_table(traces, 1e-6, problem.n_params * 8)
    figure = race_figure({"quadratic": RaceResult(RaceSetup("quadratic", 10), 1e-6, traces, table)})
    assert figure.layout.width is None and len(_log_axes(figure)) == 2
    assert {t.name for t in figure.data if t.showlegend is not False} == {"Adam", "PSGD-Kron"}


def test_a_first_visit_says_how_long_it_will_take(explorer):
    """cost() estimates a setting not computed yet, and is None once it is."""
    values = {**explorer.values, "optimizers": ("adam", "soap"), "kappa": 1e4, "frequency": 100}
    estimate = explorer.cost(**values)
    assert estimate is not None and estimate > 0
    assert explorer.update(**values).ok
    assert explorer.cost(**values) is None
    assert explorer.cost(**(values | {"lr_shift": 2})) is None  # a shift only selects
