"""Parameter sweeps: a function of one cell, run over a grid of cells, into one tidy table.

`run_sweep(fn, cells, name=...)` calls `fn(**cell)` for every cell and concatenates the rows
it returns, with the cell's parameters as leading columns. Results are cached in memory and
on disk (`WORKBENCH_CACHE`, default `<repo>/.cache/sweeps`), keyed by the sweep's name, the
cell, and a fingerprint of the source code the function can reach, so editing that code
invalidates the cache instead of serving stale numbers.

The per-cell work must be a pure function of the cell (seeds included in the cell or fixed
inside `fn`): that is what makes the cache sound, and what lets a backend run cells in other
processes or on a Dask cluster (`backend=`, see workbench.backends).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from workbench.backends import get_backend

CACHE_ENV = "WORKBENCH_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "sweeps"

# In-process cache: key -> the frame of one cell (copies are handed out, never the original).
_memory: dict[str, pd.DataFrame] = {}


# ------------------------------------------------------------------------------------ grid
def grid(**axes: Any) -> list[dict[str, Any]]:
    """The cartesian product of the axes, as cells (dicts), the last axis varying fastest.

    Each axis is a sequence of values; a scalar (or a string) is a one-value axis, so fixed
    parameters can ride along: `grid(width=[32, 64], lr=[1e-3, 1e-2], steps=100)`.
    Numpy scalars are converted to Python numbers so that cells stay JSON-serializable.
    """
    names = list(axes)
    values = [_axis_values(name, axes[name]) for name in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def _axis_values(name: str, axis: Any) -> list[Any]:
    if isinstance(axis, str | bytes | Mapping) or not isinstance(axis, Iterable):
        return [_plain(axis)]
    return [_plain(v) for v in axis]


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()  # numpy / torch scalars
    return value


# ------------------------------------------------------------------------------- run_sweep
def run_sweep(
    fn: Callable[..., pd.DataFrame | list[dict[str, Any]]],
    cells: Sequence[Mapping[str, Any]],
    *,
    name: str,
    cache: bool = True,
    progress: bool = True,
    backend: Any = None,
) -> pd.DataFrame:
    """Run `fn(**cell)` for every cell and return all rows, cell parameters first, in cell order.

    Args:
        fn: returns the result rows of one cell, as a DataFrame or a list of dicts. Its
            columns must not repeat a cell parameter's name.
        cells: dicts of JSON-serializable parameters (see `grid`).
        name: names the sweep in the cache key and the progress bar.
        cache: reuse results computed before for the same (name, cell, code), from memory or
            from disk; store new ones.
        progress: show a tqdm bar over the cells being computed.
        backend: where the uncached cells run (workbench.backends): None or "inprocess" (here,
            in turn), "processes[:N]", "dask[:N]", "dask://HOST:PORT", or a backend object.
            Other processes need `fn` to be picklable (a module-level function or a partial
            of one). Results come back in cell order, each once, even if a worker dies.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    cells = [_checked_cell(i, cell) for i, cell in enumerate(cells)]
    backend = get_backend(backend)
    code = code_fingerprint(fn) if cache else ""
    keys = [cell_key(name, cell, code) for cell in cells]
    frames: dict[int, pd.DataFrame] = {}
    if cache:
        for index, key in enumerate(keys):
            cached = _cached(key)
            if cached is not None:
                frames[index] = cached
    missing = [i for i in range(len(cells)) if i not in frames]
    if missing:
        results = backend.map(
            _CellCall(fn), [cells[i] for i in missing], progress=name if progress else None
        )
        for index, rows in zip(missing, results, strict=True):
            frames[index] = _rows_frame(rows, cells[index])
            if cache:
                _store(keys[index], frames[index])
    if not frames:
        return pd.DataFrame()
    return pd.concat(
        [_with_cell_columns(frames[i], cell) for i, cell in enumerate(cells)], ignore_index=True
    )


@dataclass(frozen=True)
class _CellCall:
    """fn(**cell) as a one-argument, picklable task for any backend."""

    fn: Callable[..., Any]

    def __call__(self, cell: Mapping[str, Any]) -> Any:
        return self.fn(**cell)


def cell_key(name: str, cell: Mapping[str, Any], code: str) -> str:
    """sha256 of (sweep name, cell, code fingerprint): the cache key of one cell."""
    payload = json.dumps({"name": name, "cell": cell, "code": code}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def clear_memory_cache() -> None:
    """Forget the in-process results (the disk cache stays)."""
    _memory.clear()


def _checked_cell(index: int, cell: Any) -> dict[str, Any]:
    if not isinstance(cell, Mapping):
        raise ValueError(f"cell {index} must be a dict of parameters, got {type(cell).__name__}")
    cell = {k: _plain(v) for k, v in cell.items()}
    for key, value in cell.items():
        if not isinstance(key, str):
            raise ValueError(f"cell {index}: parameter names must be strings, got {key!r}")
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"cell {index}: parameter {key!r} = {value!r} ({type(value).__name__}) is not "
                "JSON-serializable; cells hold plain numbers, strings, bools, None and "
                "lists/dicts of them"
            ) from error
    return cell


def _rows_frame(rows: Any, cell: Mapping[str, Any]) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        frame = rows.reset_index(drop=True)
    elif isinstance(rows, list) and all(isinstance(r, Mapping) for r in rows):
        frame = pd.DataFrame(list(rows))
    else:
        raise ValueError(
            f"the sweep function must return a DataFrame or a list of dicts, got "
            f"{type(rows).__name__} for cell {cell}"
        )
    clash = [c for c in frame.columns if c in cell]
    if clash:
        raise ValueError(f"result columns {clash} repeat cell parameters of {cell}")
    return frame


def _with_cell_columns(rows: pd.DataFrame, cell: Mapping[str, Any]) -> pd.DataFrame:
    frame = rows.copy()
    for position, (key, value) in enumerate(cell.items()):
        frame.insert(position, key, [value] * len(frame) if len(frame) else [])
    return frame


# ----------------------------------------------------------------------------------- cache
def _cached(key: str) -> pd.DataFrame | None:
    if key in _memory:
        return _memory[key].copy()
    path = cache_dir() / f"{key}.pkl"
    if not path.exists():
        return None
    try:
        with path.open("rb") as handle:
            frame = pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None  # a truncated or foreign file: recompute and overwrite it
    if not isinstance(frame, pd.DataFrame):
        return None
    _memory[key] = frame
    return frame.copy()


def _store(key: str, frame: pd.DataFrame) -> None:
    _memory[key] = frame.copy()
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # write then rename: a concurrent reader never sees half a file
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as handle:
        pickle.dump(frame, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(handle.name, directory / f"{key}.pkl")


# ----------------------------------------------------------------------- code fingerprint
def code_fingerprint(fn: Callable[..., Any]) -> str:
    """sha256 over the source of `fn` and of every project module it can reach.

    "Reach" follows module globals transitively: the module file defining `fn` (wherever it
    lives), and any module, function or class in its globals whose source file lives in this
    repository (outside `.venv`). Imports made inside function bodies are not seen. A
    function defined in a notebook (no module file) contributes its own source text.
    """
    target, bound = _unwrap(fn)
    digest = hashlib.sha256()
    digest.update(json.dumps(bound, sort_keys=True, default=repr).encode())
    try:
        digest.update(inspect.getsource(target).encode())
    except (OSError, TypeError):
        digest.update(getattr(target, "__qualname__", repr(target)).encode())
    for path in sorted(_reachable_files(target)):
        digest.update(str(path).encode())
        digest.update(_file_hash(path).encode())
    return digest.hexdigest()


def _unwrap(fn: Callable[..., Any]) -> tuple[Callable[..., Any], Any]:
    """The underlying function and the arguments a functools.partial binds (part of the key)."""
    bound: list[Any] = []
    while isinstance(fn, functools.partial):
        bound.append([list(fn.args), dict(fn.keywords)])
        fn = fn.func
    return inspect.unwrap(fn), bound


def _reachable_files(fn: Callable[..., Any]) -> set[Path]:
    start = getattr(fn, "__globals__", None)
    if start is None:
        module = inspect.getmodule(fn) or inspect.getmodule(type(fn))
        start = vars(module) if module is not None else {}
    files: set[Path] = set()
    seen: set[str] = set()
    pending = [start]
    while pending:
        namespace = pending.pop()
        for value in list(namespace.values()):
            module = value if isinstance(value, ModuleType) else _defining_module(value)
            if module is None or module.__name__ in seen:
                continue
            seen.add(module.__name__)
            path = _project_file(module)
            if path is not None:
                files.add(path)
                pending.append(vars(module))
    own = getattr(inspect.getmodule(fn), "__file__", None)
    if own and own.endswith(".py"):
        files.add(Path(own).resolve())  # fn's own module counts wherever it lives
    return files


def _defining_module(value: Any) -> ModuleType | None:
    if not (inspect.isfunction(value) or inspect.isclass(value)):
        return None
    return sys.modules.get(getattr(value, "__module__", None) or "")


def _project_file(module: ModuleType | None) -> Path | None:
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    if path.suffix != ".py" or not path.is_relative_to(REPO_ROOT):
        return None
    if ".venv" in path.relative_to(REPO_ROOT).parts:
        return None
    return path


@functools.lru_cache(maxsize=512)
def _file_hash_at(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_hash(path: Path) -> str:
    stat = path.stat()
    return _file_hash_at(path, stat.st_mtime_ns, stat.st_size)


__all__ = ["cache_dir", "cell_key", "clear_memory_cache", "code_fingerprint", "grid", "run_sweep"]
