"""JupyterLab front end of an Explorer: ipywidgets controls over one PlotGrid of figures.

Each update sends every panel's figure dict in one message; plotly.js diffs it against the
screen (``Plotly.react``), so the plot does not flicker and zoom survives a slider move.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as ipw

from ._plot_grid import CONTROLS_CLASS, PlotGrid, first_revisions
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

_CONTROL_MARGIN = "2px 28px 6px 0"
# A slider's track takes what its label above it leaves free, within these bounds.
_SLIDER_WIDTH = "340px"
_ERROR_STYLE = "color:#c62828;font-weight:600"
_STATUS_STYLE = "color:#888;font-size:0.85em"


def _labelled_above(width: str) -> dict[str, Any]:
    """Layout and style that put a widget's description on a line of its own above it.

    The description takes the full width of a wrapping widget box, so the slider track (or
    select) starts on the next line with all the width, however long the label; the label
    stays inside the widget, where a reader (and a browser test) finds it.
    """
    return {
        "style": {"description_width": "100%"},
        "layout": ipw.Layout(
            width=width,
            max_width="100%",
            height="auto",  # two lines: an inline widget is one line high by default
            flex_flow="row wrap",
            margin=_CONTROL_MARGIN,
        ),
    }


def _options_width(control: Choice | MultiChoice) -> str:
    """Room for the longest option label (and the select's arrow), in characters."""
    longest = max(len(label) for label, _ in control.pairs)
    return f"{max(longest + 6, 18)}ch"


def _slider_widget(control: Slider, value: float, continuous: bool) -> ipw.Widget:
    common: dict[str, Any] = {
        "description": control.label,
        "continuous_update": continuous,
        **_labelled_above(_SLIDER_WIDTH),
    }
    if control.stops is not None:
        # one key press per stop; the readout is the stop itself
        return ipw.SelectionSlider(
            options=[(number_text(stop), stop) for stop in control.stops],
            value=control.stops[control.stop_index(value)],
            **common,
        )
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
            **_labelled_above(_options_width(control)),
        )
    if isinstance(control, MultiChoice):
        return ipw.SelectMultiple(
            options=list(control.pairs),
            value=tuple(value),
            rows=min(len(control.pairs), 6),
            description=control.label,
            **_labelled_above(_options_width(control)),
        )
    if isinstance(control, Toggle):
        return ipw.Checkbox(
            value=value,
            description=control.label,
            indent=False,
            style={"description_width": "initial"},
            layout=ipw.Layout(width="auto", margin=_CONTROL_MARGIN),
        )
    raise TypeError(f"unsupported control type {type(control).__name__}")


def _widget_value(control: Control, widget: ipw.Widget) -> Any:
    if isinstance(control, Slider) and control.log:
        # FloatLogSlider computes base**exponent, which can land a hair outside [min, max].
        return min(max(widget.value, control.min), control.max)
    return widget.value


def _in_a_kernel() -> bool:
    """Whether we run in a Jupyter kernel (where a blocked thread would stall every widget)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class ExplorerBox(ipw.VBox):
    """The box a notebook displays. Executed headlessly (papermill stores no widget state, so
    the box itself would show nothing), its figures are displayed as plain plotly figures just
    before it and the box shows as ``static_note``, one line saying where the controls live."""

    static_note: str | None = None

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self.static_note is None:
            return super()._repr_mimebundle_(**kwargs)
        return {
            "text/plain": self.static_note,
            "text/html": f"<p><i>{html.escape(self.static_note)}</i></p>",
        }


class IpyExplorerView(ExplorerView):
    """Builds and drives the ipywidgets front end; ``root`` is the VBox to display.

    In a kernel, updates run on the view's worker thread (``background``, see ExplorerView):
    the kernel keeps receiving slider moves while one computes, and ipywidgets sends trait
    changes made on a thread. Elsewhere (tests, scripts) they run where the event fires.
    """

    def __init__(self, explorer: Explorer, background: bool | None = None) -> None:
        super().__init__(explorer, _in_a_kernel() if background is None else background)
        values = explorer.values
        self.control_widgets: dict[str, ipw.Widget] = {
            name: _control_widget(control, values[name], self.continuous)
            for name, control in explorer.controls.items()
        }
        panels = [
            {"name": name, "height": panel.height, "wide": panel.wide}
            for name, panel in explorer.panels.items()
        ]
        self.plots = PlotGrid(
            panels=panels,
            figures=first_revisions(self.initial_figures()),
            layout=ipw.Layout(width="100%"),
        )
        self.error_widget = ipw.HTML(layout=ipw.Layout(display="none", margin="4px 0"))
        self.status_widget = ipw.HTML(layout=ipw.Layout(margin="0"))
        self.root = ExplorerBox(
            [
                *self._header(),
                self._controls_row(),
                self.error_widget,
                self.plots,
                self.status_widget,
            ],
            layout=ipw.Layout(width="100%"),
        )
        # The VBox is what a notebook holds; tests and measure_latency reach the controller here.
        self.root._explorer_view = self  # type: ignore[attr-defined]

        self.show_error(self.error)
        self.show_status(self.initial_status())
        for widget in self.control_widgets.values():
            widget.observe(self._on_value_change, names="value")

    @property
    def figures(self) -> dict[str, dict[str, Any]]:
        """The figure dict each panel shows (what was last sent to the browser)."""
        return self.plots.shown

    def show_static_figures(self) -> None:
        """Display the initial figures as plotly figures (kept by an executed notebook and its
        HTML export), the box then showing as one line about the live controls."""
        import plotly.graph_objects as go
        from IPython.display import display

        for figure in self.initial_figures().values():
            display(go.Figure(figure))
        self.root.static_note = (
            f"Above: the explorer “{self.explorer.title}” at its default settings. Its controls "
            "are live when the notebook runs in JupyterLab (./dev lab)."
        )

    # ----- layout -----------------------------------------------------------------------------

    def _header(self) -> list[ipw.Widget]:
        header = [ipw.HTML(f"<h3 style='margin:4px 0'>{html.escape(self.explorer.title)}</h3>")]
        if self.explorer.description:
            # Authors may use inline HTML (<i>σ</i>) in descriptions, so it is not escaped.
            header.append(ipw.HTML(self.explorer.description))
        return header

    def _controls_row(self) -> ipw.Box:
        row = ipw.Box(
            list(self.control_widgets.values()),
            layout=ipw.Layout(
                display="flex", flex_flow="row wrap", align_items="flex-end", width="100%"
            ),
        )
        row.add_class(CONTROLS_CLASS)  # labels left-aligned over their widget (PlotGrid's CSS)
        return row

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
        self.plots.show(update.figures)  # one message; the browser redraws changed panels

    def show_error(self, message: str | None) -> None:
        if message is None:
            self.error_widget.layout.display = "none"
            self.error_widget.value = ""
            return
        self.error_widget.value = f"<span style='{_ERROR_STYLE}'>{html.escape(message)}</span>"
        self.error_widget.layout.display = ""

    def show_status(self, text: str) -> None:
        self.status_widget.value = f"<span style='{_STATUS_STYLE}'>{html.escape(text)}</span>"

    def show_busy(self, text: str | None) -> None:
        self.plots.status = text or ""
        if text is not None:
            self.show_status(text)
