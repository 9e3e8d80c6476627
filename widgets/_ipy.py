"""JupyterLab front end of an Explorer: ipywidgets controls and plotly FigureWidgets.

Figures are updated in place (one ``batch_update`` per figure) instead of being redrawn, so
the plot does not flicker and zoom/legend state survives a slider move.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as ipw
import numpy as np
import plotly.graph_objects as go

from .explorer import Choice, Control, Explorer, ExplorerView, MultiChoice, Slider, Toggle, Update

# Room for a label with units plus a usable slider track and its readout.
_SLIDER_WIDTH = "420px"
_SELECT_WIDTH = "320px"
_CONTROL_MARGIN = "2px 24px 2px 0"
# Figures without a fixed width share a row and wrap below this width.
_FIGURE_BASIS = "1 1 460px"
_FIGURE_MIN_WIDTH = "360px"
_ERROR_STYLE = "color:#c62828;font-weight:600"
_STATUS_STYLE = "color:#888;font-size:0.85em"


def _label_style() -> dict[str, str]:
    # "initial" lets the label take the width it needs instead of being cut at ~80px.
    return {"description_width": "initial"}


def _slider_widget(control: Slider, value: float, continuous: bool) -> ipw.Widget:
    common: dict[str, Any] = {
        "description": control.label,
        "style": _label_style(),
        "layout": ipw.Layout(width=_SLIDER_WIDTH, margin=_CONTROL_MARGIN),
        "continuous_update": continuous,
    }
    if control.integer:
        return ipw.IntSlider(
            value=int(value),
            min=int(control.min),
            max=int(control.max),
            step=max(1, round(control.widget_step)),
            **common,
        )
    readout = control.readout_format or ".3g"
    if control.log:
        return ipw.FloatLogSlider(
            value=value,
            base=control.log_base,
            min=control.exponent(control.min),
            max=control.exponent(control.max),
            step=control.widget_step,
            readout_format=readout,
            **common,
        )
    return ipw.FloatSlider(
        value=value,
        min=control.min,
        max=control.max,
        step=control.widget_step,
        readout_format=readout,
        **common,
    )


def _control_widget(control: Control, value: Any, continuous: bool) -> ipw.Widget:
    if isinstance(control, Slider):
        return _slider_widget(control, value, continuous)
    if isinstance(control, Choice):
        return ipw.Dropdown(
            options=list(control.pairs),
            value=value,
            description=control.label,
            style=_label_style(),
            layout=ipw.Layout(width=_SELECT_WIDTH, margin=_CONTROL_MARGIN),
        )
    if isinstance(control, MultiChoice):
        return ipw.SelectMultiple(
            options=list(control.pairs),
            value=tuple(value),
            rows=min(len(control.pairs), 6),
            description=control.label,
            style=_label_style(),
            layout=ipw.Layout(width=_SELECT_WIDTH, margin=_CONTROL_MARGIN),
        )
    if isinstance(control, Toggle):
        return ipw.Checkbox(
            value=value,
            description=control.label,
            indent=False,
            style=_label_style(),
            layout=ipw.Layout(width="auto", margin=_CONTROL_MARGIN),
        )
    raise TypeError(f"unsupported control type {type(control).__name__}")


def _widget_value(control: Control, widget: ipw.Widget) -> Any:
    if isinstance(control, Slider) and control.log:
        # FloatLogSlider computes base**exponent, which can land a hair outside [min, max].
        return min(max(widget.value, control.min), control.max)
    return widget.value


# --------------------------------------------------------------------------------------------
# Updating a FigureWidget in place
# --------------------------------------------------------------------------------------------


def same_nested_value(a: Any, b: Any) -> bool:
    """Equality of plotly property values (nested dicts, lists, numpy arrays) that never raises."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_nested_value(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(a, b))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_nested_value(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _trace_type(trace: dict[str, Any]) -> str:
    return trace.get("type", "scatter")


def _trace_keys(traces: list[dict[str, Any]]) -> list[set[str]]:
    return [set(trace) - {"type"} for trace in traces]


def _same_trace_types(figure: go.FigureWidget, traces: list[dict[str, Any]]) -> bool:
    return len(figure.data) == len(traces) and all(
        current.type == _trace_type(new) for current, new in zip(figure.data, traces, strict=True)
    )


def _restyle_in_place(
    figure: go.FigureWidget, traces: list[dict[str, Any]], previous_keys: list[set[str]]
) -> None:
    for trace, new, old_keys in zip(figure.data, traces, previous_keys, strict=True):
        props = {key: value for key, value in new.items() if key != "type"}
        # overwrite=True replaces each given property whole (marker, line, ...) but leaves
        # unmentioned ones alone, so a property the new trace no longer sets is reset
        # explicitly. Properties we never set (legend-click visibility) are left to the reader.
        props.update(dict.fromkeys(old_keys - props.keys()))
        trace.update(props, overwrite=True)


def _relayout(figure: go.FigureWidget, new: dict[str, Any], old: dict[str, Any]) -> None:
    # Only changed top-level keys are sent: re-sending an unchanged xaxis would reset the
    # reader's zoom on every slider move.
    changes = {
        key: value for key, value in new.items() if not same_nested_value(old.get(key), value)
    }
    changes.update(dict.fromkeys(old.keys() - new.keys()))
    if changes:
        figure.update_layout(changes, overwrite=True)


class IpyExplorerView(ExplorerView):
    """Builds and drives the ipywidgets front end; ``root`` is the VBox to display."""

    def __init__(self, explorer: Explorer) -> None:
        super().__init__(explorer)
        values = explorer.values
        self.control_widgets: dict[str, ipw.Widget] = {
            name: _control_widget(control, values[name], self.continuous)
            for name, control in explorer.controls.items()
        }
        figures = self.initial_figures()
        self.figure_widgets: dict[str, go.FigureWidget] = {
            name: go.FigureWidget(figure) for name, figure in figures.items()
        }
        # What we last sent, to reset vanished properties and skip unchanged layout keys.
        self._sent_trace_keys = {name: _trace_keys(f["data"]) for name, f in figures.items()}
        self._sent_layouts = {name: f["layout"] for name, f in figures.items()}

        self.error_widget = ipw.HTML(layout=ipw.Layout(display="none", margin="4px 0"))
        self.status_widget = ipw.HTML(layout=ipw.Layout(margin="0"))
        self.root = ipw.VBox(
            [
                *self._header(),
                self._controls_row(),
                self.error_widget,
                self._figures_row(),
                self.status_widget,
            ]
        )
        # The VBox is what a notebook holds; tests and measure_latency reach the controller here.
        self.root._explorer_view = self  # type: ignore[attr-defined]

        self.show_error(self.error)
        self.show_status(self.initial_status())
        for widget in self.control_widgets.values():
            widget.observe(self._on_value_change, names="value")

    # ----- layout -----------------------------------------------------------------------------

    def _header(self) -> list[ipw.Widget]:
        header = [ipw.HTML(f"<h3 style='margin:4px 0'>{html.escape(self.explorer.title)}</h3>")]
        if self.explorer.description:
            # Authors may use inline HTML (<i>σ</i>) in descriptions, so it is not escaped.
            header.append(ipw.HTML(self.explorer.description))
        return header

    def _controls_row(self) -> ipw.Box:
        return ipw.Box(
            list(self.control_widgets.values()),
            layout=ipw.Layout(display="flex", flex_flow="row wrap", align_items="center"),
        )

    def _figures_row(self) -> ipw.Box:
        cells = []
        for name, figure in self.figure_widgets.items():
            width = self.explorer.panels[name].width
            # FigureWidget.layout is the plotly layout, so sizing goes on a wrapping Box.
            cell_layout = (
                ipw.Layout(flex=f"0 0 {width}px")
                if width is not None
                else ipw.Layout(flex=_FIGURE_BASIS, min_width=_FIGURE_MIN_WIDTH)
            )
            cells.append(ipw.Box([figure], layout=cell_layout))
        return ipw.Box(cells, layout=ipw.Layout(display="flex", flex_flow="row wrap", width="100%"))

    # ----- ExplorerView -----------------------------------------------------------------------

    def _on_value_change(self, _change: dict[str, Any]) -> None:
        self.refresh()

    def widget_values(self) -> dict[str, Any]:
        controls = self.explorer.controls
        return {
            name: _widget_value(controls[name], widget)
            for name, widget in self.control_widgets.items()
        }

    def set_widget_value(self, name: str, value: Any) -> None:
        self.control_widgets[name].value = tuple(value) if isinstance(value, list) else value

    def apply_figures(self, update: Update) -> None:
        assert update.figures is not None
        for name, figure in self.figure_widgets.items():
            new = update.figures[name]
            self._apply_figure(name, figure, new["data"], new["layout"])

    def _apply_figure(
        self,
        name: str,
        figure: go.FigureWidget,
        traces: list[dict[str, Any]],
        layout: dict[str, Any],
    ) -> None:
        if _same_trace_types(figure, traces):
            with figure.batch_update():
                _restyle_in_place(figure, traces, self._sent_trace_keys[name])
                _relayout(figure, layout, self._sent_layouts[name])
        else:
            # Adding and deleting traces are separate plotly messages that batch_update
            # cannot hold, so the new traces go in first and the layout follows in one batch.
            figure.data = ()
            figure.add_traces(traces)
            with figure.batch_update():
                _relayout(figure, layout, self._sent_layouts[name])
        self._sent_trace_keys[name] = _trace_keys(traces)
        self._sent_layouts[name] = layout

    def show_error(self, message: str | None) -> None:
        if message is None:
            self.error_widget.layout.display = "none"
            self.error_widget.value = ""
            return
        self.error_widget.value = f"<span style='{_ERROR_STYLE}'>{html.escape(message)}</span>"
        self.error_widget.layout.display = ""

    def show_status(self, text: str) -> None:
        self.status_widget.value = f"<span style='{_STATUS_STYLE}'>{html.escape(text)}</span>"
