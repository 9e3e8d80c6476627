"""All of an explorer's figures as one JupyterLab widget (an anywidget drawing with plotly.js).

Why not one plotly ``FigureWidget`` per panel: a FigureWidget validates every property in
Python and sends one message per changed trace, its state carries the whole plotly.js bundle
(~5 MB per figure), and it takes a fixed width (700 px unless told) instead of its container's.
Here an update is one message holding every panel's figure dict, numpy arrays travel as binary
buffers, plotly.js diffs it against the screen (``Plotly.react``), and the panels sit in a CSS
grid and resize with it. See ``_plot_grid.js`` for the browser half.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import plotly
import traitlets

# The class of an explorer's row of controls, styled by _CSS (a widget's style cannot align text).
CONTROLS_CLASS = "wb-controls"

# Two panels per row where each gets 460 px, one where not (never wider than the column).
CSS = """
.wb-plot-grid {
  display: grid;
  grid-template-columns: repeat(auto-fit, minmax(min(460px, 100%), 1fr));
  gap: 4px 12px;
  position: relative;
  width: 100%;
}
.wb-plot-grid .wb-cell { min-width: 0; transition: opacity 0.15s; }
.wb-plot-grid .wb-wide { grid-column: 1 / -1; }
.wb-plot-grid .wb-plot { width: 100%; }
.wb-plot-grid .wb-busy-note {
  display: none;
  position: absolute;
  top: 6px;
  left: 50%;
  transform: translateX(-50%);
  z-index: 20;
  padding: 4px 14px;
  border: 1px solid #e0b252;
  border-radius: 4px;
  background: #fff6dc;
  color: #5b4100;
  font-weight: 600;
}
.wb-plot-grid.wb-busy .wb-busy-note { display: block; }
.wb-plot-grid.wb-busy .wb-cell { opacity: 0.4; }
.wb-controls .widget-label { text-align: left; }
"""


def plotly_source() -> str:
    """plotly.js as shipped with the plotly package (a UMD bundle, evaluated by the module)."""
    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()


# Kinds numpy arrays keep as typed arrays in the browser; the rest become JSON lists.
_TYPED = {"f8", "f4", "i4", "i2", "i1", "u4", "u2", "u1"}


def _array_to_json(array: np.ndarray, buffer: type = memoryview) -> Any:
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        array = array.astype(np.float64)  # JavaScript has no 64-bit integer typed array here
    elif array.dtype.kind == "f" and array.dtype.itemsize not in (4, 8):
        array = array.astype(np.float64)
    code = f"{array.dtype.kind}{array.dtype.itemsize}"
    if code not in _TYPED:
        return to_json(array.tolist(), buffer)
    contiguous = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {
        "__ndarray__": True,
        "dtype": str(contiguous.dtype.name),
        "shape": list(contiguous.shape),
        "buffer": buffer(memoryview(contiguous.reshape(-1)).cast("B")),
    }


def to_json(value: Any, buffer: type = memoryview) -> Any:
    """A figure dict as JSON-able values, numpy arrays as binary buffers (`buffer`: memoryview
    for ipywidgets, bytes for Bokeh), NaN/inf as null."""
    if isinstance(value, np.ndarray):
        return _array_to_json(value, buffer)
    if isinstance(value, dict):
        return {str(key): to_json(item, buffer) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item, buffer) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; plotly draws null as a gap, as it does NaN
    return value


def _figures_to_json(figures: dict[str, Any], _widget: Any) -> dict[str, Any]:
    return to_json(figures)


def same_nested_value(a: Any, b: Any) -> bool:
    """Equality of figure dicts (nested dicts, lists, numpy arrays) that never raises."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_nested_value(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(a, b, equal_nan=True))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_nested_value(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


class PlotGrid(anywidget.AnyWidget):
    """The figure panels of one explorer view: ``figures`` maps panel name -> figure dict.

    Each figure carries a ``revision``, raised by ``show`` only when the figure changed: the
    browser redraws just those panels (plotly.js recomputes a whole figure whose arrays arrive
    anew, even when they are equal), so moving a control repaints only what it changes.
    """

    # The module stays small: anywidget gives a module 2 s to load and initialize, which a
    # module with plotly.js inlined (4.8 MB) missed on a busy machine, leaving a dead widget.
    # plotly.js travels as state instead and is evaluated once per page, in render().
    _esm = Path(__file__).with_name("_plot_grid.js")
    _css = CSS
    plotly_js = traitlets.Unicode(plotly_source()).tag(sync=True)
    # [{"name", "height", "wide"}] in display order
    panels = traitlets.List().tag(sync=True)
    figures = traitlets.Dict().tag(sync=True, to_json=_figures_to_json)
    # non-empty: the figures are dimmed under this note ("computing...")
    status = traitlets.Unicode("").tag(sync=True)

    @property
    def shown(self) -> dict[str, dict[str, Any]]:
        """What the panels show (figure dicts with their revisions)."""
        return self.figures

    def show(self, figures: dict[str, dict[str, Any]]) -> list[str]:
        """Show these figures (every panel's, in one message); the names of those that changed."""
        shown, changed = next_revisions(self.figures, figures)
        if changed:
            self.figures = shown
        return changed


def next_revisions(
    shown: dict[str, dict[str, Any]], figures: dict[str, dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(what to show, the panels that changed): a changed figure's revision is raised, an
    unchanged one is kept as shown (same revision: the browser leaves it alone)."""
    out, changed = {}, []
    for name, figure in figures.items():
        old = shown.get(name)
        if old is not None and same_nested_value(_without_revision(old), figure):
            out[name] = old
            continue
        out[name] = {**figure, "revision": 0 if old is None else old["revision"] + 1}
        changed.append(name)
    return out, changed


def first_revisions(figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A PlotGrid's initial ``figures``: each figure at revision 0."""
    return {name: {**figure, "revision": 0} for name, figure in figures.items()}


def _without_revision(figure: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in figure.items() if key != "revision"}
