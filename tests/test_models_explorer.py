"""Notebook 08's explorer, driven headlessly: every panel, the steps slider's stops, what the
split panel stacks, and the settings it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from widgets.explorers.learned_models import learned_models_app
from widgets.topics import topic
from workbench.models.study import models_size


@pytest.fixture(scope="module")
def explorer():
    app = learned_models_app(smoke=True)
    assert app.update().ok
    return app


def test_every_panel_draws(explorer):
    update = explorer.update(steps=5, solver="ddim", model="600x32")
    assert update.ok and set(update.figures) == {"samples", "scores", "split", "guided", "matched"}
    samples = update.figures["samples"]["data"][2]
    assert len(samples["x"]) == models_size(True).n_shown
    assert "5 steps" in update.figures["samples"]["layout"]["title"]["text"]


def test_the_split_panel_stacks_shares_that_add_to_one(explorer):
    data = explorer.update(steps=10, solver="dpmpp_2m", model="300x32").figures["split"]["data"]
    bars = [t for t in data if t["type"] == "bar"]
    assert len(bars) == 3
    np.testing.assert_allclose(sum(np.asarray(b["y"], dtype=float) for b in bars), 1, atol=1e-6)
    total = next(t for t in data if t.get("yaxis") == "y2" and t.get("name"))
    assert len(total["x"]) == len(models_size(True).steps)


def test_the_selected_network_is_drawn_thick(explorer):
    data = explorer.update(model="300x32").figures["scores"]["data"]
    widths = {t["name"]: t["line"]["width"] for t in data}
    assert widths["trained: 300 steps, width 32"] > widths["trained: 600 steps, width 32"]


def test_the_steps_slider_offers_the_computed_step_counts_only(explorer):
    assert explorer.controls["steps"].stops == models_size(True).steps
    update = explorer.update(steps=4)
    assert not update.ok and "must be one of 2, 3, 5, 10, 20, got 4" in update.error


def test_an_unknown_model_is_a_one_line_message(explorer):
    before = explorer.values
    update = explorer.update(model="3000x64")  # a full-size network, not trained in SMOKE
    assert not update.ok and "\n" not in update.error
    assert explorer.values == before


def test_the_topic_entry_moves_the_steps_slider():
    entry = topic("learned-models")
    assert entry.app is learned_models_app and entry.control == "steps"
    control = learned_models_app(smoke=True).controls["steps"]
    low, high, _ = entry.sweep
    assert control.min <= low < high <= control.max


def test_the_guidance_scale_moves_both_methods_samples(explorer):
    low = explorer.update(scale=1.0).figures["guided"]["data"]
    high = explorer.update(scale=8.0).figures["guided"]["data"]
    assert [t["name"] for t in low[1:]] == ["CFG", "autoguidance (weaker network)"]
    # at w = 1 both methods are the good network's conditional model: the same samples
    np.testing.assert_array_equal(low[1]["x"], low[2]["x"])
    assert not np.array_equal(low[1]["x"], high[1]["x"])
    assert "w = 8" in explorer.update(scale=8.0).figures["guided"]["layout"]["title"]["text"]


def test_the_matched_panel_rings_the_current_scale(explorer):
    data = explorer.update(scale=1.25).figures["matched"]["data"]
    curves = [t for t in data if t.get("mode") == "lines+markers"]
    assert {t["name"] for t in curves} == {"CFG", "autoguidance (weaker network)"}
    rings = [t for t in data if t.get("marker", {}).get("symbol") == "circle-open"]
    assert 1 <= len(rings) <= 2  # CFG past every target's precision has no match
