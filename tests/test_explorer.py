"""Headless tests of the Explorer framework and both of its front ends.

A tiny explorer (a sum of harmonics of a sine or square wave) exercises every control type;
the figures' data are compared with arrays computed independently in the test.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import pytest

from widgets import (
    Choice,
    ControlError,
    Explorer,
    FigurePanel,
    MultiChoice,
    Slider,
    Toggle,
    Update,
    measure_latency,
)

T = np.linspace(0.0, 1.0, 64)
BUG_FREQUENCY = 7  # compute raises a non-ValueError here, standing in for a bug


def wave(waveform: str, phase: np.ndarray) -> np.ndarray:
    return np.sin(phase) if waveform == "sine" else np.sign(np.sin(phase))


def expected_components(
    amplitude: float = 1.0,
    frequency: int = 2,
    waveform: str = "sine",
    envelope: bool = False,
    harmonics: tuple[int, ...] = (1,),
    damping: float = 0.01,
) -> dict[int, np.ndarray]:
    decay = np.exp(-damping * 100 * T) if envelope else np.ones_like(T)
    return {
        h: amplitude / h * wave(waveform, 2 * np.pi * frequency * h * T) * decay for h in harmonics
    }


def compute(
    amplitude: float,
    frequency: int,
    waveform: str,
    envelope: bool,
    harmonics: tuple[int, ...],
    damping: float,
) -> dict[int, np.ndarray]:
    if waveform == "square" and 3 in harmonics:
        raise ValueError("a square wave supports harmonics 1 and 2 only\n(try the sine)")
    if frequency == BUG_FREQUENCY:
        raise RuntimeError("frequency 7 hits a bug")
    return expected_components(amplitude, frequency, waveform, envelope, harmonics, damping)


def signal_traces(components: dict[int, np.ndarray]) -> list[dict[str, Any]]:
    total = sum(components.values())
    return [{"type": "scatter", "x": T, "y": total, "mode": "lines", "name": "signal"}]


def component_traces(components: dict[int, np.ndarray]) -> list[dict[str, Any]]:
    return [
        {"type": "scatter", "x": T, "y": y, "mode": "lines", "name": f"harmonic {h}"}
        for h, y in components.items()
    ]


def make_explorer(compute_fn=compute, continuous: Any = "auto") -> Explorer:
    return Explorer(
        title="Harmonics",
        description="A sum of harmonics, optionally damped.",
        controls=[
            Slider("amplitude", "amplitude A (V)", 0.0, 2.0, 1.0, step=0.05),
            Slider("frequency", "frequency f (Hz)", 1, 10, 2, integer=True),
            Choice("waveform", "waveform", ["sine", "square"], "sine"),
            Toggle("envelope", "decay envelope", False),
            MultiChoice("harmonics", "harmonics", {"1st": 1, "2nd": 2, "3rd": 3}, (1,)),
            Slider("damping", "damping rate γ (1/s)", 1e-3, 10.0, 0.01, log=True),
        ],
        compute=compute_fn,
        panels=[
            FigurePanel("signal", "signal", signal_traces, layout={"yaxis": {"title": "V"}}),
            FigurePanel(
                "components",
                "components",
                component_traces,
                layout=lambda c: {"xaxis": {"title": f"{len(c)} harmonics"}},
                wide=True,
            ),
        ],
        continuous=continuous,
    )


@pytest.fixture
def explorer() -> Explorer:
    return make_explorer()


def signal_y(update: Update) -> np.ndarray:
    return np.asarray(update.figures["signal"]["data"][0]["y"])


# --------------------------------------------------------------------------------------------
# Declaration
# --------------------------------------------------------------------------------------------


def test_defaults_controls_and_panels(explorer):
    assert explorer.defaults == {
        "amplitude": 1.0,
        "frequency": 2,
        "waveform": "sine",
        "envelope": False,
        "harmonics": (1,),
        "damping": 0.01,
    }
    assert list(explorer.controls) == list(explorer.defaults)
    assert list(explorer.panels) == ["signal", "components"]
    assert isinstance(explorer.controls["frequency"].default, int)


def test_invalid_declarations_fail_at_once():
    with pytest.raises(ValueError, match="min < max"):
        Slider("x", "x", 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="min > 0"):
        Slider("x", "x", 0.0, 1.0, 0.5, log=True)
    with pytest.raises(ControlError, match=r"x must be a number in \[0, 1\], got 2"):
        Slider("x", "x", 0.0, 1.0, 2)
    with pytest.raises(ValueError, match="two controls are named 'a'"):
        panel = FigurePanel("p", "p", lambda r: [])
        Explorer("t", [Toggle("a", "a", True), Toggle("a", "b", True)], lambda a: a, [panel])
    with pytest.raises(ValueError, match="at least one figure panel"):
        Explorer("t", [Toggle("a", "a", True)], lambda a: a, [])
    with pytest.raises(ValueError, match="continuous"):
        make_explorer(continuous="sometimes")


def test_log_slider_base():
    assert Slider("lr", "learning rate", 2.0**-12, 2.0**-2, 2.0**-6, log=True).log_base == 2
    assert Slider("s", "σ", 1e-3, 1e2, 1.0, log=True).log_base == 10
    assert Slider("s", "σ", 0.002, 80.0, 1.0, log=True).log_base == 10
    assert Slider("n", "samples", 1.0, 1000.0, 10.0, log=True).log_base == 10
    assert Slider("w", "width", 64.0, 4096.0, 256.0, log=True).log_base == 2


# --------------------------------------------------------------------------------------------
# The headless path
# --------------------------------------------------------------------------------------------


def test_update_returns_expected_figures(explorer):
    update = explorer.update(amplitude=0.5, harmonics=(1, 2))
    assert update.ok and update.error is None
    components = expected_components(amplitude=0.5, harmonics=(1, 2))
    np.testing.assert_allclose(signal_y(update), components[1] + components[2])
    component_data = update.figures["components"]["data"]
    assert [t["name"] for t in component_data] == ["harmonic 1", "harmonic 2"]
    np.testing.assert_allclose(component_data[1]["y"], components[2])
    assert update.figures["signal"]["layout"]["title"] == {"text": "signal"}
    assert update.figures["signal"]["layout"]["yaxis"] == {"title": "V"}
    assert update.figures["components"]["layout"]["xaxis"] == {"title": "2 harmonics"}
    # Figures take their container's width: no panel fixes one, nor can.
    assert all("width" not in figure["layout"] for figure in update.figures.values())
    with pytest.raises(TypeError, match="width"):
        FigurePanel("p", "p", signal_traces, width=500)
    assert update.compute_ms >= 0 and update.render_ms >= 0
    assert update.total_ms == pytest.approx(update.compute_ms + update.render_ms)


def test_missing_values_come_from_the_last_update(explorer):
    first = explorer.update()
    assert first.values == explorer.defaults
    explorer.update(amplitude=0.5)
    second = explorer.update(envelope=True)
    assert second.values == {**explorer.defaults, "amplitude": 0.5, "envelope": True}
    expected = expected_components(amplitude=0.5, envelope=True)[1]
    np.testing.assert_allclose(signal_y(second), expected)


def test_values_are_coerced(explorer):
    update = explorer.update(frequency=3.0, harmonics=[2, 1, 2], envelope=np.bool_(True))
    assert update.ok
    assert update.values["frequency"] == 3 and isinstance(update.values["frequency"], int)
    assert update.values["harmonics"] == (1, 2)
    assert update.values["envelope"] is True


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"amplitude": 3.0}, "amplitude A (V) must be a number in [0, 2], got 3.0"),
        ({"amplitude": float("nan")}, "amplitude A (V) must be a number in [0, 2], got nan"),
        ({"amplitude": float("inf")}, "amplitude A (V) must be a number in [0, 2], got inf"),
        ({"amplitude": "1"}, "amplitude A (V) must be a number in [0, 2], got '1'"),
        ({"frequency": 0}, "frequency f (Hz) must be an integer in [1, 10], got 0"),
        ({"frequency": 2.5}, "frequency f (Hz) must be an integer in [1, 10], got 2.5"),
        ({"frequency": True}, "frequency f (Hz) must be an integer in [1, 10], got True"),
        ({"waveform": "saw"}, "waveform must be one of 'sine', 'square', got 'saw'"),
        ({"envelope": 1}, "decay envelope must be True or False, got 1"),
        ({"harmonics": (4,)}, "harmonics must be a tuple of values from 1, 2, 3, got (4,)"),
        ({"harmonics": ()}, "harmonics must select at least one of 1, 2, 3, got ()"),
        ({"harmonics": "1"}, "harmonics must be a tuple of values from 1, 2, 3, got '1'"),
        ({"damping": 0.0}, "damping rate γ (1/s) must be a number in [0.001, 10], got 0.0"),
        ({"damping": 100}, "damping rate γ (1/s) must be a number in [0.001, 10], got 100"),
    ],
)
def test_invalid_values_give_an_inline_error_and_keep_the_state(explorer, values, expected):
    good = explorer.update(amplitude=0.5)
    bad = explorer.update(**values)
    assert not bad.ok
    assert bad.error == expected
    assert "\n" not in bad.error
    assert bad.result is None and bad.figures is None
    assert explorer.last_update is good
    assert explorer.values == good.values
    with pytest.raises(ControlError) as raised:
        bad.raise_for_error()
    assert str(raised.value) == expected
    # The next update starts from the last good values, not the rejected ones.
    assert explorer.update().values == good.values


def test_several_invalid_values_are_all_reported(explorer):
    update = explorer.update(amplitude=-1.0, waveform="saw")
    assert "amplitude A (V)" in update.error and "waveform" in update.error


def test_unknown_control_raises_type_error_naming_valid_names(explorer):
    with pytest.raises(TypeError, match=r"'amplitud'.*valid names: amplitude, frequency"):
        explorer.update(amplitud=1.0)


def test_compute_value_error_is_an_inline_one_line_error(explorer):
    good = explorer.update(harmonics=(1, 3))
    bad = explorer.update(waveform="square")
    assert bad.error == "a square wave supports harmonics 1 and 2 only (try the sine)"
    assert bad.figures is None and bad.values["waveform"] == "square"
    assert explorer.last_update is good


def test_other_compute_exceptions_are_re_raised(explorer):
    good = explorer.update()
    with pytest.raises(RuntimeError, match="bug"):
        explorer.update(frequency=BUG_FREQUENCY)
    assert explorer.last_update is good


def test_figure_returns_a_plotly_figure(explorer):
    figure = explorer.figure("signal")
    np.testing.assert_allclose(figure.data[0].y, expected_components()[1])
    assert figure.layout.title.text == "signal"
    update = explorer.update(harmonics=(1, 2, 3))
    assert len(explorer.figure("components", update).data) == 3
    with pytest.raises(KeyError, match="panels: signal, components"):
        explorer.figure("nope")
    with pytest.raises(ControlError):
        explorer.figure("signal", explorer.update(amplitude=9.0))


def test_importing_widgets_does_not_import_front_ends():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import widgets

    code = (
        "import sys, widgets; "
        "print(sorted(m for m in ('ipywidgets', 'panel', 'plotly') if m in sys.modules))"
    )
    package_root = str(Path(widgets.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# The ipywidgets front end
# --------------------------------------------------------------------------------------------


def shown_signal_y(view) -> np.ndarray:
    return np.asarray(view.figures["signal"]["data"][0]["y"])


def view_of(root):
    """The ExplorerView behind a rendered front end (an ipywidgets box or a Panel column)."""
    return root._explorer_view


def test_ipywidget_structure(explorer):
    import ipywidgets as ipw

    from widgets._plot_grid import PlotGrid

    box = explorer.ipywidget()
    view = view_of(box)
    assert isinstance(box, ipw.VBox)
    assert "Harmonics" in box.children[0].value
    assert set(view.control_widgets) == set(explorer.controls)
    assert isinstance(view.control_widgets["damping"], ipw.FloatLogSlider)
    assert isinstance(view.control_widgets["frequency"], ipw.IntSlider)
    assert isinstance(view.control_widgets["harmonics"], ipw.SelectMultiple)
    assert view.control_widgets["amplitude"].description == "amplitude A (V)"
    assert isinstance(view.plots, PlotGrid) and view.plots in box.children
    assert view.plots.panels == [
        {"name": "signal", "height": 380, "wide": False},
        {"name": "components", "height": 380, "wide": True},
    ]
    assert view.error_widget.layout.display == "none"
    np.testing.assert_allclose(view.figures["signal"]["data"][0]["y"], expected_components()[1])


def sent_messages(widget) -> list[tuple[dict[str, Any], list[Any]]]:
    """Record what a widget sends to the browser from now on: (message, binary buffers)."""
    sent = []
    send = widget._send

    def record(msg, buffers=None):
        sent.append((msg, buffers or []))
        return send(msg, buffers)

    widget._send = record
    return sent


def test_ipywidget_control_change_sends_every_figure_in_one_message(explorer):
    view = view_of(explorer.ipywidget())
    sent = sent_messages(view.plots)
    view.control_widgets["amplitude"].value = 0.5
    np.testing.assert_allclose(
        view.figures["signal"]["data"][0]["y"], expected_components(amplitude=0.5)[1]
    )
    assert view.error_widget.layout.display == "none"
    assert "updated in" in view.status_widget.value
    # one message for both panels, the arrays (x and y of 2 traces) as binary buffers
    ((message, buffers),) = sent
    assert set(message["state"]["figures"]) == {"signal", "components"}
    assert len(buffers) == 4
    y = message["state"]["figures"]["signal"]["data"][0]["y"]
    assert y["__ndarray__"] and y["dtype"] == "float64" and y["shape"] == [len(T)]

    view.control_widgets["damping"].value = 0.1
    view.control_widgets["envelope"].value = True
    expected = expected_components(amplitude=0.5, envelope=True, damping=0.1)[1]
    np.testing.assert_allclose(view.figures["signal"]["data"][0]["y"], expected)


def test_ipywidget_redraws_only_the_panels_that_changed():
    explorer = Explorer(
        "t",
        [Slider("x", "x", 0.0, 1.0, 0.5)],
        lambda x: x,
        [
            FigurePanel("moving", "moving", lambda x: [{"type": "scatter", "y": np.array([x])}]),
            FigurePanel("fixed", "fixed", lambda x: [{"type": "scatter", "y": np.ones(3)}]),
        ],
    )
    view = view_of(explorer.ipywidget())
    assert [view.figures[name]["revision"] for name in ("moving", "fixed")] == [0, 0]
    sent = sent_messages(view.plots)
    view.set_control("x", 0.75)
    ((message, _),) = sent
    figures = message["state"]["figures"]
    # the browser redraws a panel when its revision changes: the moving one only
    assert (figures["moving"]["revision"], figures["fixed"]["revision"]) == (1, 0)
    view.set_control("x", 0.75)  # nothing changed: nothing sent
    assert len(sent) == 1


def test_figures_travel_as_json_with_binary_arrays():
    from widgets._plot_grid import to_json

    encoded = to_json(
        {
            "y": np.array([1, 2], dtype=np.int64),
            "z": np.arange(6.0).reshape(2, 3),
            "text": np.array(["a", "b"]),
            "marker": {"size": np.float32(3.5), "opacity": [0.5, float("nan")]},
            "range": (np.int64(1), float("inf")),
        }
    )
    assert encoded["y"]["dtype"] == "float64" and bytes(encoded["y"]["buffer"]) == (
        np.array([1.0, 2.0]).tobytes()
    )
    assert encoded["z"]["shape"] == [2, 3] and len(encoded["z"]["buffer"]) == 6 * 8
    assert encoded["text"] == ["a", "b"]
    assert encoded["marker"] == {"size": 3.5, "opacity": [0.5, None]}
    assert encoded["range"] == [1, None] and type(encoded["range"][0]) is int


def test_ipywidget_vanished_trace_properties_are_reset():
    def traces(result: dict[str, Any]) -> list[dict[str, Any]]:
        trace = {"type": "scatter", "y": result["y"]}
        if result["marked"]:
            trace["marker"] = {"color": "red"}
            trace["name"] = "marked"
        return [trace]

    def marked_layout(result: dict[str, Any]) -> dict[str, Any]:
        return {"xaxis": {"range": [0, 3]}} if result["marked"] else {}

    explorer = Explorer(
        "t",
        [Toggle("marked", "marked", True)],
        lambda marked: {"y": np.arange(3.0) + marked, "marked": marked},
        [
            FigurePanel(
                "p",
                "p",
                traces,
                layout=lambda r: {"xaxis": {"range": [0, 3]}} if r["marked"] else {},
            )
        ],
    )
    view = view_of(explorer.ipywidget())
    assert view.figures["p"]["data"][0]["marker"] == {"color": "red"}
    view.set_control("marked", False)
    # The whole figure is sent and drawn with Plotly.react: what it no longer sets is gone.
    (trace,) = view.figures["p"]["data"]
    assert "marker" not in trace and "name" not in trace
    assert "xaxis" not in view.figures["p"]["layout"]
    np.testing.assert_allclose(trace["y"], [0.0, 1.0, 2.0])


def test_ipywidget_compute_error_shows_message_and_keeps_figures(explorer):
    view = view_of(explorer.ipywidget())
    view.control_widgets["harmonics"].value = (1, 3)
    before = np.array(view.figures["signal"]["data"][0]["y"])
    view.control_widgets["waveform"].value = "square"
    assert view.error_widget.layout.display != "none"
    assert "a square wave supports harmonics 1 and 2 only" in view.error_widget.value
    np.testing.assert_allclose(view.figures["signal"]["data"][0]["y"], before)
    # Fixing the combination clears the error.
    view.control_widgets["harmonics"].value = (1, 2)
    assert view.error_widget.layout.display == "none"
    expected = expected_components(waveform="square", harmonics=(1, 2))
    np.testing.assert_allclose(view.figures["signal"]["data"][0]["y"], expected[1] + expected[2])


def test_ipywidget_bug_is_shown_inline_and_logged(explorer, caplog):
    view = view_of(explorer.ipywidget())
    with caplog.at_level(logging.ERROR, logger="widgets.explorer"):
        view.control_widgets["frequency"].value = BUG_FREQUENCY
    assert "RuntimeError: frequency 7 hits a bug" in view.error_widget.value
    assert view.error_widget.layout.display != "none"
    assert any(record.exc_info for record in caplog.records)


def test_ipywidget_trace_count_change(explorer):
    view = view_of(explorer.ipywidget())
    assert len(view.figures["components"]["data"]) == 1
    view.control_widgets["harmonics"].value = (1, 2, 3)
    figure = view.figures["components"]
    assert [t["name"] for t in figure["data"]] == ["harmonic 1", "harmonic 2", "harmonic 3"]
    np.testing.assert_allclose(figure["data"][2]["y"], expected_components(harmonics=(3,))[3])
    assert figure["layout"]["xaxis"] == {"title": "3 harmonics"}
    view.control_widgets["harmonics"].value = (2,)
    assert [t["name"] for t in view.figures["components"]["data"]] == ["harmonic 2"]


def test_ipywidget_run_headlessly_keeps_its_figures_as_plotly_figures(explorer, monkeypatch):
    import IPython.display
    import plotly.graph_objects as go

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: shown.extend(objects))
    live_box = explorer.ipywidget()  # in JupyterLab: the widget, nothing else displayed
    assert shown == []
    assert "application/vnd.jupyter.widget-view+json" in live_box._repr_mimebundle_()

    monkeypatch.setenv("WORKBENCH_HEADLESS", "1")  # what the runner sets for papermill
    box = explorer.ipywidget()
    assert [type(figure) for figure in shown] == [go.Figure, go.Figure]  # one per panel
    np.testing.assert_allclose(shown[0].data[0].y, expected_components()[1])
    assert shown[1].layout.title.text == "components"
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" not in bundle
    assert "controls are live when the notebook runs in JupyterLab" in bundle["text/plain"]
    assert "“Harmonics”" in bundle["text/html"]


def compute_ok_only(ok: bool) -> bool:
    if not ok:
        raise ValueError("not ok")
    return ok


def test_ipywidget_initial_compute_error_builds_empty_figures():
    broken = Explorer(
        "t",
        [Toggle("ok", "ok", False)],
        compute_ok_only,
        [FigurePanel("p", "p", lambda r: [{"type": "bar", "y": [1, 2]}])],
    )
    view = view_of(broken.ipywidget())
    assert view.error == "not ok"
    assert len(view.figures["p"]["data"]) == 0
    view.set_control("ok", True)
    assert view.error is None
    assert view.figures["p"]["data"][0]["type"] == "bar"


def slow_compute(**values: Any) -> dict[int, np.ndarray]:
    time.sleep(0.06)
    return compute(**values)


def test_continuous_auto_mode():
    fast = view_of(make_explorer().ipywidget())
    assert fast.continuous
    assert fast.control_widgets["amplitude"].continuous_update
    slow = view_of(make_explorer(slow_compute).ipywidget())
    assert not slow.continuous
    assert not slow.control_widgets["amplitude"].continuous_update
    forced = view_of(make_explorer(slow_compute, continuous=True).ipywidget())
    assert forced.control_widgets["amplitude"].continuous_update


# --------------------------------------------------------------------------------------------
# The Panel front end
# --------------------------------------------------------------------------------------------


def test_panel_structure_and_servable(explorer):
    import panel as pn

    column = explorer.panel()
    view = view_of(column)
    assert isinstance(column, pn.Column)
    assert column.servable() is column
    assert set(view.control_widgets) == set(explorer.controls)
    assert view.control_widgets["amplitude"].label == "amplitude A (V)"
    from widgets._panel import PanelPlotGrid

    assert isinstance(view.plots, PanelPlotGrid)  # JupyterLab's PlotGrid module, in Panel
    assert [panel["name"] for panel in view.plots.panels] == list(explorer.panels)
    assert not view.error_widget.visible
    # The log slider moves in the exponent and maps back to the actual value.
    assert view.control_widgets["damping"].value == pytest.approx(math.log10(0.01))
    assert view.widget_values()["damping"] == pytest.approx(0.01)


def test_panel_continuous_control_change_updates_pane(explorer):
    view = view_of(explorer.panel())
    view.control_widgets["amplitude"].value = 0.5
    np.testing.assert_allclose(shown_signal_y(view), expected_components(amplitude=0.5)[1])
    view.control_widgets["harmonics"].value = [1, 2]
    assert len(view.figures["components"]["data"]) == 2
    view.set_control("damping", 1.0)
    view.set_control("envelope", True)
    expected = expected_components(amplitude=0.5, harmonics=(1, 2), envelope=True, damping=1.0)
    np.testing.assert_allclose(shown_signal_y(view), expected[1] + expected[2])
    assert "updated in" in view.status_widget.object


def test_panel_on_release_mode_uses_value_throttled():
    import param

    view = view_of(make_explorer(slow_compute).panel())
    assert not view.continuous
    before = view.figures["signal"]
    slider = view.control_widgets["amplitude"]
    slider.value = 0.5  # dragging: nothing recomputed yet
    assert view.figures["signal"] is before
    with param.edit_constant(slider):
        slider.value_throttled = 0.5  # released
    np.testing.assert_allclose(shown_signal_y(view), expected_components(amplitude=0.5)[1])


def test_panel_updates_reach_the_bokeh_models(explorer):
    column = explorer.panel()
    view = view_of(column)
    column.get_root()  # what `panel serve` does for each session
    view.set_control("amplitude", 0.25)
    (model, _), *_ = view.plots._models.values()
    # The grid's Bokeh model holds the figures as sent: arrays as typed bytes (binary frames).
    signal = model.data.figures["signal"]
    assert signal["revision"] == 1
    y = signal["data"][0]["y"]
    assert y["__ndarray__"] and isinstance(y["buffer"], bytes)
    synced_y = np.frombuffer(y["buffer"], dtype=y["dtype"]).reshape(y["shape"])
    np.testing.assert_allclose(synced_y, expected_components(0.25)[1])


def test_panel_compute_error_shows_alert_and_keeps_figure(explorer):
    view = view_of(explorer.panel())
    view.control_widgets["harmonics"].value = [1, 3]
    before = view.figures["signal"]
    view.control_widgets["waveform"].value = "square"
    assert view.error_widget.visible
    assert "a square wave supports harmonics 1 and 2 only" in view.error_widget.object
    assert view.figures["signal"] is before
    view.control_widgets["waveform"].value = "sine"
    assert not view.error_widget.visible


# --------------------------------------------------------------------------------------------
# Layout (what a browser then shows is checked by tests/ui)
# --------------------------------------------------------------------------------------------

LONG_OPTION = "classifier-free guidance + DPM-Solver-v3 (third order)"


def long_label_explorer() -> Explorer:
    def line(result: float) -> list[dict[str, Any]]:
        return [{"type": "scatter", "y": [1.0, result]}]

    return Explorer(
        "long labels",
        [
            Slider("alpha", "residual branch multiplier exponent alpha", 0.0, 1.0, 0.5),
            Choice("method", "method", [LONG_OPTION, "CFG"], "CFG"),
        ],
        lambda alpha, method: alpha,
        [FigurePanel("a", "a", line), FigurePanel("b", "b", line, wide=True)],
    )


def test_ipywidget_labels_sit_above_and_selects_fit_their_longest_option():
    view = view_of(long_label_explorer().ipywidget())
    slider = view.control_widgets["alpha"]
    # the label takes a line of its own inside the wrapping widget: the track keeps its width
    assert slider.style.description_width == "100%"
    assert (slider.layout.flex_flow, slider.layout.height) == ("row wrap", "auto")
    assert slider.layout.max_width == "100%"
    select = view.control_widgets["method"]
    assert select.layout.width == f"{len(LONG_OPTION) + 6}ch"
    assert select.layout.max_width == "100%"
    assert view.plots.panels[1] == {"name": "b", "height": 380, "wide": True}


def test_plot_grid_lays_panels_two_by_two_and_wide_ones_alone():
    from widgets._plot_grid import PlotGrid

    css = " ".join(PlotGrid._css.split())
    assert "grid-template-columns: repeat(auto-fit, minmax(min(460px, 100%), 1fr))" in css
    assert ".wb-wide { grid-column: 1 / -1; }" in css


def test_panel_grid_selects_and_wide_panels():
    from widgets._plot_grid import CSS

    view = view_of(long_label_explorer().panel())
    assert view.plots in list(view.root) and view.plots.sizing_mode == "stretch_width"
    assert view.plots._stylesheets == [CSS]  # the grid CSS JupyterLab's PlotGrid uses
    assert [(p["name"], p["wide"]) for p in view.plots.panels] == [("a", False), ("b", True)]
    assert view.control_widgets["method"].width == round(len(LONG_OPTION) * 7.5 + 40)
    assert view.control_widgets["method"].styles == {"max-width": "100%"}


# --------------------------------------------------------------------------------------------
# Updates in the background: latest wins, and a slow one says so
# --------------------------------------------------------------------------------------------


def front_end_view(frontend: str, explorer: Explorer):
    from widgets._ipy import IpyExplorerView
    from widgets._panel import PanelExplorerView

    view_class = IpyExplorerView if frontend == "ipywidget" else PanelExplorerView
    return view_class(explorer, background=True)


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("frontend", ["ipywidget", "panel"])
def test_moves_during_a_slow_update_coalesce_to_the_latest(frontend):
    import threading

    computed: list[float] = []
    release = threading.Event()

    def gated(**values: Any) -> dict[int, np.ndarray]:
        computed.append(values["amplitude"])
        if len(computed) == 2:  # the first move (the initial compute ran at construction)
            assert release.wait(10)
        return compute(**values)

    view = front_end_view(frontend, make_explorer(gated))
    view.set_widget_value("amplitude", 0.1)
    wait_until(lambda: len(computed) == 2)
    for amplitude in (0.2, 0.3, 0.4, 0.5, 0.6):  # five moves while that update runs
        view.set_widget_value("amplitude", amplitude)
    release.set()
    assert view.wait(10)
    assert computed[1:] == [0.1, 0.6]  # two computes: the running one, then only the latest
    assert view.update_count == 6 and view.compute_count == 2
    np.testing.assert_allclose(shown_signal_y(view), expected_components(amplitude=0.6)[1])


def busy_shown(view) -> tuple[str, bool]:
    """(the note over the figures, whether they are dimmed) as the front end shows them."""
    return view.plots.status, view.plots.status != ""


@pytest.mark.parametrize("frontend", ["ipywidget", "panel"])
def test_a_slow_update_says_computing_with_the_first_visit_estimate(frontend):
    import threading

    release = threading.Event()

    def slow_when_large(**values: Any) -> dict[int, np.ndarray]:
        if values["amplitude"] > 1.0:
            assert release.wait(10)
        return compute(**values)

    explorer = make_explorer(slow_when_large)
    explorer.cost = lambda **values: 12.4 if values["frequency"] == 3 else None
    view = front_end_view(frontend, explorer)
    view.BUSY_AFTER_S = 0.5  # a fast update stays well under it, even on a loaded machine
    shown: list[str | None] = []
    show_busy = view.show_busy
    view.show_busy = lambda text: (shown.append(text), show_busy(text))

    view.set_widget_value("frequency", 3)  # fast: no note at all
    assert view.wait(10)
    assert shown == [] and busy_shown(view) == ("", False)

    view.set_widget_value("amplitude", 1.5)
    wait_until(lambda: view.busy is not None)
    assert busy_shown(view) == ("computing… (first visit, about 12 s)", True)
    release.set()
    assert view.wait(10)
    assert busy_shown(view) == ("", False) and view.busy is None
    assert shown == ["computing… (first visit, about 12 s)", None]

    release.clear()
    view.set_widget_value("frequency", 4)  # amplitude still 1.5: slow again, no estimate
    wait_until(lambda: view.busy is not None)
    assert busy_shown(view) == ("computing…", True)
    release.set()
    assert view.wait(10)
    assert "updated in" in (
        view.status_widget.value if frontend == "ipywidget" else view.status_widget.object
    )


def test_first_visit_seconds_validates_and_survives_a_broken_cost(explorer, caplog):
    explorer.cost = lambda **values: 0.4 * values["frequency"]
    assert explorer.first_visit_seconds({"frequency": 3}) == pytest.approx(1.2)
    assert explorer.first_visit_seconds({"frequency": 99}) is None  # invalid: no estimate
    view = view_of(explorer.ipywidget())
    assert view.busy_text({"frequency": 3}) == "computing… (first visit, about 1.2 s)"
    explorer.cost = lambda **values: 1 / 0
    with caplog.at_level(logging.ERROR, logger="widgets.explorer"):
        assert explorer.first_visit_seconds({}) is None
    assert any(record.exc_info for record in caplog.records)


# --------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frontend", ["headless", "ipywidget", "panel"])
def test_measure_latency(explorer, frontend):
    # a numpy array of numpy floats, as a notebook would pass
    stats = measure_latency(
        explorer, "amplitude", np.linspace(0.2, 0.8, 4), frontend=frontend, repeats=3
    )
    assert stats["n"] == 12
    assert 0 < stats["median_ms"] <= stats["p90_ms"] <= stats["max_ms"] < 2000


def test_measure_latency_repeated_value_is_still_timed(explorer):
    stats = measure_latency(explorer, "amplitude", [0.5], frontend="ipywidget", repeats=3)
    assert stats["n"] == 3 and stats["median_ms"] > 0


def test_measure_latency_rejects_errors_and_bad_arguments(explorer):
    with pytest.raises(ControlError, match="amplitude"):
        measure_latency(explorer, "amplitude", [5.0])
    with pytest.raises(TypeError, match="valid names"):
        measure_latency(explorer, "nope", [1.0])
    with pytest.raises(ValueError, match="frontend"):
        measure_latency(explorer, "amplitude", [1.0], frontend="browser")


# --------------------------------------------------------------------------------------------
# A slider with stops: only the listed values, one key press apart, in both front ends
# --------------------------------------------------------------------------------------------

STEP_STOPS = (1, 2, 5, 10, 50)


def stops_explorer() -> Explorer:
    def compute(steps: int) -> int:
        return steps

    def traces(steps: int) -> list[dict]:
        return [{"type": "scatter", "x": [0, 1], "y": [steps, steps]}]

    return Explorer(
        title="stops",
        controls=[Slider("steps", "solver steps (NFE)", 1, 50, 5, stops=STEP_STOPS)],
        compute=compute,
        panels=[FigurePanel("p", "p", traces)],
    )


def test_a_slider_with_stops_takes_only_its_stops():
    control = stops_explorer().controls["steps"]
    assert control.validate(10) == 10 and control.validate(10.0) == 10
    assert isinstance(control.validate(10.0), int)
    with pytest.raises(ControlError, match="must be one of 1, 2, 5, 10, 50, got 7"):
        control.validate(7)
    for bad in ((1, 5, 2, 50), (2, 5, 50), (1,)):
        with pytest.raises(ValueError, match="stops must increase from min to max"):
            Slider("s", "s", 1, 50, 1, stops=bad)
    with pytest.raises(ValueError, match="takes no log or step"):
        Slider("s", "s", 1, 50, 1, stops=STEP_STOPS, log=True)


def test_ipywidget_slider_with_stops_moves_between_them():
    import ipywidgets as ipw

    view = view_of(stops_explorer().ipywidget())
    widget = view.control_widgets["steps"]
    assert isinstance(widget, ipw.SelectionSlider)
    assert [value for _, value in widget.options] == list(STEP_STOPS) and widget.value == 5
    assert widget.description == "solver steps (NFE)"
    view.set_widget_value("steps", 10)
    assert view.figures["p"]["data"][0]["y"] == [10, 10]


def test_panel_slider_with_stops_moves_in_the_stop_index_and_reads_out_the_stop():
    view = view_of(stops_explorer().panel())
    widget = view.control_widgets["steps"]
    assert (widget.start, widget.end, widget.step, widget.value) == (0, 4, 1, 2)
    assert '["1", "2", "5", "10", "50"][Math.round(tick)]' in widget.format.code
    view.set_widget_value("steps", 50)
    assert widget.value == 4 and view.widget_values()["steps"] == 50
    assert view.figures["p"]["data"][0]["y"] == [50, 50]
