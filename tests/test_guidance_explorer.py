"""Notebook 02's explorer, driven headlessly through every control, with bad input."""

from __future__ import annotations

import numpy as np
import pytest

from widgets import figures
from widgets.explorers.guidance_scales import (
    ess_figure,
    guidance_explorer,
    heatmaps_figure,
    method_colors,
    samples_figure,
    tradeoff_figure,
)
from workbench.claims import readable
from workbench.diffusion.guidance import GUIDANCE
from workbench.diffusion.guidance_experiments import error_grids, sweep, target_sweep
from workbench.diffusion.guidance_study import HEATMAP_SOLVERS, GuidanceStudy
from workbench.diffusion.guidance_views import sample_panels
from workbench.diffusion.sampling import SOLVERS
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
        whose = "cfg" if GUIDANCE[method].particle else method  # particles: CFG's errors
        assert title.startswith(f"{GUIDANCE.label(whose)}, DPM-Solver++(2M)<br>")


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
    assert title.startswith("classifier-free guidance (CFG), w = 7.5<br>")
    assert f"precision {readable(metrics['precision'])}" in title
    assert f"sliced W to the target {readable(metrics['sliced W'])}" in title
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


# ---------------------------------------------------------------- what a reader sees
def test_panels_take_the_container_width_and_samples_stay_square(explorer):
    update = explorer.update(method="cfg", scale=3.0, steps=10, solver="ddim")
    assert all("width" not in figure["layout"] for figure in update.figures.values())
    assert update.figures["samples"]["layout"]["yaxis"]["scaleanchor"] == "x"


def test_legends_colors_and_titles_say_each_methods_label(explorer):
    colors = method_colors()
    assert len(set(colors.values())) == len(GUIDANCE) and colors == figures.color_map(GUIDANCE)
    for method in ("cfg_threshold", "autoguidance", "svdd"):
        update = explorer.update(method=method, scale=3.0, steps=10, solver="unipc_bh2")
        _, samples = update.figures["samples"]["data"]
        assert samples["name"] == GUIDANCE.label(method)
        assert samples["marker"]["color"] == colors[method]
        target, curve, current = update.figures["tradeoff"]["data"]
        assert curve["name"] == GUIDANCE.label(method) and curve["line"]["color"] == colors[method]
        assert current["marker"]["color"] == colors[method]
        mine = "autoguidance's exact target" if method == "autoguidance" else "exact tilted target"
        assert target["name"] == mine
        texts = " ".join(f["layout"]["title"]["text"] for f in update.figures.values())
        assert "unipc_bh2" not in texts and method not in texts.replace("autoguidance (", "")
        assert SOLVERS.label("unipc_bh2") in update.figures["errors"]["layout"]["title"]["text"]
    assert "Feynman-Kac corrector SMC, w = 3" in update.figures["ess"]["layout"]["title"]["text"]


def test_log_axes_and_colorbars_print_plain_numbers(explorer):
    update = explorer.update(method="cfg", scale=7.5, steps=10, solver="dpmpp_2m")
    xaxis = update.figures["tradeoff"]["layout"]["xaxis"]
    assert xaxis["type"] == "log" and xaxis["autorange"] == "reversed"
    plotted = np.concatenate([t["x"] for t in update.figures["tradeoff"]["data"]])
    assert min(xaxis["tickvals"]) >= plotted.min() / 1.001
    assert max(xaxis["tickvals"]) <= plotted.max() * 1.001
    assert all("μ" not in text and "n" not in text for text in xaxis["ticktext"])
    colorbar = update.figures["errors"]["data"][0]["colorbar"]
    assert colorbar["ticktext"] == ["0.001", "0.01", "0.1", "1"]
    assert colorbar["tickvals"] == [-3, -2, -1, 0]


def test_description_and_controls_show_no_raw_latex_or_keys(explorer):
    text = explorer.description
    assert "^" not in text and "$" not in text and "\\" not in text
    assert "p(<i>x</i> | <i>c</i>)<sup><i>w</i></sup>" in text
    assert explorer.controls["solver"].options == SOLVERS.options(HEATMAP_SOLVERS)
    assert explorer.controls["scale"].label == "guidance scale w"


def test_cost_estimates_a_first_visit_and_is_none_once_cached():
    sizes = {"n_samples": 64, "n_error": 16, "ems_lambdas": 10, "ems_samples": 16}
    study = GuidanceStudy.two_class(seed=3, **sizes)  # a seed no other test solves
    explorer = guidance_explorer(
        study, heatmap_scales=SCALES, heatmap_nfes=NFES, curve_scales=(0.0, 1.0, 7.5)
    )
    values = {"scale": 7.5, "method": "cfg", "solver": "ddim", "steps": 10}
    first = explorer.cost(**values)
    assert first is not None and first > 0
    assert explorer.update(**values).ok
    assert explorer.cost(**values) is None  # everything it shows is stored now
    # a new solver needs its errors and solves again (on this small study maybe too quick to
    # announce); DPM-Solver-v3 also the statistics of each guided model: seconds
    unipc = explorer.cost(**{**values, "solver": "unipc_bh2"})
    v3 = explorer.cost(**{**values, "solver": "dpm_solver_v3"})
    assert v3 is not None and v3 > (unipc or 0.0)


@pytest.fixture(scope="module")
def notebook_results(study):
    scales = (0.0, 1.0, 7.5)
    curves = {m: sweep(study, m, "dpmpp_2m", 10, scales) for m in ("cfg", "cfg_rescale", "svdd")}
    solvers = {"cfg": ("ddim", "dpmpp_2m"), "cfg_threshold": ("ddim",)}
    grids = error_grids(study, solvers, SCALES, NFES)
    return curves, target_sweep(study, "cfg", scales), grids


def test_notebook_figures_take_the_container_width_and_say_labels(study, notebook_results):
    curves, target, grids = notebook_results
    samples = samples_figure(sample_panels(study, "cfg", (1.0, 7.5), "dpmpp_2m", 10), "cfg")
    trade = tradeoff_figure(curves, target)
    heat = heatmaps_figure(grids)
    smc = study.run("fk_smc", 3.0, "ddim", 10), study.run("fk_smc", 7.5, "ddim", 10)
    ess = ess_figure(dict(zip(("w = 3", "w = 7.5"), smc, strict=True)), study.problem.schedule)
    for fig in (samples, trade, heat, ess):
        assert fig.layout.width is None
    assert samples.layout.yaxis2.scaleanchor == "x2" and samples.layout.yaxis.scaleanchor == "x"
    assert samples.layout.title.text.startswith("classifier-free guidance (CFG): samples")
    names = [t.name for t in trade.data]
    assert names == ["exact tilted target", *(GUIDANCE.label(m) for m in curves)]
    assert [t.line.color for t in trade.data[1:]] == [method_colors()[m] for m in curves]
    assert trade.layout.xaxis.type == "log" and trade.layout.xaxis.ticktext
    titles = {a.text for a in heat.layout.annotations}
    assert {GUIDANCE.label("cfg"), GUIDANCE.label("cfg_threshold"), "DDIM"} <= titles
    assert "DPM-Solver++(2M)" in titles and not any("/" in t for t in titles)
    assert len({t.line.color for t in ess.data if t.mode == "lines"}) == 2
