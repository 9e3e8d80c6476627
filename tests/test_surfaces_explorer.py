"""Notebook 07's explorer, driven headlessly: every panel, the learning-rate slider over the
computed rates only, a 3-D target as a mesh, the refused settings, and the update time."""

from __future__ import annotations

import time

import pytest

from widgets.explorers.isosurfaces import isosurfaces_app
from widgets.topics import topic
from workbench.surfaces.study import iso_size


@pytest.fixture(scope="module")
def explorer():
    app = isosurfaces_app(smoke=True)
    assert app.update().ok
    return app


def test_every_panel_draws(explorer):
    update = explorer.update(target="box", extractor="flexicubes")
    assert update.ok and set(update.figures) == {"surface", "gradient", "loss", "sweep"}
    surface = update.figures["surface"]["data"]
    assert surface[0]["name"] == "exact target" and surface[1]["name"] == "FlexiCubes"
    loss = [t for t in update.figures["loss"]["data"] if t.get("mode") == "lines"]
    assert len(loss) == 3  # the three extractions at the same learning rate
    assert "-dL/dv" in update.figures["gradient"]["layout"]["title"]["text"]


def test_the_learning_rate_slider_offers_the_computed_rates_only(explorer):
    control = explorer.controls["log2_lr"]
    assert control.stops == iso_size(smoke=True).log2_lrs
    for k in control.stops:
        update = explorer.update(log2_lr=k, target="circle")
        assert update.ok and update.result.run.setting.log2_lr == k
    update = explorer.update(log2_lr=-4)
    assert not update.ok and "must be one of -7, -5, -3, got -4" in update.error


def test_a_3d_target_draws_a_mesh(explorer):
    update = explorer.update(target="cube")
    assert update.ok
    assert [t["type"] for t in update.figures["surface"]["data"]] == ["scatter3d", "mesh3d"]


def test_a_cached_setting_updates_in_under_100_ms(explorer):
    for extractor in ("marching", "meshsdf", "flexicubes"):
        explorer.update(target="box", extractor=extractor, log2_lr=-5)  # warm
    start = time.perf_counter()
    for iteration in (0, 5, 10, 15):
        assert explorer.update(iteration=iteration).ok
    assert (time.perf_counter() - start) / 4 < 0.1


def test_the_topic_entry_moves_the_learning_rate_slider():
    entry = topic("isosurfaces")
    assert entry.app is isosurfaces_app and entry.control == "log2_lr"
    control = isosurfaces_app(smoke=True).controls["log2_lr"]
    low, high, step = entry.sweep
    assert control.min <= low < high <= control.max and control.stops is not None
    assert all(k in control.stops for k in range(int(low), int(high) + 1, int(step)))
