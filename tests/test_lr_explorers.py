"""Notebooks 03 and 04's explorers, driven headlessly: every control, figures against the sweeps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scratch

from widgets.explorers.lr_transfer import lr_depth_explorer, lr_width_explorer
from widgets.lr_transfer_figures import coord_check_figure, sweep_figure
from workbench import sweep
from workbench.scaling import coordinate_check, lr_sweep, seed_averaged
from workbench.scaling.summaries import CoordChecks, Transfer, TransferSweep

WIDTHS = (16, 32)
LRS = [2.0**k for k in range(-10, 3, 2)]  # 2^-10 ... 2^2: SP diverges at the top
# (alpha, lr_correction) of notebook 04's five configurations (at alpha 1 the rules are one)
SWEPT_DEPTH_CONFIGS = ((0.0, False), (0.0, True), (0.5, False), (0.5, True), (1.0, True))


@pytest.fixture(scope="module")
def width_sweeps(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(sweep.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        common = dict(widths=WIDTHS, lrs=LRS, seeds=(0, 1), steps=10, progress=False)
        return {
            ("sp", "adam"): lr_sweep(parametrization="sp", **common),
            ("mup", "adam"): lr_sweep(parametrization="mup", **common),
            ("mup", "sgd"): lr_sweep(parametrization="mup", optimizer="sgd", **common),
        }


@pytest.fixture(scope="module")
def depth_sweeps(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(sweep.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        common = dict(
            parametrization="mup",
            model="resmlp",
            widths=[16],
            depths=(2, 4),
            lrs=LRS,
            steps=8,
            progress=False,
        )
        return {
            (alpha, corrected): lr_sweep(alpha=alpha, lr_correction=corrected, **common)
            for alpha, corrected in SWEPT_DEPTH_CONFIGS
        }


def summaries(sweeps, axis="width"):
    return {key: TransferSweep.from_sweep(df, axis) for key, df in sweeps.items()}


def test_width_explorer_every_swept_combination(width_sweeps):
    explorer = lr_width_explorer(summaries(width_sweeps))
    for key, df in width_sweeps.items():
        for width in WIDTHS:
            for log2_lr in (-10.0, -4.0, 2.0):
                update = explorer.update(sweep=key, value=width, log2_lr=log2_lr)
                assert update.ok, update.error
                view = update.result
                # the training panel shows exactly this run's curves, seed by seed
                rows = df[(df.width == width) & (df.lr == 2.0**log2_lr)].sort_values("seed")
                np.testing.assert_array_equal(view.run.curves, np.stack(rows.curve.to_numpy()))
                seeds = update.figures["training"]["data"][: 2 * len(rows) : 2]  # raw curves
                for trace, curve in zip(seeds, rows.curve, strict=True):
                    np.testing.assert_array_equal(
                        np.array(trace["y"], dtype=float),
                        np.where(np.isfinite(curve), curve, np.nan),
                    )
                smooth = np.array(update.figures["training"]["data"][1]["y"], dtype=float)
                expected_smooth = pd.Series(rows.curve.iloc[0]).rolling(10, min_periods=1).mean()
                finite = np.isfinite(rows.curve.iloc[0])
                np.testing.assert_allclose(smooth[finite], expected_smooth[finite], rtol=1e-6)
                # the circled point is the seed mean of this run's final losses
                marker = update.figures["sweep"]["data"][-1]
                expected = rows.final_loss.mean()
                assert marker["x"] == [2.0**log2_lr]
                assert marker["y"] == ([expected] if np.isfinite(expected) else [None])


def test_width_explorer_sweep_panel_matches_the_sweep(width_sweeps):
    explorer = lr_width_explorer(summaries(width_sweeps))
    update = explorer.update(sweep=("sp", "adam"), value=32, log2_lr=-6.0)
    curves = update.figures["sweep"]["data"][: len(WIDTHS)]
    averaged = seed_averaged(width_sweeps[("sp", "adam")])
    for trace, width in zip(curves, WIDTHS, strict=True):
        own = averaged[averaged.width == width].sort_values("lr")
        np.testing.assert_allclose(trace["x"], own.lr)
        expected = [v if np.isfinite(v) else None for v in own.loss]
        assert trace["y"] == pytest.approx(expected)
    assert None in curves[0]["y"]  # SP diverges at 2^2: a gap, not a spike
    stars = update.figures["sweep"]["data"][len(WIDTHS)]
    assert np.isfinite(stars["x"]).all() and len(stars["x"]) == len(WIDTHS)


def test_width_explorer_offers_only_what_was_swept_and_clamps_lr(width_sweeps):
    explorer = lr_width_explorer(summaries(width_sweeps))
    sweep_choice = explorer.controls["sweep"]
    assert dict(sweep_choice.pairs) == {
        "SP Adam": ("sp", "adam"),
        "muP Adam": ("mup", "adam"),
        "muP SGD": ("mup", "sgd"),
    }
    update = explorer.update(sweep=("sp", "sgd"))
    assert not update.ok
    assert update.error == (
        "sweep must be one of ('sp', 'adam'), ('mup', 'adam'), ('mup', 'sgd'), got ('sp', 'sgd')"
    )
    bad = explorer.update(value=64)
    assert not bad.ok and "must be one of 16, 32" in bad.error
    assert explorer.controls["log2_lr"].max == 2.0
    diverged = explorer.update(sweep=("sp", "adam"), value=32, log2_lr=2.0)
    assert "diverged at step" in diverged.figures["training"]["layout"]["title"]["text"]


def test_width_explorer_says_when_an_lr_is_outside_a_sweep(tmp_path, monkeypatch, width_sweeps):
    monkeypatch.setenv(sweep.CACHE_ENV, str(tmp_path))
    narrow = lr_sweep(
        parametrization="umup", widths=WIDTHS, lrs=[0.25, 0.5, 1.0], steps=5, progress=False
    )
    explorer = lr_width_explorer(summaries({**width_sweeps, ("umup", "adam"): narrow}))
    update = explorer.update(sweep=("umup", "adam"), log2_lr=-10.0)
    assert update.ok and update.result.run.lr == 0.25
    assert "outside this sweep" in update.figures["training"]["layout"]["title"]["text"]
    assert update.figures["training"]["layout"]["title"]["text"].endswith(
        "<br><sub>2<sup>-10</sup> is outside this sweep (2<sup>-2</sup> to 2<sup>0</sup>); "
        "showing 2<sup>-2</sup></sub>"
    )


def test_depth_explorer_alpha_slider_and_correction(depth_sweeps):
    explorer = lr_depth_explorer(summaries(depth_sweeps, "depth"))
    assert explorer.controls["alpha"].step == 0.5
    # a short label: the slider keeps its length; its meaning in the notebook's symbols
    assert explorer.controls["alpha"].label == "α (branch × depth^-α)"
    for alpha in (0.0, 0.5, 1.0):
        for corrected in (True, False):
            update = explorer.update(alpha=alpha, lr_correction=corrected, value=4, log2_lr=-6.0)
            assert update.ok, update.error
            key = (alpha, True) if alpha == 1.0 else (alpha, corrected)
            df = depth_sweeps[key]
            rows = df[(df.depth == 4) & (df.lr == 2.0**-6)].sort_values("seed")
            np.testing.assert_array_equal(update.result.run.curves, np.stack(rows.curve.to_numpy()))
    assert not explorer.update(alpha=0.25).ok  # the slider moves in steps of 0.5
    # the titles name the configuration by its registry label
    title = explorer.update(alpha=0.5, lr_correction=True).figures["sweep"]["layout"]["title"]
    assert title["text"] == "alpha 1/2, lr x L^-1/2 (Depth-muP): final loss"


def test_depth_explorer_refuses_to_offer_an_alpha_not_swept_with_both_rules(depth_sweeps):
    partial = {key: df for key, df in depth_sweeps.items() if key != (0.5, False)}
    with pytest.raises(ValueError, match=r"^alpha 1/2, global lr was not swept; swept: alpha 0"):
        lr_depth_explorer(summaries(partial, "depth"))


def test_notebook_figures_have_finite_data(width_sweeps, depth_sweeps):
    pair = {key: width_sweeps[key] for key in (("sp", "adam"), ("mup", "adam"))}
    figure = sweep_figure(
        Transfer.of(pair, {("sp", "adam"): "SP", ("mup", "adam"): "muP"}, "width")
    )
    assert len(figure.data) == 2 * (len(WIDTHS) + 1)
    for trace in figure.data:
        y = np.array([np.nan if v is None else v for v in trace.y], dtype=float)
        assert np.isfinite(y).any()
    labels = {key: str(key) for key in depth_sweeps}
    depth = sweep_figure(Transfer.of(depth_sweeps, labels, "depth"), cols=2)
    assert len(depth.data) == len(SWEPT_DEPTH_CONFIGS) * 3
    checks = {"sp": coordinate_check(parametrization="sp", widths=(16, 32), steps=1)}
    coord = coord_check_figure(CoordChecks(checks, {"sp": "SP"}))
    assert len(coord.data) == 4 * 2  # layers x (init, step 1)
    assert all(
        np.isfinite(trace.y).all() and (np.asarray(trace.y) > 0).all() for trace in coord.data
    )


# ------------------------------------------------------------------------------ studies
def test_study_sizes_are_defined_once_for_both_profiles():
    from workbench.scaling.studies import depth_study, width_study

    smoke, full = width_study(True, steps=99, seeds=5).size, width_study(False, steps=99, seeds=5)
    assert (smoke.values, smoke.steps, smoke.seeds, smoke.octaves) == ((16, 32, 64), 30, (0,), 2)
    assert (smoke.coord_values, smoke.coord_steps) == ((32, 64, 128), 2)
    assert full.size.values == (16, 32, 64, 128, 256) and full.size.steps == 99
    assert full.size.seeds == tuple(range(5)) and full.size.octaves == 1
    depth = depth_study(True, width=16)
    assert depth.size.values == depth.size.coord_values == (2, 4, 8) and depth.width == 16
    assert depth_study().size.values == (2, 4, 8, 16, 32)


def test_width_study_metric_names_and_explorer(tmp_path, monkeypatch):
    from workbench.scaling.studies import StudySize, WidthStudy, coord_metric_rows

    monkeypatch.setenv(sweep.CACHE_ENV, str(tmp_path))
    study = WidthStudy(StudySize((16, 32), 4, (0,), 4, (16, 32), 1))
    adam = study.transfer([("sp", "adam"), ("mup", "adam"), ("umup", "adam")])
    sgd = study.transfer([("sp", "sgd"), ("mup", "sgd")])
    atan2 = study.transfer([("mup", "adam"), ("mup", "adam_atan2")])
    names = {
        f"{p}.{o}.{metric}"
        for p, rows in study.metric_tables(adam, sgd, atan2).items()
        for o, row in rows.items()
        for metric in row
    }
    per_width = {f"log2_lr_width{w}" for w in (16, 32)}
    expected = {
        f"{p}.adam.{m}"
        for p in ("sp", "mup", "umup")
        for m in {"drift_octaves", "transfer_penalty", *per_width}
    } | {"sp.sgd.drift_octaves", "mup.sgd.drift_octaves", "mup.adam_atan2.drift_octaves"}
    assert names == expected | {"mup.adam_atan2.max_offset_from_adam"}
    # the table the notebook shows and the numbers it records are the same fits
    assert adam.table.loc["drift", "SP Adam"] == adam.drift[("sp", "adam")]
    assert adam.table.loc[32, "muP Adam"] == adam.log2_lr(("mup", "adam"))[32]
    offsets = atan2.table_with_offset(("mup", "adam_atan2"), ("mup", "adam"), "diff")
    assert offsets["diff"].drop("drift").abs().max() == atan2.offset(
        ("mup", "adam_atan2"), ("mup", "adam")
    )
    assert "octaves under SP" in study.adam_summary(adam)
    assert "than under Adam" in study.sgd_summary(sgd, adam)
    checks = study.coordinate_checks()
    assert set(coord_metric_rows(checks)) == {"SP", "muP", "u-muP"}
    assert checks.verdicts().startswith("Verdicts: SP **")
    # the explorer is built from the study's summaries, memoized by content
    assert study.summaries()[("sp", "adam")] is adam.summaries[("sp", "adam")]
    explorer = lr_width_explorer(study.summaries())
    assert explorer.update(sweep=("umup", "adam"), value=16).ok


def test_depth_study_configurations_are_ids_with_labels():
    from workbench.scaling.studies import DEPTH_CONFIGS, depth_config_id

    assert list(DEPTH_CONFIGS) == [
        "alpha0_global",
        "alpha0_corrected",
        "alpha_half_global",
        "alpha_half_corrected",
        "alpha1",
    ]
    assert DEPTH_CONFIGS.label("alpha_half_corrected") == "alpha 1/2, lr x L^-1/2 (Depth-muP)"
    with pytest.raises(ValueError, match="unknown depth configuration 'alpha2'; choose from"):
        DEPTH_CONFIGS["alpha2"]
    # the explorer's (alpha, correction) positions name these ids; alpha 1 is one either way
    assert [depth_config_id(a, c) for a, c in SWEPT_DEPTH_CONFIGS] == list(DEPTH_CONFIGS)
    assert depth_config_id(1.0, False) == "alpha1"
    with pytest.raises(ValueError, match=r"^no depth configuration has alpha 0\.25 with one"):
        depth_config_id(0.25, False)


def test_depth_coordinate_checks_are_labelled_like_the_configurations(tmp_path, monkeypatch):
    from workbench.scaling.studies import DepthStudy, StudySize

    monkeypatch.setenv(sweep.CACHE_ENV, str(tmp_path))
    study = DepthStudy(StudySize((2, 4), 2, (0,), 4, (2, 4), 1), width=8)
    checks = study.coordinate_checks()
    assert checks.labels == {"alpha0": "alpha 0", "alpha0.5": "alpha 1/2", "alpha1": "alpha 1"}
    assert study.stream_growth_summary(checks).startswith(
        "At initialization the residual stream's RMS grows from depth 2 to depth 4 by a factor of "
    )
    assert " with alpha 0, " in study.stream_growth_summary(checks)


def test_the_studies_sentences_show_readable_numbers():
    from workbench.scaling.studies import _octaves, _percent

    assert (_octaves(1.0), _octaves(2.478253813916794), _octaves(0.0599)) == (
        "1 octave",
        "2.48 octaves",
        "0.0599 octaves",
    )
    assert _percent(0.15064022209892958) == "15.1%"


# ------------------------------------------------------------------- what a reader sees
def _positions(control):
    """Every value a control offers: options, both switch states, each slider step."""
    if hasattr(control, "pairs"):
        return [value for _, value in control.pairs]
    if not hasattr(control, "min"):
        return [False, True]
    return list(np.arange(control.min, control.max + control.step / 2, control.step))


def test_every_combination_the_apps_offer_computes(tmp_path, monkeypatch):
    from itertools import product

    from widgets.explorers.lr_transfer import lr_depth_app, lr_width_app

    with scratch.sweep_cache(tmp_path / "cache", monkeypatch):
        apps = {"width": lr_width_app(smoke=True), "depth": lr_depth_app(smoke=True)}
    # notebook 03's sweep choice lists the six swept pairs, u-muP only with Adam
    labels = [label for label, _ in apps["width"].controls["sweep"].pairs]
    assert labels == [
        "SP Adam",
        "muP Adam",
        "u-muP Adam",
        "SP SGD",
        "muP SGD",
        "muP Adam-atan2",
    ]
    for explorer in apps.values():
        names = list(explorer.controls)
        offered = product(*(_positions(explorer.controls[name]) for name in names))
        failures = []
        for values in offered:
            update = explorer.update(**dict(zip(names, values, strict=True)))
            if not update.ok:
                failures.append((values, update.error))
        assert failures == []
    assert len(list(product(*map(_positions, apps["depth"].controls.values())))) == 3 * 2 * 3 * 15


def test_panels_take_the_container_width_with_readable_axes_labels_and_colors(width_sweeps):
    from widgets.figures import color_map

    explorer = lr_width_explorer(summaries(width_sweeps))
    update = explorer.update(sweep=("mup", "sgd"), value=16, log2_lr=-4.0)
    for figure in update.figures.values():
        assert "width" not in figure["layout"]  # no fixed pixel width: the container's
    sweep_figure_ = update.figures["sweep"]
    xaxis = sweep_figure_["layout"]["xaxis"]
    assert xaxis["type"] == "log" and xaxis["title"]["text"] == "learning rate"
    assert xaxis["ticktext"] == [f"2<sup>{k}</sup>" for k in range(-10, 3, 2)]
    curves = sweep_figure_["data"][: len(WIDTHS)]
    assert [t["name"] for t in curves] == ["width 16", "width 32"]
    assert [t["line"]["color"] for t in curves] == list(color_map(WIDTHS).values())
    assert sweep_figure_["layout"]["title"]["text"] == "muP SGD: final loss"
    # the training panel draws the selected width in its sweep color, seeds by dash
    training = update.figures["training"]
    assert {t["line"]["color"] for t in training["data"][:-1]} == {color_map(WIDTHS)[16]}
    assert training["layout"]["title"]["text"].startswith("width 16, lr 2<sup>-4</sup>: ")


def test_notebook_figures_take_the_container_width_and_base_2_log_axes(width_sweeps):
    pair = {key: width_sweeps[key] for key in (("sp", "adam"), ("mup", "adam"))}
    labels = {("sp", "adam"): "SP Adam", ("mup", "adam"): "muP Adam"}
    sweeps = sweep_figure(Transfer.of(pair, labels, "width"))
    assert sweeps.layout.width is None
    assert sweeps.layout.xaxis.type == "log" and sweeps.layout.xaxis2.type == "log"
    assert list(sweeps.layout.xaxis.ticktext) == [f"2<sup>{k}</sup>" for k in range(-10, 3, 2)]
    assert [a.text for a in sweeps.layout.annotations] == ["SP Adam", "muP Adam"]
    checks = {
        p: coordinate_check(parametrization=p, widths=(16, 32, 64), steps=1) for p in ("sp", "mup")
    }
    coord = coord_check_figure(CoordChecks(checks, {"sp": "SP", "mup": "muP"}))
    assert coord.layout.width is None
    assert list(coord.layout.xaxis.ticktext) == ["2<sup>4</sup>", "2<sup>5</sup>", "2<sup>6</sup>"]
    assert coord.layout.yaxis.type == "log" and "μ" not in "".join(coord.layout.yaxis.ticktext)
    # one color per layer, the same layer the same color in both panels
    colors = {}
    for trace in coord.data:
        colors.setdefault(trace.legendgroup, set()).add(trace.line.color)
    assert all(len(c) == 1 for c in colors.values())
    assert len({c.pop() for c in colors.values()}) == len(colors) == 4


def test_each_notebooks_claims_read_its_recorded_metrics_and_hold_in_full():
    import json
    from pathlib import Path

    from workbench.claims import claims_table
    from workbench.scaling.studies import DEPTH_CLAIMS, WIDTH_CLAIMS

    baselines = Path(__file__).parent / "baselines"
    for stem, claims in (
        ("03_lr_transfer_width", WIDTH_CLAIMS),
        ("04_lr_transfer_depth", DEPTH_CLAIMS),
    ):
        profiles = json.loads((baselines / f"{stem}.json").read_text())["profiles"]
        values = {
            profile: {name: entry["value"] for name, entry in metrics.items()}
            for profile, metrics in profiles.items()
        }
        for claim in claims:
            assert set(claim.metrics()) <= set(values["smoke"]) & set(values["full"]), claim
        table = claims_table(claims, values["full"])
        assert list(table.verdict) == ["holds"] * len(claims), table
        assert len(claims_table(claims, values["smoke"])) == len(claims)


@pytest.mark.parametrize("frontend", ["ipywidget", "panel"])
def test_both_front_ends_offer_the_sweeps_by_label_and_switch_between_them(width_sweeps, frontend):
    explorer = lr_width_explorer(summaries(width_sweeps))
    view = getattr(explorer, frontend)()._explorer_view
    dropdown = view.control_widgets["sweep"]
    labels = dropdown.options if frontend == "panel" else dict(dropdown.options)
    assert list(labels) == ["SP Adam", "muP Adam", "muP SGD"]
    view.set_control("sweep", ("mup", "sgd"))
    assert explorer.last_update.result.sweep_label == "muP SGD"
    assert explorer.values["sweep"] == ("mup", "sgd")
