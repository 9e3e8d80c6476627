"""Notebook 06's explorer, driven headlessly: every panel, the steps slider's snapping, the
settings it refuses, and what the error panel draws."""

from __future__ import annotations

import numpy as np
import pytest

from widgets.explorers.flows import flows_app
from widgets.topics import topic
from workbench.flows.study import flow_size


@pytest.fixture(scope="module")
def explorer():
    app = flows_app(smoke=True)
    assert app.update().ok
    return app


def test_every_panel_draws(explorer):
    update = explorer.update(steps=5)
    assert update.ok and set(update.figures) == {"samples", "paths", "errors"}
    samples = update.figures["samples"]["data"][1]
    assert len(samples["x"]) == flow_size(True).n_samples
    assert "5 steps" in update.figures["samples"]["layout"]["title"]["text"]


def test_the_steps_slider_offers_the_computed_step_counts_only(explorer):
    control = explorer.controls["steps"]
    assert control.stops == flow_size(smoke=True).steps
    for shown in control.stops:
        update = explorer.update(steps=shown)
        assert update.ok and update.result.steps == shown
        euler = update.figures["paths"]["data"][1]
        # one polyline per path: shown + 1 points and a gap each
        assert len(euler["x"]) == 24 * (shown + 2)
    update = explorer.update(steps=3)
    assert not update.ok and "must be one of 1, 2, 5, 10, 50, got 3" in update.error


def test_one_step_of_the_exact_flow_draws_every_sample_at_the_mean(explorer):
    samples = explorer.update(steps=1).figures["samples"]["data"][1]
    assert np.ptp(samples["x"]) < 1e-12 and np.ptp(samples["y"]) < 1e-12


def test_the_error_panel_has_the_exact_curve_dashed_and_the_sampling_floor(explorer):
    data = explorer.update(steps=10).figures["errors"]["data"]
    exact = [t for t in data if t.get("name", "").startswith("exact velocity")]
    assert len(exact) == 1 and exact[0]["line"]["dash"] == "dash"
    floor = [t for t in data if t.get("name", "").startswith("exact samples")]
    # Euler's samples approach the exact flow's own as the steps grow (to SW noise)
    assert len(floor) == 1 and exact[0]["y"][-1] == pytest.approx(floor[0]["y"][0], rel=0.05)


def test_an_uncomputed_setting_is_a_one_line_message(explorer):
    before = explorer.values
    update = explorer.update(rounds=2)
    assert not update.ok and "no reflow rounds" in update.error
    assert explorer.values == before  # the explorer keeps its last good state


def test_the_topic_entry_moves_the_steps_slider():
    entry = topic("flows")
    assert entry.app is flows_app and entry.control == "steps"
    control = flows_app(smoke=True).controls["steps"]
    low, high, _ = entry.sweep
    assert control.min <= low < high <= control.max and control.stops is not None
