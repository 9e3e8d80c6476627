"""The Explorer: one declaration of controls, a pure compute and figure panels, three front ends.

An explorer is declared once::

    explorer = Explorer(
        title="Sine wave",
        controls=[Slider("amplitude", "amplitude A", 0.0, 2.0, 1.0)],
        compute=lambda amplitude: amplitude * np.sin(np.linspace(0, 2 * np.pi, 100)),
        panels=[FigurePanel("wave", "A sin(t)", lambda y: [{"type": "scatter", "y": y}])],
    )

and then driven headlessly (``explorer.update(amplitude=0.5)``, for tests and benchmarks),
rendered in JupyterLab (``explorer.ipywidget()``) or served as a Panel app
(``explorer.panel().servable()``). The two renderers live in ``_ipy.py`` and ``_panel.py`` and
are imported only when asked for, so importing this module costs neither ipywidgets nor Panel.

Error convention: an invalid control value, or a ``ValueError`` raised by ``compute`` (how a
compute function says "this combination is not supported"), is a *reader* error. ``update``
returns it as a one-line ``Update.error`` and the explorer keeps its last good state. Any other
exception is a bug: ``update`` re-raises it; the renderers show it inline and log the traceback.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import ipywidgets
    import panel
    import plotly.graph_objects as go

__all__ = [
    "Choice",
    "Control",
    "ControlError",
    "Explorer",
    "FigurePanel",
    "MultiChoice",
    "Slider",
    "Toggle",
    "Update",
    "measure_latency",
]

logger = logging.getLogger(__name__)

# Sliders update while dragging only when a full update is faster than this; slower explorers
# would queue up stale updates in the kernel and feel laggy, so they update on release instead.
CONTINUOUS_THRESHOLD_MS = 40.0

# Leaves room for the axis titles without wasting space around small multiples.
_DEFAULT_MARGIN = {"l": 55, "r": 20, "t": 50, "b": 45}


class ControlError(ValueError):
    """A control value a reader can pick but the explorer cannot accept."""


# --------------------------------------------------------------------------------------------
# Formatting helpers for error messages
# --------------------------------------------------------------------------------------------


def number_text(x: float) -> str:
    """Shortest exact text for a bound: 1 not 1.0, 0.001 not 1e-03."""
    if isinstance(x, numbers.Integral):
        return str(int(x))
    x = float(x)
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def _value_text(value: Any) -> str:
    """repr() of a value without numpy's ``np.float64(...)`` wrapper."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return message or type(exc).__name__


def _same_value(a: Any, b: Any) -> bool:
    """Equality for option values that never raises and keeps True apart from 1."""
    if isinstance(a, (bool, np.bool_)) != isinstance(b, (bool, np.bool_)):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# Controls
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slider:
    """A number in ``[min, max]``.

    ``log=True`` makes a geometric slider: ``min``/``max``/``default`` are actual values (> 0)
    and the widget moves in the exponent; ``step`` is then in exponent units (``log_base``).
    ``integer=True`` restricts values to integers. ``stops`` (increasing numbers from ``min``
    to ``max``) makes a slider that moves between those values only, one key press per stop
    (e.g. the step counts a study computed): the widget moves in the stop's index.
    """

    name: str
    label: str
    min: float
    max: float
    default: float
    step: float | None = None
    log: bool = False
    integer: bool = False
    readout_format: str | None = None
    stops: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min) and math.isfinite(self.max) and self.min < self.max):
            raise ValueError(f"{self.name}: need finite min < max, got [{self.min}, {self.max}]")
        if self.stops is not None:
            stops = tuple(self.stops)
            increasing = all(a < b for a, b in itertools.pairwise(stops))
            if len(stops) < 2 or not increasing or (stops[0], stops[-1]) != (self.min, self.max):
                raise ValueError(
                    f"{self.name}: stops must increase from min to max, got {self.stops!r}"
                )
            if self.log or self.step is not None:
                raise ValueError(f"{self.name}: a slider with stops takes no log or step")
            object.__setattr__(self, "stops", stops)
        if self.log and self.min <= 0:
            raise ValueError(f"{self.name}: a log slider needs min > 0, got {self.min}")
        if self.log and self.integer:
            raise ValueError(f"{self.name}: a slider cannot be both log and integer")
        if self.integer and not (float(self.min).is_integer() and float(self.max).is_integer()):
            raise ValueError(f"{self.name}: an integer slider needs integer bounds")
        if self.step is not None and not self.step > 0:
            raise ValueError(f"{self.name}: step must be > 0, got {self.step}")
        object.__setattr__(self, "default", self.validate(self.default))

    @property
    def log_base(self) -> int:
        """2 when both ends are powers of two but not of ten (batch sizes, widths), else 10."""
        if not self.log:
            return 10

        def is_power(base: int, x: float) -> bool:
            exponent = math.log(x, base)  # log(1000, 10) is 2.9999999999999996
            return abs(exponent - round(exponent)) < 1e-9

        powers_of_two = is_power(2, self.min) and is_power(2, self.max)
        powers_of_ten = is_power(10, self.min) and is_power(10, self.max)
        return 2 if powers_of_two and not powers_of_ten else 10

    @property
    def widget_step(self) -> float:
        """Step in widget units: value units, or exponent units for a log slider."""
        if self.step is not None:
            return self.step
        if self.integer:
            return 1
        if self.log:
            return (self.exponent(self.max) - self.exponent(self.min)) / 100
        return (self.max - self.min) / 100

    def exponent(self, value: float) -> float:
        return math.log(value, self.log_base)

    def from_exponent(self, exponent: float) -> float:
        """The actual value at a log-slider position, clipped because base**log(x) != x."""
        return min(max(float(self.log_base) ** exponent, self.min), self.max)

    def stop_index(self, value: float) -> int:
        """The position of `value` among the stops (a slider with stops moves in it)."""
        assert self.stops is not None
        return self.stops.index(value)

    def _allowed(self) -> str:
        if self.stops is not None:
            return f"{self.label} must be one of {', '.join(map(number_text, self.stops))}"
        kind = "an integer" if self.integer else "a number"
        bounds = f"[{number_text(self.min)}, {number_text(self.max)}]"
        return f"{self.label} must be {kind} in {bounds}"

    def validate(self, value: Any) -> float | int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ControlError(f"{self._allowed()}, got {_value_text(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise ControlError(f"{self._allowed()}, got {_value_text(number)}")
        if self.integer and not number.is_integer():
            raise ControlError(f"{self._allowed()}, got {_value_text(value)}")
        if not self.min <= number <= self.max:
            raise ControlError(f"{self._allowed()}, got {_value_text(value)}")
        if self.stops is not None:
            if number not in self.stops:
                raise ControlError(f"{self._allowed()}, got {_value_text(value)}")
            return self.stops[self.stops.index(number)]
        return int(number) if self.integer else number


def _option_pairs(options: Sequence[Any] | Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    if isinstance(options, Mapping):
        return tuple((str(label), value) for label, value in options.items())
    return tuple((str(value), value) for value in options)


class _Options:
    """What Choice and MultiChoice share: options as (label, value) pairs."""

    name: str
    options: Sequence[Any] | Mapping[str, Any]
    default: Any

    def _check_options(self) -> None:
        if not self.pairs:
            raise ValueError(f"{self.name}: needs at least one option")
        object.__setattr__(self, "default", self.validate(self.default))

    @property
    def pairs(self) -> tuple[tuple[str, Any], ...]:
        """(label, value) for each option, in order."""
        return _option_pairs(self.options)

    def _allowed_text(self) -> str:
        return ", ".join(_value_text(value) for _, value in self.pairs)

    def validate(self, value: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Choice(_Options):
    """One of ``options``: a list of values (shown as themselves) or a dict label -> value."""

    name: str
    label: str
    options: Sequence[Any] | Mapping[str, Any]
    default: Any

    def __post_init__(self) -> None:
        self._check_options()

    def validate(self, value: Any) -> Any:
        for _, option in self.pairs:
            if _same_value(value, option):
                return option
        raise ControlError(
            f"{self.label} must be one of {self._allowed_text()}, got {_value_text(value)}"
        )


@dataclass(frozen=True)
class MultiChoice(_Options):
    """Any subset of ``options``; the value is a tuple in option order."""

    name: str
    label: str
    options: Sequence[Any] | Mapping[str, Any]
    default: tuple[Any, ...]
    allow_empty: bool = False

    def __post_init__(self) -> None:
        self._check_options()

    def validate(self, value: Any) -> tuple[Any, ...]:
        # A bare string is iterable but almost certainly a mistake for ("a string",).
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
            raise ControlError(
                f"{self.label} must be a tuple of values from {self._allowed_text()}, "
                f"got {_value_text(value)}"
            )
        if not all(any(_same_value(v, o) for _, o in self.pairs) for v in value):
            raise ControlError(
                f"{self.label} must be a tuple of values from {self._allowed_text()}, "
                f"got {_value_text(value)}"
            )
        # Option order makes equal selections equal values, whatever order they were clicked.
        chosen = tuple(o for _, o in self.pairs if any(_same_value(v, o) for v in value))
        if not chosen and not self.allow_empty:
            raise ControlError(
                f"{self.label} must select at least one of {self._allowed_text()}, got ()"
            )
        return chosen


@dataclass(frozen=True)
class Toggle:
    """A boolean switch."""

    name: str
    label: str
    default: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "default", self.validate(self.default))

    def validate(self, value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ControlError(f"{self.label} must be True or False, got {_value_text(value)}")
        return bool(value)


Control = Slider | Choice | MultiChoice | Toggle


# --------------------------------------------------------------------------------------------
# Figure panels and updates
# --------------------------------------------------------------------------------------------


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class FigurePanel:
    """One plotly figure of an explorer.

    ``traces(result)`` returns plain plotly trace dicts (numpy arrays allowed); dicts rather than
    ``go`` objects because plotly's validation of ``go`` objects is slow. ``layout`` is a dict or
    a callable ``result -> dict`` merged over a default layout with ``title`` and ``height``.
    Figures take their container's width: panels share a row two by two where there is room
    and stack where not; ``wide=True`` gives a panel a row of its own (a table, a long axis).
    """

    name: str
    title: str
    traces: Callable[[Any], Sequence[Mapping[str, Any]]]
    layout: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] | None = None
    height: int = 380
    wide: bool = False

    def base_layout(self) -> dict[str, Any]:
        return {
            "title": {"text": self.title},
            "height": self.height,
            "margin": dict(_DEFAULT_MARGIN),
        }

    def build(self, result: Any) -> dict[str, Any]:
        """The figure dict ``{"data": [...], "layout": {...}}`` for one compute result."""
        data = []
        for trace in self.traces(result):
            if not isinstance(trace, Mapping):
                raise TypeError(
                    f"panel {self.name!r}: traces() must return dicts, got {type(trace).__name__}"
                )
            data.append(dict(trace))
        extra = self.layout(result) if callable(self.layout) else (self.layout or {})
        return {"data": data, "layout": _deep_merge(self.base_layout(), extra)}


@dataclass(frozen=True)
class Update:
    """What one ``Explorer.update`` produced: figures on success, a readable error otherwise."""

    values: dict[str, Any]
    result: Any = None
    figures: dict[str, dict[str, Any]] | None = None
    error: str | None = None
    compute_ms: float = 0.0
    render_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.compute_ms + self.render_ms

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> Update:
        if self.error is not None:
            raise ControlError(self.error)
        return self


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


# --------------------------------------------------------------------------------------------
# The explorer
# --------------------------------------------------------------------------------------------


class Explorer:
    """Controls + a pure ``compute(**values)`` + figure panels; see the module docstring."""

    def __init__(
        self,
        title: str,
        controls: Sequence[Control],
        compute: Callable[..., Any],
        panels: Sequence[FigurePanel],
        description: str = "",
        continuous: bool | Literal["auto"] = "auto",
        cost: Callable[..., float | None] | None = None,
    ) -> None:
        if continuous not in ("auto", True, False):
            raise ValueError(f"continuous must be 'auto', True or False, got {continuous!r}")
        if not panels:
            raise ValueError("an explorer needs at least one figure panel")
        self.title = title
        self.description = description
        self.compute = compute
        self.continuous = continuous
        # cost(**values): about how many seconds computing these values will take when they
        # are not computed yet (a first visit), None when they are cached; the front ends say
        # "computing... (first visit, about N s)" while such an update runs.
        self.cost = cost
        self._controls = _unique_by_name(controls, "control")
        self._panels = _unique_by_name(panels, "panel")
        self._values: dict[str, Any] = self.defaults
        self._last: Update | None = None

    def __repr__(self) -> str:
        return (
            f"Explorer({self.title!r}, controls={list(self._controls)}, "
            f"panels={list(self._panels)})"
        )

    # ----- declaration ------------------------------------------------------------------------

    @property
    def controls(self) -> Mapping[str, Control]:
        return MappingProxyType(self._controls)

    @property
    def panels(self) -> Mapping[str, FigurePanel]:
        return MappingProxyType(self._panels)

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: control.default for name, control in self._controls.items()}

    # ----- state ------------------------------------------------------------------------------

    @property
    def values(self) -> dict[str, Any]:
        """The values of the last successful update (initially the defaults)."""
        return dict(self._values)

    @property
    def last_update(self) -> Update | None:
        """The last successful update, or None before the first one."""
        return self._last

    # ----- the headless path ------------------------------------------------------------------

    def update(self, **values: Any) -> Update:
        """Validate, compute and build every figure; see the module docstring for errors."""
        self._check_names(values)
        requested = {**self._values, **values}
        try:
            validated = self._validate(requested)
        except ControlError as exc:
            return Update(values=requested, error=str(exc))

        start = time.perf_counter()
        try:
            result = self.compute(**validated)
        except ValueError as exc:
            return Update(values=validated, error=_one_line(exc), compute_ms=_elapsed_ms(start))
        compute_ms = _elapsed_ms(start)

        start = time.perf_counter()
        figures = {name: panel.build(result) for name, panel in self._panels.items()}
        update = Update(validated, result, figures, None, compute_ms, _elapsed_ms(start))
        self._values, self._last = validated, update
        return update

    def first_visit_seconds(self, values: Mapping[str, Any]) -> float | None:
        """About how long computing ``values`` will take when not computed yet (``cost``);
        None when cached, cheap, unknown or invalid."""
        if self.cost is None:
            return None
        try:
            seconds = self.cost(**self._validate({**self._values, **values}))
        except ValueError:  # invalid values (ControlError) or a combination cost cannot price
            return None
        except Exception:  # a bug in cost() must not stop the update it only describes
            logger.exception("explorer %r: cost() failed", self.title)
            return None
        return None if seconds is None else float(seconds)

    def _check_names(self, values: Mapping[str, Any]) -> None:
        unknown = sorted(set(values) - set(self._controls))
        if unknown:
            raise TypeError(
                f"{self.title!r} has no control {', '.join(map(repr, unknown))}; "
                f"valid names: {', '.join(self._controls)}"
            )

    def _validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        validated: dict[str, Any] = {}
        problems: list[str] = []
        for name, control in self._controls.items():
            try:
                validated[name] = control.validate(values[name])
            except ControlError as exc:
                problems.append(str(exc))
        if problems:
            raise ControlError("; ".join(problems))
        return validated

    def current_update(self) -> Update:
        """The last good update, computing the current values if there is none yet."""
        return self._last if self._last is not None else self.update()

    def figure(self, panel_name: str, update: Update | None = None) -> go.Figure:
        """A ``plotly.graph_objects.Figure`` of one panel, e.g. to save as PNG or HTML."""
        import plotly.graph_objects as go

        if panel_name not in self._panels:
            raise KeyError(f"no panel {panel_name!r}; panels: {', '.join(self._panels)}")
        update = (update or self.current_update()).raise_for_error()
        assert update.figures is not None  # an update without error always has figures
        return go.Figure(update.figures[panel_name])

    def use_continuous_updates(self, initial: Update) -> bool:
        """Whether sliders should update while dragging, given how long an update took."""
        if self.continuous == "auto":
            return initial.total_ms < CONTINUOUS_THRESHOLD_MS
        return bool(self.continuous)

    # ----- front ends -------------------------------------------------------------------------

    def ipywidget(self) -> ipywidgets.VBox:
        """The JupyterLab front end: ipywidgets controls over a grid of plotly figures.

        The returned VBox carries its controller as ``._explorer_view`` (see ``widgets._ipy``).
        Run headlessly (``workbench.progress.headless()``, the runner's papermill), it also
        displays the initial figures as plain plotly figures, which the executed notebook and
        its HTML export keep.
        """
        from workbench.progress import headless

        from ._ipy import IpyExplorerView

        view = IpyExplorerView(self)
        if headless():  # an executed notebook keeps no widget state: keep the figures instead
            view.show_static_figures()
        return view.root

    def panel(self) -> panel.Column:
        """The Panel front end; call ``.servable()`` on it in a script run by ``panel serve``.

        The returned Column carries its controller as ``._explorer_view`` (see
        ``widgets._panel``).
        """
        from ._panel import PanelExplorerView

        return PanelExplorerView(self).root


def _unique_by_name(items: Sequence[Any], kind: str) -> dict[str, Any]:
    by_name: dict[str, Any] = {}
    for item in items:
        if item.name in by_name:
            raise ValueError(f"two {kind}s are named {item.name!r}")
        by_name[item.name] = item
    return by_name


# --------------------------------------------------------------------------------------------
# What both front ends share
# --------------------------------------------------------------------------------------------

# Long plotly validation messages would push the figures off screen; the log has all of it.
_MAX_INLINE_ERROR_CHARS = 400


class ExplorerView(ABC):
    """The front-end-independent half of a renderer: run updates, route results and errors.

    A subclass builds the widgets and implements ``widget_values``, ``set_widget_value``,
    ``apply_figures``, ``show_error``, ``show_status`` and ``show_busy``. Every refresh sends
    the values of *this* view's widgets, so two views of one explorer (a cell displayed twice)
    stay coherent. Building a view raises if the initial compute has a bug; later bugs are
    shown inline.

    With ``background=True`` updates run on one worker thread per view, so the front end
    (the kernel's comm handling, a Panel session's event loop) keeps answering while one
    computes; values that arrive meanwhile wait in a single pending slot, so only the latest
    of them is computed next (latest wins, no replay of every move). An update still running
    after ``BUSY_AFTER_S`` dims the figures under ``busy_text`` until it ends.
    """

    BUSY_AFTER_S = 0.15

    def __init__(self, explorer: Explorer, background: bool = False) -> None:
        self.explorer = explorer
        self.background = background
        self.initial = explorer.current_update()
        self.continuous = explorer.use_continuous_updates(self.initial)
        self.last_update: Update | None = self.initial
        self.error: str | None = self.initial.error
        self.update_count = 0  # refreshes asked for (widget events)
        self.compute_count = 0  # updates actually run
        self.busy: str | None = None  # the "computing..." text while it is shown
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def initial_figures(self) -> dict[str, dict[str, Any]]:
        """Figures to build the widgets with; empty ones if the initial compute failed."""
        if self.initial.figures is not None:
            return self.initial.figures
        panels = self.explorer.panels
        return {name: {"data": [], "layout": p.base_layout()} for name, p in panels.items()}

    def refresh(self) -> None:
        """Update with the widgets' current values: now, or on the worker (``background``)."""
        self.update_count += 1
        values = self.widget_values()
        if not self.background:
            self._run_update(values)
            return
        with self._lock:
            self._pending = values  # replaces values not computed yet: only the latest counts
            if self._worker is not None:
                return
            self._idle.clear()
            self._worker = threading.Thread(
                target=self._drain, name=f"explorer {self.explorer.title}", daemon=True
            )
            self._worker.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no update is running or pending; False if ``timeout`` ran out first."""
        return self._idle.wait(timeout)

    def _drain(self) -> None:
        while True:
            with self._lock:
                values, self._pending = self._pending, None
                if values is None:
                    self._worker = None
                    self._idle.set()
                    return
            self._run_update(values)

    def _run_update(self, values: dict[str, Any]) -> None:
        """One update: its figures or its error, with the busy note if it runs long."""
        start = time.perf_counter()
        self.compute_count += 1
        done = threading.Event()
        timer = threading.Timer(self.BUSY_AFTER_S, self._show_busy_unless, (done, values))
        timer.daemon = True
        timer.start()
        try:
            update = self.explorer.update(**values)
            self.last_update = update
            if update.ok:
                self.apply_figures(update)
        except Exception as exc:  # a bug: keep the UI alive, say what broke, log the traceback
            logger.exception("explorer %r: update failed", self.explorer.title)
            self._set_error(f"{type(exc).__name__}: {_one_line(exc)}")
            return
        finally:
            timer.cancel()
            with self._lock:
                done.set()
                if self.busy is not None:
                    self.busy = None
                    self.show_busy(None)
        if update.error is not None:
            self._set_error(update.error)
            return
        self._set_error(None)
        self.show_status(
            f"updated in {_elapsed_ms(start):.0f} ms (compute {update.compute_ms:.0f} ms)"
        )

    def _show_busy_unless(self, done: threading.Event, values: dict[str, Any]) -> None:
        text = self.busy_text(values)  # outside the lock: cost() may take a moment
        with self._lock:
            if not done.is_set():
                self.busy = text
                self.show_busy(text)

    def busy_text(self, values: Mapping[str, Any]) -> str:
        """ "computing… (first visit, about N s)" when the explorer's ``cost`` knows N."""
        seconds = self.explorer.first_visit_seconds(values)
        if seconds is None:
            return "computing…"
        return f"computing… (first visit, about {_seconds_text(seconds)} s)"

    def set_control(self, name: str, value: Any) -> None:
        """Set a control's widget to an actual value (as a reader would), refresh once and
        wait for that update to finish (in the background mode too)."""
        if name not in self.explorer.controls:
            raise TypeError(
                f"no control {name!r}; valid names: {', '.join(self.explorer.controls)}"
            )
        before = self.update_count
        self.set_widget_value(name, value)
        # Setting a widget to the value it already has fires no event; still do the work,
        # so that a latency measurement never times a no-op.
        if self.update_count == before:
            self.refresh()
        self.wait()

    def _set_error(self, message: str | None) -> None:
        if message is not None and len(message) > _MAX_INLINE_ERROR_CHARS:
            message = message[: _MAX_INLINE_ERROR_CHARS - 1] + "…"
        self.error = message
        self.show_error(message)

    def initial_status(self) -> str:
        if not self.initial.ok:
            return ""
        mode = "while dragging" if self.continuous else "on release"
        return f"computed in {self.initial.total_ms:.0f} ms; sliders update {mode}"

    # ----- implemented by each front end ------------------------------------------------------

    @abstractmethod
    def widget_values(self) -> dict[str, Any]:
        """The current value of every control, as actual (not widget) values."""

    @abstractmethod
    def set_widget_value(self, name: str, value: Any) -> None:
        """Put an actual value into a control's widget, firing its change event."""

    @abstractmethod
    def apply_figures(self, update: Update) -> None:
        """Show a successful update's figures."""

    @abstractmethod
    def show_error(self, message: str | None) -> None:
        """Show a one-line error, or hide the error line when ``message`` is None."""

    @abstractmethod
    def show_status(self, text: str) -> None:
        """Show the small status line (timings)."""

    @abstractmethod
    def show_busy(self, text: str | None) -> None:
        """Dim the figures under ``text`` ("computing…"), or undim them when None."""


def _seconds_text(seconds: float) -> str:
    """2 not 2.0 for an estimate; one decimal below 1.5 s (0.4, 1.2)."""
    return f"{seconds:.1f}" if seconds < 1.5 else f"{seconds:.0f}"


# --------------------------------------------------------------------------------------------
# Latency measurement
# --------------------------------------------------------------------------------------------


def _latency_summary(samples_ms: list[float]) -> dict[str, float]:
    samples = np.asarray(samples_ms)
    return {
        "n": len(samples_ms),
        "median_ms": float(np.median(samples)),
        "p90_ms": float(np.percentile(samples, 90)),
        "max_ms": float(samples.max()),
    }


def _cycle(values: Sequence[Any], repeats: int) -> Iterator[Any]:
    for _ in range(repeats):
        yield from values


def measure_latency(
    explorer: Explorer,
    control: str,
    values: Sequence[Any],
    *,
    frontend: Literal["headless", "ipywidget", "panel"] = "headless",
    repeats: int = 1,
) -> dict[str, float]:
    """Time the full update path while ``control`` steps through ``values`` (``repeats`` times).

    ``frontend="headless"`` times ``explorer.update``; ``"ipywidget"`` builds the JupyterLab
    front end and times setting the control widget's ``.value`` until its figures have been
    sent to the PlotGrid; ``"panel"`` does the same for the Panel front end (until the panes
    hold the new figures). No browser is needed.
    Raises ``ControlError`` if any value produces an error: an error is not a latency.
    Returns ``{"n", "median_ms", "p90_ms", "max_ms"}``.
    """
    if control not in explorer.controls:
        raise TypeError(f"no control {control!r}; valid names: {', '.join(explorer.controls)}")
    values = list(values)  # numpy arrays have no truth value; any iterable is fine
    if not values or repeats < 1:
        raise ValueError("measure_latency needs at least one value and repeats >= 1")

    set_value = _latency_setter(explorer, control, frontend)
    samples_ms = []
    for value in _cycle(values, repeats):
        start = time.perf_counter()
        set_value(value)
        samples_ms.append(_elapsed_ms(start))
    return _latency_summary(samples_ms)


def _latency_setter(explorer: Explorer, control: str, frontend: str) -> Callable[[Any], None]:
    """A function that pushes one value through ``frontend`` and raises on an error."""
    if frontend == "headless":

        def set_headless(value: Any) -> None:
            explorer.update(**{control: value}).raise_for_error()

        return set_headless

    if frontend == "ipywidget":
        from ._ipy import IpyExplorerView as View
    elif frontend == "panel":
        from ._panel import PanelExplorerView as View  # type: ignore[assignment]
    else:
        raise ValueError(f"frontend must be 'headless', 'ipywidget' or 'panel', got {frontend!r}")
    view = View(explorer)
    if frontend == "panel":
        # Build the Bokeh models as a served page would, so each update pays for syncing them.
        view.root.get_root()

    def set_widget(value: Any) -> None:
        view.set_control(control, value)
        if view.error is not None:
            raise ControlError(view.error)

    return set_widget
