"""Notebook 02's explorer, driven headlessly through every control, with bad input."""

from __future__ import annotations

import numpy as np
import pytest

from widgets.explorers.guidance_scales import guidance_explorer
from workbench.diffusion.guidance import GUIDANCE
from workbench.diffusion.guidance_study import HEATMAP_SOLVERS, GuidanceStudy
from workbench.memo import memos

SCALES, NFES = (1.0, 7.5), (5, 10)


@pytest.fixture(scope="module")
def study():
    return GuidanceStudy.two_class(
        n_samples=200, seed=0, n_error=64, ems_lambdas=30, ems_samples=64
    )


@pytest.fixture(scope="module")
def explorer(study):
    return guidance_explorer(
        study, heatmap_scales=SCALES, heatmap_nfes=NFES, curve_scales=(0.0, 1.0, 7.5)
    )


def finite(values) -> bool:
    array = np.asarray(values, dtype=float)
    return array.size > 0 and bool(np.isfinite(array).all())


def test_every_method_draws_every_panel(explorer):
    choices = explorer.controls["method"].options
    assert set(choices.values()) == set(GUIDANCE)
    for method in GUIDANCE:
        update = explorer.update(method=method, scale=7.5, steps=10, solver="dpmpp_2m")
        assert update.ok, update.error
        density, samples = update.figures["samples"]["data"]
        assert finite(density["z"]) and samples["x"].shape == (200,) and finite(samples["x"])
        target, curve, current = update.figures["tradeoff"]["data"]
        metrics = update.result.metrics  # drawn as class error 1 - E p(c | x)
        assert current["x"][0] == pytest.approx(max(1 - metrics["mean posterior"], 1e-9))
        assert current["y"][0] == pytest.approx(metrics["spread"])
        assert (
            finite(curve["x"]) and finite(target["y"]) and list(curve["text"]) == ["0", "1", "7.5"]
        )
        heatmap, marker = update.figures["errors"]["data"]
        assert finite(heatmap["z"]) and np.shape(heatmap["z"]) == (2, 2)
        assert marker["x"] == ["10"] and marker["y"] == ["7.5"]  # the current cell
        ess = update.figures["ess"]["data"][0]["y"]
        assert finite(ess) and np.all((ess > 0) & (ess <= 1 + 1e-12))
        title = update.figures["errors"]["layout"]["title"]["text"]
        assert title.startswith("cfg + dpmpp_2m" if GUIDANCE[method].particle else method)


def test_every_solver_and_the_scale_and_step_ends(explorer, study):
    for solver in HEATMAP_SOLVERS:
        update = explorer.update(method="cfg", solver=solver, scale=1.0, steps=5)
        assert update.ok, update.error
        assert study.error("cfg", 1.0, solver, 5) == pytest.approx(update.result.errors.loc[1.0, 5])
    for scale, steps in ((0.0, 1), (15.0, 200), (2.5, 3)):
        update = explorer.update(solver="dpmpp_2m", scale=scale, steps=steps)
        assert update.ok, update.error
        assert len(update.figures["errors"]["data"]) == 1  # off the heatmap grid: no marker
        assert update.result.smc.ess.shape == (steps,)
        if steps == 1:  # one step from pure noise lands every sample on the data mean
            assert "spread n/a" in update.figures["samples"]["layout"]["title"]["text"]


def test_samples_title_reports_the_measurements(explorer):
    update = explorer.update(method="cfg", scale=7.5, steps=10, solver="unipc_bh2")
    metrics = update.result.metrics
    title = update.figures["samples"]["layout"]["title"]["text"]
    assert f"precision {metrics['precision']:.3f}" in title
    assert f"sliced W to the target {metrics['sliced W']:.3f}" in title
    # CFG at w = 7.5 is farther from its target than two exact sample sets are from each other
    assert metrics["sliced W"] > 3 * update.result.target_metrics["sliced W"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"scale": 16.0}, "guidance scale w must be a number in [0, 15], got 16.0"),
        ({"scale": float("nan")}, "guidance scale w must be a number in [0, 15], got nan"),
        ({"steps": 0}, "solver steps (NFE) must be an integer in [1, 200], got 0"),
        ({"steps": 2.5}, "solver steps (NFE) must be an integer in [1, 200], got 2.5"),
        ({"method": "pag"}, "guidance method must be one of 'cfg', 'cfg_rescale'"),
        ({"solver": "euler"}, "ODE solver must be one of 'ddim', 'dpmpp_2m'"),
    ],
)
def test_bad_input_is_a_readable_error_and_keeps_the_last_state(explorer, values, message):
    good = explorer.update(method="cfg", scale=1.0, steps=5, solver="ddim")
    assert good.ok
    update = explorer.update(**values)
    assert not update.ok and message in update.error
    assert explorer.values == good.values


def test_unknown_control_names_are_refused(explorer):
    with pytest.raises(TypeError, match="has no control 'w'"):
        explorer.update(w=3.0)


def test_revisits_select_from_the_cache(explorer):
    first = explorer.update(method="cfg", scale=7.5, steps=10, solver="dpmpp_2m").result
    explorer.update(scale=1.0)
    computed = sum(memo.misses for memo in memos())
    again = explorer.update(scale=7.5).result
    assert sum(memo.misses for memo in memos()) == computed  # nothing was computed again
    assert again.errors.equals(first.errors)
    assert np.array_equal(again.panel.samples, first.panel.samples)
