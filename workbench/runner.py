"""Run notebooks headlessly with papermill, keep everything a run produced, check metrics.

A run writes `runs/<timestamp>/`: for each notebook the executed `.ipynb`, an `.html` export
with its figures, its recorded metrics (`<notebook>.metrics.json`, and `<notebook>.metrics.csv`
with each metric's baseline, tolerance and verdict, a table JupyterLab opens), plus
`metrics.json` for the whole run (status, runtime, peak memory of the kernel, parameters,
profile, metrics) and `summary.txt`, the printed table; every result is also appended to
the run history (`runs/history.sqlite`, workbench.history). With `grid`, each
notebook runs at every point of a parameter grid, on any backend.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from itertools import product
from pathlib import Path
from typing import Any

import nbformat
import psutil

from workbench import history, regression
from workbench.backends import get_backend
from workbench.progress import HEADLESS_ENV
from workbench.reporting import METRICS_FILE_ENV

KERNEL_NAME = "python3"
NOTEBOOK_PATTERN = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
SMOKE_PARAMETER = "SMOKE"


class RunnerError(Exception):
    """A problem with what was asked of the runner (bad notebook name, parameter, ...)."""


# ------------------------------------------------------------------ project layout
@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def baselines_dir(self) -> Path:
        return self.root / "tests" / "baselines"

    @classmethod
    def find(cls, start: Path | None = None) -> Project:
        """The checkout containing `start` (default: the working directory).

        Found by walking up to a folder holding both `notebooks/` and `pyproject.toml`, so the
        commands work from any subfolder; WORKBENCH_ROOT overrides.
        """
        if os.environ.get("WORKBENCH_ROOT"):
            return cls(Path(os.environ["WORKBENCH_ROOT"]).resolve())
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / "notebooks").is_dir() and (folder / "pyproject.toml").is_file():
                return cls(folder)
        return cls(here)


def discover(notebooks_dir: Path) -> list[Path]:
    """The topic notebooks, `NN_topic.ipynb`, in order."""
    return sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))


def resolve_notebooks(names: Sequence[str], notebooks_dir: Path) -> list[Path]:
    """Paths for notebook arguments: a path, a file name, a stem ("00_tour") or a prefix ("00")."""
    available = discover(notebooks_dir)
    if not names:
        return available
    resolved = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.is_file():
            resolved.append(path.resolve())
            continue
        matches = [
            p for p in available if p.stem == name or p.name == name or p.stem.startswith(name)
        ]
        if len(matches) != 1:
            known = ", ".join(p.stem for p in available) or "none"
            problem = "is ambiguous" if matches else "matches no notebook"
            raise RunnerError(f"{name!r} {problem}; notebooks: {known}")
        resolved.append(matches[0])
    return resolved


# ------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class Range:
    """The values a number parameter accepts, an interval as its help comment ends:
    `in [1, inf)`, `in [0, 2**32)`, `in (0, 1)` (square bracket: bound included)."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool
    text: str  # as written, e.g. "[0, 2**32)"

    def __contains__(self, value: float) -> bool:
        if value != value:  # NaN
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # "bool", "int", "float", "str" or "None" when the cell gives no annotation
    default: str  # the literal as written in the notebook
    help: str
    range: Range | None = None  # from the help comment's trailing `in [LOW, HIGH)`


# The help comment cannot hold "=" (papermill skips a line with two), hence interval notation.
_RANGE = re.compile(
    r"(?:^|[\s,;])in\s+([\[(])\s*([^\s,\[\]()]+)\s*,\s*([^\s,\[\]()]+)\s*([\])])\s*$"
)


def parse_range(notebook: Path, name: str, help_text: str) -> Range | None:
    """The range declared at the end of a parameter's help comment, if any."""
    match = _RANGE.search(help_text or "")
    if not match:
        return None
    opening, low, high, closing = match.groups()
    try:
        low_value, high_value = _bound(low), _bound(high)
    except ValueError:
        raise RunnerError(
            f"{Path(notebook).name}: parameter {name}: cannot read the range "
            f"{match.group(0).strip()!r} (expected e.g. in [1, inf) or in [0, 2**32))"
        ) from None
    return Range(
        low_value,
        high_value,
        opening == "[" and low_value != float("-inf"),
        closing == "]" and high_value != float("inf"),
        f"{opening}{low}, {high}{closing}",
    )


def _bound(text: str) -> float:
    """A range bound: a number, `inf`/`-inf`, or arithmetic on numbers such as `2**32`."""
    if text.lstrip("+-") == "inf":
        return float(text)

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = value(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and isinstance(
            node.op, ast.Pow | ast.Mult | ast.Add | ast.Sub | ast.Div
        ):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 256:
                raise ValueError(text)
            operations = {
                ast.Pow: lambda: left**right,
                ast.Mult: lambda: left * right,
                ast.Add: lambda: left + right,
                ast.Sub: lambda: left - right,
                ast.Div: lambda: left / right,
            }
            return operations[type(node.op)]()
        raise ValueError(text)

    try:
        return value(ast.parse(text, mode="eval").body)
    except (SyntaxError, ZeroDivisionError, OverflowError):
        raise ValueError(text) from None


def parameters(notebook: Path) -> dict[str, Parameter]:
    """The notebook's `parameters` cell as papermill reads it, with each number's range."""
    import papermill

    try:
        found = papermill.inspect_notebook(str(notebook))
    except Exception as error:  # papermill raises plain exceptions for unreadable notebooks
        raise RunnerError(
            f"{Path(notebook).name}: cannot read its parameters: {_first_line(str(error))}"
        ) from error
    return {
        name: Parameter(
            name,
            spec["inferred_type_name"],
            spec["default"],
            spec["help"],
            parse_range(notebook, name, spec["help"]),
        )
        for name, spec in found.items()
    }


def coerce_parameters(notebook: Path, raw: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Parse `-p NAME VALUE` strings with the types the notebook declares."""
    declared = parameters(notebook)
    values: dict[str, Any] = {}
    for name, text in raw:
        if name not in declared:
            valid = ", ".join(declared) or "none"
            raise RunnerError(
                f"{Path(notebook).name} has no parameter {name!r}; valid parameters: {valid}"
            )
        values[name] = _parse_value(notebook, declared[name], text)
    return values


def _parse_value(notebook: Path, parameter: Parameter, text: Any) -> Any:
    value = _parse_text(notebook, parameter, text)
    where = f"{Path(notebook).name}: parameter {parameter.name} ({parameter.type})"
    if parameter.type == "float" and isinstance(value, float) and not math.isfinite(value):
        raise RunnerError(f"{where} expects a finite number, got {text!r}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if parameter.range is not None and number and value not in parameter.range:
        raise RunnerError(f"{where} must be in {parameter.range.text}, got {value!r}")
    return value


def _parse_text(notebook: Path, parameter: Parameter, text: Any) -> Any:
    if not isinstance(text, str):
        return text
    kind = parameter.type
    where = f"{Path(notebook).name}: parameter {parameter.name} ({kind})"
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
        raise RunnerError(f"{where} expects True or False, got {text!r}")
    if kind in {"int", "float"}:
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise RunnerError(f"{where} expects a number, got {text!r}") from None
    if kind == "str":
        return text
    try:  # untyped or container parameters: a Python literal, else the raw string
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def profile_of(notebook: Path, values: dict[str, Any]) -> str:
    """Which baseline a run with these parameter overrides is compared to."""
    declared = parameters(notebook)
    custom = {
        name
        for name, value in values.items()
        if name != SMOKE_PARAMETER and _literal(declared[name].default) != value
    }
    if custom:
        return regression.CUSTOM_PROFILE
    if SMOKE_PARAMETER in values:
        smoke = values[SMOKE_PARAMETER]
    else:
        smoke = SMOKE_PARAMETER in declared and _literal(declared[SMOKE_PARAMETER].default)
    return "smoke" if smoke else "full"


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# ------------------------------------------------------------------ execution
@dataclass
class NotebookResult:
    notebook: str
    status: str  # "ok" or "failed"
    runtime_s: float
    peak_memory_mb: float | None
    parameters: dict[str, Any]
    profile: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    executed: str | None = None  # path of the executed notebook
    check: str | None = None  # the regression verdict, filled in by the run
    variant: str = ""  # the grid point ("WIDTH=64,LR=0.01") when the run is part of a grid
    drifted: bool = False  # ran, but its metrics miss the baseline of its profile

    @property
    def label(self) -> str:
        return f"{self.notebook}[{self.variant}]" if self.variant else self.notebook

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _PeakMemory:
    """Peak resident memory of this process's children (the kernel) while a block runs.

    The kernel's VmHWM (its own high-water mark, kept by Linux) is polled, so a peak between
    polls is not missed; elsewhere the current RSS is sampled.
    """

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        me = psutil.Process()
        while True:
            for child in me.children(recursive=True):
                self.peak_bytes = max(self.peak_bytes, _high_water_mark(child))
            if self._stop.wait(self.interval_s):
                return


def _high_water_mark(process: psutil.Process) -> int:
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


DEFAULT_TIMEOUT_S = 3600.0  # per cell: the slowest full-mode cell takes minutes, not an hour


def execute(
    notebook: Path,
    out_dir: Path,
    values: dict[str, Any],
    *,
    progress: bool = False,
    html: bool = True,
    variant: str = "",
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> NotebookResult:
    """Execute one notebook into `out_dir`; never raises for a failing notebook.

    `variant` names a grid point; it suffixes the output files so grid runs do not collide.
    `timeout` bounds each cell's execution (seconds; None: no bound).
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(notebook).resolve()
    out_dir = Path(out_dir).resolve()  # the kernel runs in the notebook's folder
    out_dir.mkdir(parents=True, exist_ok=True)
    name = output_name(notebook.stem, variant)
    executed = out_dir / f"{name}.ipynb"
    metrics_file = out_dir / f"{name}.metrics.json"
    metrics_file.unlink(missing_ok=True)
    profile = profile_of(notebook, values)
    error = None
    start = time.perf_counter()
    try:
        with _kernel_environment(_kernel_variables(metrics_file)), _PeakMemory() as memory:
            for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
                try:
                    papermill.execute_notebook(
                        str(notebook),
                        str(executed),
                        parameters=values,
                        kernel_name=KERNEL_NAME,
                        progress_bar=progress,
                        cwd=str(notebook.parent),
                        # An explorer widget's state carries the whole plotly.js bundle (~4.5
                        # MB): stored, it makes every executed notebook and HTML export tens of
                        # MB. Headless explorers leave their figures as plain plotly outputs.
                        store_widget_state=False,
                        execution_timeout=_whole_seconds(timeout),
                    )
                    break
                except RuntimeError as failure:
                    if attempt == KERNEL_START_ATTEMPTS or not _kernel_never_started(failure):
                        raise
    except PapermillExecutionError as failure:
        error = _describe_failure(failure, executed)
    except CellTimeoutError as failure:
        error = _describe_timeout(failure, executed, timeout)
    except Exception as failure:  # kernel died, unreadable notebook, ...
        error = f"{type(failure).__name__}: {_first_line(str(failure))}"
    finally:
        runtime = time.perf_counter() - start
    try:
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    except (OSError, ValueError):
        metrics = {}
    if html and executed.exists():
        _export_html(executed)
    return NotebookResult(
        notebook=notebook.stem,
        status="failed" if error else "ok",
        runtime_s=round(runtime, 2),
        peak_memory_mb=round(memory.peak_bytes / 2**20, 1) if memory.peak_bytes else None,
        parameters=values,
        profile=profile,
        metrics=metrics,
        error=error,
        executed=str(executed) if executed.exists() else None,
        variant=variant,
    )


# Plotly reads PLOTLY_RENDERER when it is imported. "plotly_mimetype" keeps the interactive
# figure for JupyterLab; "notebook" adds an HTML copy for everything else (nbconvert's HTML
# export, nbviewer, the classic notebook), and at the first figure embeds plotly.js once in
# the notebook (offline: no CDN).
PLOTLY_RENDERER = "plotly_mimetype+notebook"


def _kernel_variables(metrics_file: Path) -> dict[str, str]:
    """What an executed notebook's kernel is told: where to record its metrics, that no reader
    watches it (progress bars end as one line), and how to store plotly figures."""
    return {
        METRICS_FILE_ENV: str(metrics_file),
        HEADLESS_ENV: "1",
        "PLOTLY_RENDERER": PLOTLY_RENDERER,
    }


@contextmanager
def _kernel_environment(variables: dict[str, str]):
    """Set `variables` in this process's environment, which the kernel process inherits, and
    put back what was there before."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# jupyter_client picks a kernel's TCP ports by binding port 0 and closing it, and the kernel
# binds them a moment later: a kernel started at the same time elsewhere (pytest -n 2, a grid
# on processes) can take one in between, and the new kernel dies with "Address already in
# use" before it runs a cell. Nothing ran, so starting again is safe.
KERNEL_START_ATTEMPTS = 3


def _kernel_never_started(failure: RuntimeError) -> bool:
    return "before replying to kernel_info" in str(failure)


def _whole_seconds(timeout: float | None) -> int | None:
    """nbclient's timeout is an integer number of seconds."""
    return None if timeout is None else max(1, math.ceil(timeout))


def output_name(notebook: str, variant: str = "") -> str:
    """What a notebook's files in a run folder are called: `<name>.ipynb`, `<name>.html`,
    `<name>.metrics.json`, `<name>.metrics.csv`."""
    return f"{notebook}[{_safe(variant)}]" if variant else notebook


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", text)


def _source_position(cells: list, index: int) -> int:
    """The 1-based number, in the source notebook, of the cell at `index` of a list of the
    executed copy's cells without papermill's error banners: the injected-parameters cell,
    which is not in the source, is not counted."""
    before = cells[:index]
    return 1 + sum("injected-parameters" not in c.metadata.get("tags", []) for c in before)


def _executed_cells(executed: Path) -> list:
    """The executed copy's cells as papermill executed them: without the error banner and
    anchor cells it inserts after a failure (they shift every later index)."""
    if not executed.exists():
        return []
    from papermill.execute import ERROR_MARKER_TAG

    cells = nbformat.read(executed, as_version=4).cells
    return [c for c in cells if ERROR_MARKER_TAG not in c.metadata.get("tags", [])]


def _describe_failure(failure, executed: Path) -> str:
    """Which cell failed, counted as a reader counts them in the source notebook (from 1).

    Papermill's index is into the executed notebook before it added its error banner and
    anchor cells, and that notebook has the injected-parameters cell.
    """
    cells = _executed_cells(executed)
    position = _source_position(cells, failure.cell_index) if cells else failure.cell_index + 1
    return (
        f"cell {position} (In [{failure.exec_count}] in the executed copy) raised "
        f"{failure.ename}: {_first_line(failure.evalue)} -- in `{_first_line(failure.source)}`"
    )


def _describe_timeout(failure, executed: Path, timeout: float | None) -> str:
    """A cell that ran past the timeout: nbclient interrupts it (its output then ends with a
    KeyboardInterrupt) or, when it does not answer, leaves it without a finished status."""
    cells = _executed_cells(executed)
    hung = None
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        status = cell.metadata.get("papermill", {})
        if (
            errors
            or status.get("status") == "running"
            or (status.get("start_time") and not status.get("end_time"))
        ):
            hung = index
            break
    limit = f"{timeout:g} s" if timeout is not None else "the timeout"
    if hung is None:
        return f"a cell ran longer than {limit} (the per-cell --timeout): {_first_line(failure)}"
    return (
        f"cell {_source_position(cells, hung)} ran longer than {limit} (the per-cell --timeout) "
        f"and was stopped -- in `{_first_line(cells[hung].source)}`"
    )


def _export_html(executed: Path) -> None:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    executed.with_suffix(".html").write_text(body)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


# ------------------------------------------------------------------ runs
def new_run_dir(runs_dir: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = Path(runs_dir) / stamp, 1
    while candidate.exists():
        n += 1
        candidate = Path(runs_dir) / f"{stamp}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def latest_run(runs_dir: Path) -> Path:
    runs = sorted(p.parent for p in Path(runs_dir).glob("*/metrics.json"))
    if not runs:
        raise RunnerError(
            f"no runs with metrics in {runs_dir}; run `python -m workbench run` first"
        )
    return max(runs, key=lambda p: (p.stat().st_mtime, p.name))


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`NAME=V1,V2,...` strings -> [(NAME, [V1, V2, ...])] (values parsed later, per notebook)."""
    axes = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        items = [v.strip() for v in values.split(",")]
        if not sep or not name.strip() or not all(items):
            raise RunnerError(f"--grid {spec!r}: expected NAME=V1,V2,... with non-empty values")
        if name.strip() in {n for n, _ in axes}:
            raise RunnerError(f"--grid {name.strip()} is given twice")
        repeated = sorted({v for v in items if items.count(v) > 1})
        if repeated:
            raise RunnerError(
                f"--grid {name.strip()}: the value {repeated[0]} is given twice "
                "(each point would overwrite the other's results)"
            )
        axes.append((name.strip(), items))
    return axes


def grid_points(axes: Sequence[tuple[str, list[str]]]) -> list[list[tuple[str, str]]]:
    """The cartesian product of the axes, first axis slowest; one empty point without axes."""
    names = [name for name, _ in axes]
    return [list(zip(names, combo, strict=True)) for combo in product(*(v for _, v in axes))]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM ended a run: its kernels and workers are gone, what finished is kept."""

    def __init__(self, signum: int = signal.SIGINT, run_dir: Path | None = None, kept: int = 0):
        super().__init__(signum)
        self.signum, self.run_dir, self.kept = int(signum), run_dir, kept

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        text = f"interrupted by {name}: the run stopped and its kernels and workers were ended"
        if self.run_dir is not None:
            text += f"; {self.kept} finished notebook(s) kept in {self.run_dir}"
        return text


class interrupt_handlers:
    """While active (in the main thread), SIGINT and SIGTERM raise Interrupted; a second
    signal during the cleanup is ignored, so the cleanup finishes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> interrupt_handlers:
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._before = _descendants()
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._raise)
        return self

    def _raise(self, signum, frame) -> None:
        for other in self._previous:
            signal.signal(other, signal.SIG_IGN)
        # SIGTERM the kernels and workers started since, before the clients' own cleanup
        # talks to them (an interrupted kernel replying on a closed socket prints a traceback)
        for process in _descendants() - self._before:
            try:
                process.terminate()
            except psutil.Error:
                pass
        raise Interrupted(signum)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _check_environment() -> None:
    """Settings the kernels would trip on, refused before anything runs."""
    from workbench._threads import ThreadsError, thread_count

    try:
        thread_count()
    except ThreadsError as error:
        raise RunnerError(str(error)) from None


def run(
    notebooks: Sequence[Path],
    raw_parameters: Sequence[tuple[str, str]] = (),
    *,
    smoke: bool = False,
    grid: Sequence[str] = (),
    backend=None,
    project: Project | None = None,
    run_dir: Path | None = None,
    progress: bool = True,
    html: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    echo=print,
    warn=None,
) -> tuple[Path, list[NotebookResult]]:
    """Execute notebooks (each at every `grid` point) into a new run folder, check their
    metrics against the baselines, record them in the run history, print the table.

    `backend` (see workbench.backends) says where the executions run: here one after the
    other (default), in local processes, or on Dask workers. Each notebook's metrics and
    history row are written as soon as it finishes, so an interrupted run keeps them.
    `timeout` bounds every cell (seconds, None: no bound). SIGINT/SIGTERM (see
    `interrupt_handlers`) end the kernels and workers started here and raise Interrupted.
    """
    warn = warn or (lambda text: print(text, file=sys.stderr))
    project = project or Project.find()
    if not notebooks:
        raise RunnerError(f"no notebooks to run in {project.notebooks_dir}")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise RunnerError(f"--timeout must be a positive number of seconds, got {timeout}")
    _check_environment()
    points = grid_points(parse_grid(grid))
    backend = get_backend(backend)  # a bad backend name fails here, before anything runs
    fixed = {name for name, _ in raw_parameters}
    clash = fixed & {name for name, _ in points[0]}
    if clash:
        raise RunnerError(f"{', '.join(sorted(clash))} is set by both -p and --grid")
    # Validate every notebook's parameters at every grid point before running anything.
    plans = []
    for notebook in notebooks:
        seen: dict[str, str] = {}
        for point in points:
            values = coerce_parameters(notebook, [*raw_parameters, *point])
            if smoke:
                if SMOKE_PARAMETER not in parameters(notebook):
                    raise RunnerError(
                        f"{Path(notebook).name} declares no {SMOKE_PARAMETER} parameter"
                    )
                values[SMOKE_PARAMETER] = True
            variant = ",".join(f"{name}={value}" for name, value in point)
            key = json.dumps(values, sort_keys=True, default=str)
            if key in seen:
                raise RunnerError(
                    f"--grid points {seen[key]} and {variant} of {Path(notebook).stem} are the "
                    "same parameters (each would overwrite the other's results)"
                )
            seen[key] = variant
            plans.append((Path(notebook), values, variant))
    labels = [f"{n.stem}[{v}]" if v else n.stem for n, _, v in plans]
    previous = _previous_results(Path(run_dir)) if run_dir else {}
    kept_twice = [label for label in labels if label in previous]
    if kept_twice:
        raise RunnerError(
            f"{run_dir} already holds results for {', '.join(kept_twice)}; "
            "choose another --run-dir (or leave it out for a new folder)"
        )
    backend.probe()  # an unreachable scheduler fails here, before a run folder exists
    if run_dir:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = new_run_dir(project.runs_dir)
    tasks = [
        _Execution(
            notebook,
            run_dir,
            values,
            variant,
            progress and backend.name == "inprocess",
            html,
            timeout,
        )
        for notebook, values, variant in plans
    ]
    commit, dirty = history.git_state(project.root)
    store = history.database(project.runs_dir)
    finished: dict[int, NotebookResult] = {}
    history_problem: list[str] = []

    def done(index: int, result: NotebookResult) -> None:
        """A notebook finished: check it, keep it in metrics.json and in the history now."""
        verdict = None
        if result.ok:
            verdict = regression.check_notebook(
                project.baselines_dir, result.notebook, result.profile, result.metrics
            )
            result.check = verdict.summary()
            result.drifted = not verdict.ok and verdict.skipped is None
        else:
            echo(f"✗ {result.label} FAILED: {result.error}")
            echo(f"  executed notebook kept at {result.executed}")
        write_metrics_table(run_dir, result, verdict, project.baselines_dir)
        finished[index] = result
        write_run(run_dir, [finished[i] for i in sorted(finished)], previous=previous)
        if history_problem:
            return
        try:
            history.record_results(store, run_dir, [result], commit=commit, dirty=dirty)
        except history.HistoryError as error:
            history_problem.append(str(error))
            warn(f"workbench: warning: the run history was not written: {error}")

    before = _descendants()
    try:
        if backend.name == "inprocess":
            for index, task in enumerate(tasks):
                echo(task.describe())
                done(index, task())
        else:
            for task in tasks:
                echo(task.describe())
            echo(f"… {len(tasks)} execution(s) on the {backend.name} backend")
            backend.map(
                _run_execution,
                tasks,
                progress="notebooks" if progress else None,
                on_result=done,
            )
    except KeyboardInterrupt as interruption:
        end_processes(_descendants() - before)
        signum = getattr(interruption, "signum", signal.SIGINT)
        raise Interrupted(signum, run_dir, len(finished)) from None
    results = [finished[i] for i in sorted(finished)]
    echo(format_table(results))
    echo(f"run folder: {run_dir}")
    return run_dir, results


def _descendants() -> set[psutil.Process]:
    try:
        return set(psutil.Process().children(recursive=True))
    except psutil.Error:
        return set()


def end_processes(processes: Iterable[psutil.Process], grace_s: float = 3.0) -> None:
    """Terminate these processes and all their descendants, then kill what is left."""
    from workbench.backends import end_process_trees

    end_process_trees(list(processes), grace_s=grace_s)


def _previous_results(run_dir: Path) -> dict[str, dict[str, Any]]:
    """What an existing run folder already holds, so a reused --run-dir keeps it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunnerError(f"--run-dir {run_dir} is a file, not a folder")
    path = run_dir / "metrics.json"
    if not path.exists():
        return {}
    return _read_metrics(path)


def _read_metrics(path: Path) -> dict[str, dict[str, Any]]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunnerError(f"{path} is not readable run metrics: {_first_line(error)}") from None
    if not isinstance(payload, dict) or not all(isinstance(e, dict) for e in payload.values()):
        raise RunnerError(f"{path} is not readable run metrics: expected one object per notebook")
    return payload


@dataclass(frozen=True)
class _Execution:
    """One notebook at one parameter point: picklable, so any backend can run it."""

    notebook: Path
    run_dir: Path
    values: dict[str, Any]
    variant: str
    progress: bool
    html: bool
    timeout: float | None = DEFAULT_TIMEOUT_S

    def describe(self) -> str:
        shown = " ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"▶ {self.notebook.stem} {shown}".rstrip()

    def __call__(self) -> NotebookResult:
        return execute(
            self.notebook,
            self.run_dir,
            self.values,
            progress=self.progress,
            html=self.html,
            variant=self.variant,
            timeout=self.timeout,
        )


def _run_execution(task: _Execution) -> NotebookResult:
    return task()


def write_run(
    run_dir: Path,
    results: Sequence[NotebookResult],
    *,
    previous: dict[str, dict[str, Any]] | None = None,
) -> None:
    """metrics.json and summary.txt for these results, after what the folder held before.

    Written to a temporary file and renamed, so an interruption never leaves half a file.
    """
    payload = dict(previous or {})
    payload.update({result.label: asdict(result) for result in results})
    _write_atomically(run_dir / "metrics.json", json.dumps(payload, indent=2, default=str) + "\n")
    everything = [_result_from(entry) for entry in payload.values()]
    _write_atomically(run_dir / "summary.txt", format_table(everything) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


METRICS_TABLE_COLUMNS = ("metric", "value", "baseline", "atol", "rtol", "verdict")


def metrics_table_path(run_dir: Path, result: NotebookResult) -> Path:
    return Path(run_dir) / f"{output_name(result.notebook, result.variant)}.metrics.csv"


def write_metrics_table(
    run_dir: Path,
    result: NotebookResult,
    verdict: regression.NotebookCheck | None,
    baselines_dir: Path,
) -> Path:
    """`<notebook>.metrics.csv`: every metric the notebook recorded with its baseline, the
    tolerance it is checked with and the verdict, one row each (JupyterLab opens a CSV as a
    table). `verdict` is None for a failed run: its metrics are listed, not compared."""
    rows = metrics_table_rows(result, verdict, baselines_dir)
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator="\n")
    writer.writerow(METRICS_TABLE_COLUMNS)
    writer.writerows([row[column] for column in METRICS_TABLE_COLUMNS] for row in rows)
    path = metrics_table_path(run_dir, result)
    _write_atomically(path, lines.getvalue())
    return path


def metrics_table_rows(
    result: NotebookResult, verdict: regression.NotebookCheck | None, baselines_dir: Path
) -> list[dict[str, str]]:
    """The rows of `<notebook>.metrics.csv`, recorded metrics first (in the order the notebook
    recorded them), then the baseline's metrics the run did not record."""
    expected = {}
    if result.profile != regression.CUSTOM_PROFILE:
        profiles = regression.load_baseline(baselines_dir, result.notebook)
        expected = profiles.get(result.profile) or {}
    drifts = {d.metric: d for d in verdict.drifts} if verdict is not None else {}

    def said(metric: str) -> str:
        if verdict is None:
            return "not compared: the run failed"
        if verdict.skipped:
            return f"not compared: {verdict.skipped}"
        drift = drifts.get(metric)
        if drift is None and "*" in drifts:
            return f"no {result.profile} baseline"
        if drift is None:
            return "within baseline"
        return "no baseline" if drift.expected is None else drift.reason

    rows = []
    for metric, entry in result.metrics.items():
        spec = expected.get(metric, {})
        limits = spec if spec else entry
        rows.append(
            {
                "metric": metric,
                "value": _table_value(entry.get("value")),
                "baseline": _table_value(spec.get("value")),
                "atol": _table_value(limits.get("atol")),
                "rtol": _table_value(limits.get("rtol")),
                "verdict": said(metric),
            }
        )
    for metric, spec in expected.items():
        if metric not in result.metrics:
            rows.append(
                {
                    "metric": metric,
                    "value": "",
                    "baseline": _table_value(spec.get("value")),
                    "atol": _table_value(spec.get("atol")),
                    "rtol": _table_value(spec.get("rtol")),
                    "verdict": "not recorded" if verdict is not None else said(metric),
                }
            )
    return rows


def _table_value(value: Any) -> str:
    """A metric's value for a reader: 6 significant digits (the tolerances are about 1e-6
    relative; metrics.json keeps the exact value), yes/no, text as recorded, blank if none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _result_from(entry: dict[str, Any]) -> NotebookResult:
    known = {f.name for f in fields(NotebookResult)}
    return NotebookResult(**{k: v for k, v in entry.items() if k in known})


def load_run(run_dir: Path) -> list[NotebookResult]:
    """The results a run folder holds; a RunnerError, not a traceback, for anything else."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunnerError(f"no run folder {run_dir}")
    if not run_dir.is_dir():
        raise RunnerError(f"{run_dir} is a file, not a run folder")
    path = run_dir / "metrics.json"
    if not path.exists():
        raise RunnerError(
            f"{run_dir} has no metrics.json: not a run folder, or no notebook of the run finished"
        )
    try:
        return [_result_from(entry) for entry in _read_metrics(path).values()]
    except TypeError as error:
        raise RunnerError(f"{path} is not readable run metrics: {error}") from None


def format_table(results: Sequence[NotebookResult]) -> str:
    header = ("notebook", "profile", "status", "runtime", "peak memory", "metrics vs baseline")
    rows = [
        (
            r.label,
            r.profile,
            "drifted" if r.ok and r.drifted else r.status,
            f"{r.runtime_s:.1f} s",
            f"{r.peak_memory_mb:.0f} MiB" if r.peak_memory_mb else "-",
            r.check or _shorten(r.error or "-", 60),
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def check(
    run_dir: Path | None = None,
    *,
    project: Project | None = None,
    update_baselines: bool = False,
    echo=print,
) -> bool:
    """Compare a run's metrics with the baselines (default: the latest run). True if clean."""
    project = project or Project.find()
    run_dir = Path(run_dir) if run_dir else latest_run(project.runs_dir)
    results = load_run(run_dir)
    echo(f"checking {run_dir}")
    clean = True
    for result in results:
        if not result.ok:
            echo(f"FAILED  {result.notebook}: the run failed ({result.error}); nothing to compare")
            write_metrics_table(run_dir, result, None, project.baselines_dir)
            clean = False
            continue
        if update_baselines:
            if result.profile == regression.CUSTOM_PROFILE:
                echo(f"skip    {result.notebook}: custom parameters do not make a baseline")
                continue
            _update_baselines(result, project, echo)
        verdict = regression.check_notebook(
            project.baselines_dir, result.notebook, result.profile, result.metrics
        )
        write_metrics_table(run_dir, result, verdict, project.baselines_dir)
        if not update_baselines:
            clean = _report(result, verdict, echo) and clean
    if results:
        echo(
            f"every metric with its baseline, tolerance and verdict: "
            f"{run_dir}/<notebook>.metrics.csv"
        )
    return clean


def _update_baselines(result: NotebookResult, project: Project, echo) -> None:
    """Rewrite the baseline of this result's profile (and, from SMOKE, the golden cells)."""
    path = regression.update_baseline(
        project.baselines_dir, result.notebook, result.profile, result.metrics
    )
    echo(f"updated {result.notebook} [{result.profile}]: {len(result.metrics)} metrics -> {path}")
    if result.profile == "smoke" and result.executed:
        source = project.notebooks_dir / f"{result.notebook}.ipynb"
        n_cells = refresh_golden_outputs(source, Path(result.executed))
        if n_cells:
            echo(f"updated {result.notebook}: {n_cells} keep_output cell(s) -> {source}")


def _report(result: NotebookResult, verdict: regression.NotebookCheck, echo) -> bool:
    """Print a notebook's check; False when it drifted."""
    if verdict.skipped:
        echo(f"skip    {result.notebook} [{result.profile}]: {verdict.skipped}")
    elif verdict.ok:
        echo(f"ok      {result.notebook} [{result.profile}]: {verdict.summary()}")
    else:
        for drift in verdict.drifts:
            echo(f"DRIFT   {drift.describe()}")
    return verdict.ok or verdict.skipped is not None


GOLDEN_TAG = "keep_output"


def golden_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if GOLDEN_TAG in c.get("metadata", {}).get("tags", [])]


def refresh_golden_outputs(source: Path, executed: Path) -> int:
    """Copy the outputs of `keep_output` cells from an executed copy into the source notebook.

    The golden outputs are checked by nbval on a SMOKE run, so they are refreshed from SMOKE
    runs only. Cells are matched by their source text; returns how many were updated.
    """
    notebook = nbformat.read(source, as_version=4)
    ran = {cell.source: cell for cell in golden_cells(nbformat.read(executed, as_version=4))}
    updated = 0
    for cell in golden_cells(notebook):
        if cell.source in ran and cell.outputs != ran[cell.source].outputs:
            cell.outputs = ran[cell.source].outputs
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = None
            updated += 1
    if updated:
        nbformat.write(notebook, source)
    return updated


def catalog(notebooks_dir: Path) -> list[dict[str, str]]:
    """Each topic notebook's title and one-line summary (its first markdown cell)."""
    entries = []
    for path in discover(notebooks_dir):
        notebook = nbformat.read(path, as_version=4)
        markdown = next((c.source for c in notebook.cells if c.cell_type == "markdown"), "")
        lines = [line.strip() for line in markdown.splitlines() if line.strip()]
        title = lines[0].lstrip("# ").strip() if lines else path.stem
        summary = next((line for line in lines[1:] if not line.startswith("#")), "")
        entries.append({"notebook": path.name, "title": title, "summary": summary})
    return entries
