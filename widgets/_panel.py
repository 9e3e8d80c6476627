"""Panel front end of an Explorer, for ``panel serve`` (and Panel in a notebook).

Built without a running server: widgets and panes are plain Panel objects, and each update
sets ``pn.pane.Plotly.object`` to the new figure dict (Panel sends it to plotly.js, which
diffs it with ``Plotly.react``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import panel as pn
import param
from bokeh.models import CustomJSTickFormatter

from .explorer import Choice, Control, Explorer, ExplorerView, MultiChoice, Slider, Toggle, Update

_SLIDER_WIDTH = 340
# A select as wide as its longest option (about 7.5 px a character, 40 px of arrow and padding)
_SELECT_CHAR_PX, _SELECT_PAD_PX, _SELECT_MIN_PX, _SELECT_MAX_PX = 7.5, 40, 200, 560
_STATUS_STYLES = {"color": "#888", "font-size": "0.85em"}
_BUSY_STYLES = {
    "color": "#5b4100",
    "background": "#fff6dc",
    "border": "1px solid #e0b252",
    "border-radius": "4px",
    "padding": "2px 12px",
    "font-weight": "600",
}
# Two panels per row where each gets 460 px, one where not; "wide" panels a row of their own.
_GRID_STYLES = {
    "display": "grid",
    "grid-template-columns": "repeat(auto-fit, minmax(min(460px, 100%), 1fr))",
    "gap": "4px 12px",
    "width": "100%",
}
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


def _slider_widget(control: Slider, value: float) -> pn.widgets.Widget:
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
    if isinstance(control, MultiChoice):
        return list, tuple
    return _same, _same


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
        self.plot_panes: dict[str, pn.pane.Plotly] = {
            name: self._plot_pane(name, figure) for name, figure in self.initial_figures().items()
        }
        self.error_widget = pn.pane.Alert("", alert_type="danger", visible=False, margin=(4, 10))
        self.busy_widget = pn.pane.HTML("", styles=_BUSY_STYLES, visible=False, margin=(4, 10))
        self.status_widget = pn.pane.HTML("", styles=_STATUS_STYLES, margin=(0, 10))
        self.root = pn.Column(
            self._header(),
            pn.FlexBox(*self.control_widgets.values(), align_items="flex-end"),
            self.error_widget,
            self.busy_widget,
            pn.Column(*self.plot_panes.values(), styles=_GRID_STYLES, sizing_mode="stretch_width"),
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

    def _plot_pane(self, name: str, figure: dict[str, Any]) -> pn.pane.Plotly:
        panel = self.explorer.panels[name]
        styles = {"min-width": "0", **({"grid-column": "1 / -1"} if panel.wide else {})}
        return pn.pane.Plotly(
            _without_width(figure),
            height=panel.height,
            sizing_mode="stretch_width",
            styles=styles,
            config={"responsive": True, "displaylogo": False},
        )

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
        # hold() sends all panes' changes to the browser as one message (on the session's
        # thread; from the worker, Panel schedules each change onto the session's loop).
        with pn.io.hold():
            for name, pane in self.plot_panes.items():
                pane.object = _without_width(update.figures[name])

    def show_error(self, message: str | None) -> None:
        self.error_widget.object = _MARKDOWN_SPECIAL.sub(r"\\\1", message or "")
        self.error_widget.visible = message is not None

    def show_status(self, text: str) -> None:
        self.status_widget.object = text

    def show_busy(self, text: str | None) -> None:
        for pane in self.plot_panes.values():
            pane.loading = text is not None  # Panel dims the pane under a spinner
        self.busy_widget.object = text or ""
        self.busy_widget.visible = text is not None


def _without_width(figure: dict[str, Any]) -> dict[str, Any]:
    """The figure sized by its pane (the grid cell), whatever width its layout asks for."""
    layout = {key: value for key, value in figure["layout"].items() if key != "width"}
    return {**figure, "layout": {**layout, "autosize": True}}
