"""Panel front end of an Explorer, for ``panel serve`` (and Panel in a notebook).

Built without a running server: widgets are plain Panel objects, and the figures are one
`PanelPlotGrid`, JupyterLab's `PlotGrid` module (widgets/_plot_grid.js) run through Panel's
anywidget adapter: an update is one message holding the changed figures (arrays as binary
buffers), each drawn once with ``Plotly.react``. (``pn.pane.Plotly`` per panel cost more: the
whole figure went through Bokeh's document model on every move and each pane was drawn twice,
once for its data and once for its layout.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import panel as pn
import param
from bokeh.models import CustomJSTickFormatter

from ._plot_grid import CSS, first_revisions, next_revisions, plotly_source, to_json
from .explorer import (
    Choice,
    Control,
    Explorer,
    ExplorerView,
    MultiChoice,
    Slider,
    Toggle,
    Update,
    number_text,
)

_SLIDER_WIDTH = 340
# A select as wide as its longest option (about 7.5 px a character, 40 px of arrow and padding)
_SELECT_CHAR_PX, _SELECT_PAD_PX, _SELECT_MIN_PX, _SELECT_MAX_PX = 7.5, 40, 200, 560
_STATUS_STYLES = {"color": "#888", "font-size": "0.85em"}
_FORMAT_SPEC = re.compile(r"^\.(\d+)([efg])$")
# An Alert renders Markdown; a solver named dpm_solver_2m must not turn into italics.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def _js_number_formatter(readout_format: str | None, log_base: int | None) -> CustomJSTickFormatter:
    """A slider readout in JavaScript, from a Python format spec such as ".3g" or ".2e".

    For a log slider the widget moves in the exponent, so the readout shows base**exponent:
    the reader sees the actual value, never its logarithm.
    """
    match = _FORMAT_SPEC.match(readout_format or ".3g")
    digits, kind = (match.group(1), match.group(2)) if match else ("3", "g")
    value = f"Math.pow({log_base}, tick)" if log_base else "tick"
    text = {
        "g": f"parseFloat(v.toPrecision({max(int(digits), 1)})).toString()",
        "f": f"v.toFixed({digits})",
        "e": f"v.toExponential({digits})",
    }[kind]
    return CustomJSTickFormatter(code=f"const v = {value}; return {text};")


def _label(control: Control) -> dict[str, str]:
    # Panel 1.9 shows a widget's `label` and deprecates `name` for it; older Panels only
    # have `name`.
    key = "label" if "label" in pn.widgets.Widget.param else "name"
    return {key: control.label}


def _stop_formatter(stops: tuple[float, ...]) -> CustomJSTickFormatter:
    """A slider over stop indices that reads out the stop itself."""
    labels = json.dumps([number_text(stop) for stop in stops])
    return CustomJSTickFormatter(code=f"return {labels}[Math.round(tick)];")


def _slider_widget(control: Slider, value: float) -> pn.widgets.Widget:
    if control.stops is not None:
        return pn.widgets.IntSlider(
            **_label(control),
            start=0,
            end=len(control.stops) - 1,
            value=control.stop_index(value),
            step=1,
            format=_stop_formatter(control.stops),
            width=_SLIDER_WIDTH,
        )
    if control.integer:
        return pn.widgets.IntSlider(
            **_label(control),
            start=int(control.min),
            end=int(control.max),
            value=int(value),
            step=max(1, round(control.widget_step)),
            width=_SLIDER_WIDTH,
        )
    if control.log:
        return pn.widgets.FloatSlider(
            **_label(control),
            start=control.exponent(control.min),
            end=control.exponent(control.max),
            value=control.exponent(value),
            step=control.widget_step,
            format=_js_number_formatter(control.readout_format, control.log_base),
            width=_SLIDER_WIDTH,
        )
    extra = {}
    if control.readout_format is not None:
        extra["format"] = _js_number_formatter(control.readout_format, None)
    return pn.widgets.FloatSlider(
        **_label(control),
        start=control.min,
        end=control.max,
        value=value,
        step=control.widget_step,
        width=_SLIDER_WIDTH,
        **extra,
    )


def _options_width(control: Choice | MultiChoice) -> int:
    """Pixels for the longest option label (and the label above), within bounds."""
    longest = max(len(text) for text in (control.label, *(label for label, _ in control.pairs)))
    wanted = round(longest * _SELECT_CHAR_PX + _SELECT_PAD_PX)
    return min(max(wanted, _SELECT_MIN_PX), _SELECT_MAX_PX)


def _control_widget(control: Control, value: Any) -> pn.widgets.Widget:
    if isinstance(control, Slider):
        return _slider_widget(control, value)
    if isinstance(control, Choice):
        return pn.widgets.Select(
            **_label(control),
            options=dict(control.pairs),
            value=value,
            width=_options_width(control),
            styles={"max-width": "100%"},
        )
    if isinstance(control, MultiChoice):
        return pn.widgets.MultiChoice(
            **_label(control),
            options=dict(control.pairs),
            value=list(value),
            width=_options_width(control),
            styles={"max-width": "100%"},
        )
    if isinstance(control, Toggle):
        return pn.widgets.Checkbox(**_label(control), value=value)
    raise TypeError(f"unsupported control type {type(control).__name__}")


def _same(value: Any) -> Any:
    return value


def _conversions(control: Control) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(to the widget, from the widget): how a control's value and its Panel widget's differ
    (a log slider moves in the exponent; a MultiChoice holds a list, the control a tuple)."""
    if isinstance(control, Slider) and control.log:
        return control.exponent, control.from_exponent
    if isinstance(control, Slider) and control.stops is not None:
        return control.stop_index, control.stops.__getitem__
    if isinstance(control, MultiChoice):
        return list, tuple
    return _same, _same


class PanelPlotGrid(pn.custom.AnyWidgetComponent):
    """An explorer's figure panels in Panel: the same browser module, state and `show` as
    JupyterLab's `PlotGrid` (``figures`` maps panel name -> figure dict with a revision)."""

    _esm = Path(__file__).with_name("_plot_grid.js")
    _stylesheets = [CSS]  # noqa: RUF012  (Panel's own class attribute)
    plotly_js = param.String(default=plotly_source(), doc="plotly.js, evaluated once per page")
    panels = param.List(doc='[{"name", "height", "wide"}] in display order')
    # panel name -> figure dict with its revision, as sent (arrays as {"__ndarray__", dtype,
    # shape, buffer} with bytes buffers: Bokeh sends those as binary frames)
    figures = param.Dict()
    status = param.String(default="", doc="non-empty: the figures are dimmed under this note")

    def __init__(self, figures: dict[str, dict[str, Any]], **params: Any) -> None:
        super().__init__(figures=to_json(figures, bytes), **params)
        self.shown = figures  # what the panels show, as given (numpy arrays)

    def show(self, figures: dict[str, dict[str, Any]]) -> list[str]:
        """Show these figures (the changed ones in one message); the names of those that
        changed."""
        shown, changed = next_revisions(self.shown, figures)
        if changed:
            self.shown = shown
            self.figures = to_json(shown, bytes)
        return changed


def _in_a_served_session() -> bool:
    doc = pn.state.curdoc
    return doc is not None and doc.session_context is not None


class PanelExplorerView(ExplorerView):
    """Builds and drives the Panel front end; ``root`` is the Column to show or serve.

    In a served session updates run on the view's worker thread (``background``, see
    ExplorerView), so the session's event loop, and every other session, keeps answering while
    one computes; Panel forwards the changes made on that thread to the session's loop.
    """

    def __init__(self, explorer: Explorer, background: bool | None = None) -> None:
        super().__init__(explorer, _in_a_served_session() if background is None else background)
        values = explorer.values
        self.control_widgets: dict[str, pn.widgets.Widget] = {
            name: _control_widget(control, values[name])
            for name, control in explorer.controls.items()
        }
        panels = [
            {"name": name, "height": panel.height, "wide": panel.wide}
            for name, panel in explorer.panels.items()
        ]
        self.plots = PanelPlotGrid(
            panels=panels,
            figures=first_revisions(self.initial_figures()),
            sizing_mode="stretch_width",
        )
        self.error_widget = pn.pane.Alert("", alert_type="danger", visible=False, margin=(4, 10))
        self.status_widget = pn.pane.HTML("", styles=_STATUS_STYLES, margin=(0, 10))
        self.root = pn.Column(
            self._header(),
            pn.FlexBox(*self.control_widgets.values(), align_items="flex-end"),
            self.error_widget,
            self.plots,
            self.status_widget,
            sizing_mode="stretch_width",
        )
        # The Column is what a script serves; tests and measure_latency reach the controller here.
        self.root._explorer_view = self

        self.show_error(self.error)
        self.show_status(self.initial_status())
        for name, widget in self.control_widgets.items():
            widget.param.watch(self._on_value_change, self._watched_parameter(name))

    def _header(self) -> pn.pane.Markdown:
        text = f"### {self.explorer.title}"
        if self.explorer.description:
            text += f"\n\n{self.explorer.description}"
        return pn.pane.Markdown(text, sizing_mode="stretch_width")

    @property
    def figures(self) -> dict[str, dict[str, Any]]:
        """The figure dict each panel shows (what was last sent to the browser)."""
        return self.plots.shown

    def _is_throttled(self, name: str) -> bool:
        return isinstance(self.explorer.controls[name], Slider) and not self.continuous

    def _watched_parameter(self, name: str) -> str:
        # value_throttled changes only when the reader releases the slider handle.
        return "value_throttled" if self._is_throttled(name) else "value"

    # ----- ExplorerView -----------------------------------------------------------------------

    def _on_value_change(self, _event: param.parameterized.Event) -> None:
        self.refresh()

    def widget_values(self) -> dict[str, Any]:
        controls = self.explorer.controls
        values = {}
        for name, widget in self.control_widgets.items():
            # In on-release mode the throttled value is the one the reader committed to.
            raw = widget.value_throttled if self._is_throttled(name) else widget.value
            _, from_widget = _conversions(controls[name])
            values[name] = from_widget(raw)
        return values

    def set_widget_value(self, name: str, value: Any) -> None:
        widget = self.control_widgets[name]
        to_widget, _ = _conversions(self.explorer.controls[name])
        widget_value = to_widget(value)
        if self._is_throttled(name):
            # What a browser does on release: value, then the (read-only) throttled value.
            with param.edit_constant(widget):
                widget.param.update(value=widget_value, value_throttled=widget_value)
        else:
            widget.value = widget_value

    def apply_figures(self, update: Update) -> None:
        assert update.figures is not None
        # One message (on the session's thread; from the worker, Panel schedules the change
        # onto the session's loop); the browser redraws the changed panels.
        self.plots.show(update.figures)

    def show_error(self, message: str | None) -> None:
        self.error_widget.object = _MARKDOWN_SPECIAL.sub(r"\\\1", message or "")
        self.error_widget.visible = message is not None

    def show_status(self, text: str) -> None:
        self.status_widget.object = text

    def show_busy(self, text: str | None) -> None:
        self.plots.status = text or ""  # the grid dims its figures under this note
        if text is not None:
            self.show_status(text)
