"""Parameter sweeps: a function of one cell, run over a grid of cells, into one tidy table.

`run_sweep(fn, cells, name=...)` calls `fn(**cell)` for every cell and concatenates the rows
it returns, with the cell's parameters as leading columns. Results are cached in memory and
on disk (`WORKBENCH_CACHE`, default `<repo>/.cache/sweeps`), keyed by the sweep's name, the
cell, a fingerprint of the source code the function can reach (read statically, so the same
in every process), and a fingerprint of the platform (Python, torch and numpy with their
BLAS builds, CPU capability, the environment variables that switch BLAS code paths). So
editing that code invalidates the cache instead of serving stale numbers, and a warm cache
never hides a drift another platform would show.

On disk each cell is one JSON file in a format defined here (`encode_frame`), validated on
read; an invalid file is recomputed and overwritten. Nothing is ever unpickled.

The per-cell work must be a pure function of the cell (seeds included in the cell or fixed
inside `fn`): that is what makes the cache sound, and what lets a backend run cells in other
processes or on a Dask cluster (`backend=`, see workbench.backends).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import inspect
import io
import itertools
import json
import math
import os
import platform
import re
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from workbench.backends import get_backend
from workbench.memo import memoized

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
                _store(keys[index], frames[index], name=name, cell=cells[index])
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


def cell_key(name: str, cell: Mapping[str, Any], code: str, platform: str | None = None) -> str:
    """sha256 of (sweep name, cell, code fingerprint, platform fingerprint): the cache key of
    one cell. `platform` defaults to this process's `platform_fingerprint()`."""
    payload = {
        "format": FORMAT_VERSION,
        "name": name,
        "cell": cell,
        "code": code,
        "platform": platform_fingerprint() if platform is None else platform,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


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
# On disk, one cell's frame is one JSON file `<key>.json` in a format defined here (see
# `encode_frame`): plain data only, read by a validating decoder that builds nothing but
# numbers, strings, bools, None and numpy arrays. Nothing on disk is ever unpickled; files of
# the old pickle cache (`<key>.pkl`) are ignored.
FORMAT = "workbench.sweep.frame"
FORMAT_VERSION = 1
CACHE_SUFFIX = ".json"

_FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
_INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_ARRAY_DTYPES = _FLOAT_DTYPES | _INT_DTYPES | {"bool"}
# pandas' string dtypes: "str" (the default, NaN for missing) and "string" (pd.NA for missing)
_STRING_DTYPES = frozenset({"str", "string"})
_COLUMN_DTYPES = _ARRAY_DTYPES | _STRING_DTYPES | {"object"}
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class CacheFormatError(ValueError):
    """A frame that the cache format cannot hold exactly, or a file that is not a valid one."""


def cache_path(key: str) -> Path:
    """The file that holds the cell with this key."""
    return cache_dir() / f"{key}{CACHE_SUFFIX}"


def _cached(key: str) -> pd.DataFrame | None:
    if key in _memory:
        return _memory[key].copy()
    frame = _read(cache_path(key), key)
    if frame is None:
        return None  # absent, unreadable or invalid: recompute (and overwrite)
    _memory[key] = frame
    return frame.copy()


def _read(path: Path, key: str) -> pd.DataFrame | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # absent, unreadable, not text
        return None
    try:
        return decode_frame(json.loads(text, parse_constant=_refuse_constant), key=key)
    except Exception:  # any invalid file: the decoder builds only plain data, never code
        return None


def _store(key: str, frame: pd.DataFrame, *, name: str = "", cell: Any = None) -> None:
    _memory[key] = frame.copy()
    try:
        payload = encode_frame(frame, key=key, name=name, cell=cell)
    except CacheFormatError as error:
        warnings.warn(
            f"sweep {name!r}: cell {cell} kept in memory only, not on disk: {error}",
            stacklevel=3,
        )
        return
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _tidy(directory)
        _write_atomically(directory, cache_path(key), payload)
    except OSError as error:  # a full or read-only disk costs the cache, never the results
        warnings.warn(f"sweep {name!r}: could not store cell {cell} on disk: {error}", stacklevel=3)


def _write_atomically(directory: Path, target: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same directory, then rename it over `target`: a reader
    never sees half a file, and whatever fails on the way, no temporary file is left."""
    handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{target.stem}.", suffix=".tmp")
    done = False
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, allow_nan=False, separators=(",", ":"))
        os.replace(temp, target)
        done = True
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(temp)


_tidied: set[Path] = set()
_STALE_TEMP_SECONDS = 3600.0


def _tidy(directory: Path) -> None:
    """Once per process and directory: delete the files of the old pickle cache (never read)
    and temporary files left by a process killed mid-write (older than an hour)."""
    if directory in _tidied:
        return
    _tidied.add(directory)
    now = time.time()
    for path in directory.iterdir():
        with contextlib.suppress(OSError):
            if _LEGACY_FILE.fullmatch(path.name) or (
                path.name.startswith(".")
                and path.name.endswith(".tmp")
                and now - path.stat().st_mtime > _STALE_TEMP_SECONDS
            ):
                path.unlink()


_LEGACY_FILE = re.compile(r"[0-9a-f]{64}\.pkl")


def _refuse_constant(token: str) -> Any:
    raise CacheFormatError(f"non-standard JSON constant {token}")


# --------------------------------------------------------------------------- frame format
def encode_frame(
    frame: pd.DataFrame, *, key: str, name: str = "", cell: Any = None
) -> dict[str, Any]:
    """The JSON document of one cell's frame (strict JSON: no NaN/Infinity tokens).

    {"format": "workbench.sweep.frame", "version": 1, "key": <cache key>, "name": <sweep>,
     "cell": <cell>, "n_rows": N, "columns": [{"name", "dtype", "values"}, ...]}

    Column dtypes: float16/32/64 (finite values as JSON numbers, which Python writes in the
    shortest form that reads back to the same float, non-finite ones as "nan", "inf", "-inf"),
    int8..uint64, bool, str / string (null for missing), and object columns whose values are
    null, bools, ints, strings, or tagged: {"float": x}, {"list": [...]}, {"tuple": [...]},
    {"dict": {str: value}}, {"scalar": {"dtype", "value"}} (a numpy scalar) and
    {"ndarray": {"dtype", "shape", "data"}} (a numeric or bool array, data flattened in C
    order). The index is always a RangeIndex of n_rows. Anything else raises CacheFormatError.
    """
    if not isinstance(frame.index, pd.RangeIndex) or not frame.index.equals(
        pd.RangeIndex(len(frame))
    ):
        raise CacheFormatError("the frame's index is not a default RangeIndex")
    names = list(frame.columns)
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise CacheFormatError(f"column names must be distinct strings, got {names}")
    if not names and not isinstance(frame.columns, pd.RangeIndex):
        raise CacheFormatError("an empty frame's columns must be a RangeIndex")
    columns = []
    for position, column in enumerate(names):
        series = frame.iloc[:, position]
        dtype = str(series.dtype)
        if dtype not in _COLUMN_DTYPES:
            raise CacheFormatError(f"column {column!r} has dtype {dtype}")
        try:
            values = _encode_column(series, dtype)
        except CacheFormatError as error:
            raise CacheFormatError(f"column {column!r}: {error}") from None
        columns.append({"name": column, "dtype": dtype, "values": values})
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "key": key,
        "name": name,
        "cell": json.loads(json.dumps(cell, default=str), parse_constant=str),  # for people
        "n_rows": len(frame),
        "columns": columns,
    }


def decode_frame(document: Any, *, key: str) -> pd.DataFrame:
    """The frame of a document written by `encode_frame` for `key`; CacheFormatError (or
    another ValueError / TypeError) if it is not exactly such a document."""
    if not isinstance(document, dict):
        raise CacheFormatError("not a JSON object")
    if document.get("format") != FORMAT or document.get("version") != FORMAT_VERSION:
        raise CacheFormatError("not a sweep frame of this format version")
    if document.get("key") != key:
        raise CacheFormatError("the file holds another key")
    n_rows, columns = document.get("n_rows"), document.get("columns")
    if not _is_int(n_rows) or n_rows < 0 or not isinstance(columns, list):
        raise CacheFormatError("bad n_rows or columns")
    data: dict[str, Any] = {}
    for column in columns:
        if not isinstance(column, dict) or set(column) != {"name", "dtype", "values"}:
            raise CacheFormatError("bad column entry")
        name, dtype, values = column["name"], column["dtype"], column["values"]
        if not isinstance(name, str) or name in data:
            raise CacheFormatError(f"bad or repeated column name {name!r}")
        if dtype not in _COLUMN_DTYPES:
            raise CacheFormatError(f"column {name!r}: dtype {dtype!r} is not allowed")
        if not isinstance(values, list) or len(values) != n_rows:
            raise CacheFormatError(f"column {name!r} does not hold {n_rows} values")
        data[name] = _decode_column(values, dtype)
    index = pd.RangeIndex(n_rows)
    if not data:
        return pd.DataFrame(index=index, columns=pd.RangeIndex(0))
    return pd.DataFrame(data, index=index)


def _encode_column(series: pd.Series, dtype: str) -> list[Any]:
    if dtype in _FLOAT_DTYPES:
        return [_encode_float(v) for v in series.to_numpy().astype(np.float64).tolist()]
    if dtype in _INT_DTYPES or dtype == "bool":
        return series.to_numpy().tolist()
    if dtype in _STRING_DTYPES:
        return [None if _is_missing(v) else str(v) for v in series.tolist()]
    return [_encode_value(v, depth=0) for v in series.to_numpy(dtype=object).tolist()]


def _decode_column(values: list[Any], dtype: str) -> Any:
    if dtype in _ARRAY_DTYPES:
        return pd.Series(_decode_array(values, dtype), dtype=dtype)
    if dtype in _STRING_DTYPES:
        if not all(v is None or isinstance(v, str) for v in values):
            raise CacheFormatError("a string column holds a non-string")
        return pd.Series(pd.array(values, dtype=pd.api.types.pandas_dtype(dtype)))
    decoded = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # element by element: arrays stay one value each
        decoded[i] = _decode_value(value, depth=0)
    return pd.Series(decoded, dtype=object)


_MAX_DEPTH = 32


def _encode_value(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise CacheFormatError("values nested too deep")
    if value is None or type(value) in (bool, int, str):  # exact types: no subclass survives
        return value
    if type(value) is float:
        return {"float": _encode_float(value)}
    if type(value) is np.ndarray:
        dtype = str(value.dtype)
        if dtype not in _ARRAY_DTYPES:
            raise CacheFormatError(f"an array of dtype {dtype}")
        flat = value.reshape(-1)
        if dtype in _FLOAT_DTYPES:
            data = [_encode_float(v) for v in flat.astype(np.float64).tolist()]
        else:
            data = flat.tolist()
        return {"ndarray": {"dtype": dtype, "shape": list(value.shape), "data": data}}
    if isinstance(value, np.generic):
        dtype = str(value.dtype)
        if dtype not in _ARRAY_DTYPES:
            raise CacheFormatError(f"a numpy scalar of dtype {dtype}")
        item = value.item()
        return {
            "scalar": {
                "dtype": dtype,
                "value": _encode_float(float(item)) if dtype in _FLOAT_DTYPES else item,
            }
        }
    if type(value) in (list, tuple):
        tag = "list" if type(value) is list else "tuple"
        return {tag: [_encode_value(v, depth + 1) for v in value]}
    if type(value) is dict and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode_value(v, depth + 1) for k, v in value.items()}}
    raise CacheFormatError(f"a value of type {type(value).__name__}")


def _decode_value(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise CacheFormatError("values nested too deep")
    if value is None or isinstance(value, bool | int | str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise CacheFormatError(f"an untagged value {type(value).__name__}")
    ((tag, inner),) = value.items()
    if tag == "float":
        return _decode_float(inner)
    if tag in ("list", "tuple") and isinstance(inner, list):
        items = [_decode_value(v, depth + 1) for v in inner]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and isinstance(inner, dict):
        return {k: _decode_value(v, depth + 1) for k, v in inner.items()}
    if tag == "scalar" and isinstance(inner, dict) and set(inner) == {"dtype", "value"}:
        dtype = inner["dtype"]
        if dtype not in _ARRAY_DTYPES:
            raise CacheFormatError(f"a numpy scalar of dtype {dtype!r}")
        return _decode_array([inner["value"]], dtype)[0]
    if tag == "ndarray" and isinstance(inner, dict) and set(inner) == {"dtype", "shape", "data"}:
        dtype, shape, data = inner["dtype"], inner["shape"], inner["data"]
        if dtype not in _ARRAY_DTYPES:
            raise CacheFormatError(f"an array of dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
            raise CacheFormatError(f"an array of shape {shape!r}")
        if not isinstance(data, list) or len(data) != math.prod(shape):
            raise CacheFormatError("an array whose data does not fill its shape")
        return _decode_array(data, dtype).reshape(shape)
    raise CacheFormatError(f"an unknown or malformed tag {tag!r}")


def _decode_array(values: list[Any], dtype: str) -> np.ndarray:
    if dtype in _FLOAT_DTYPES:
        return np.array([_decode_float(v) for v in values], dtype=np.float64).astype(dtype)
    if dtype == "bool":
        if not all(isinstance(v, bool) for v in values):
            raise CacheFormatError("a bool column holds a non-bool")
        return np.array(values, dtype=bool)
    if not all(_is_int(v) for v in values):
        raise CacheFormatError("an integer column holds a non-integer")
    return np.array(values, dtype=dtype)  # OverflowError for a value out of the dtype's range


def _encode_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _decode_float(value: Any) -> float:
    if isinstance(value, str):
        return _NONFINITE[value]  # KeyError for any other string
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CacheFormatError(f"a float column holds {type(value).__name__}")
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------- platform info
# Environment variables that change which numeric code paths MKL, OpenBLAS, torch or numpy take.
PLATFORM_ENV = (
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "OPENBLAS_CORETYPE",
    "ATEN_CPU_CAPABILITY",
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
)


@memoized("platform info", maxsize=1)
def platform_info() -> dict[str, Any]:
    """What makes a cell's numbers platform-dependent, computed once per process: Python,
    torch (version, build configuration with its BLAS/LAPACK, CPU capability), numpy (version,
    build configuration with its BLAS/LAPACK and SIMD extensions), the CPU model, and the
    environment variables in PLATFORM_ENV. Part of every cache key, so a warm cache never
    hides a drift that another torch, BLAS or CPU would show."""
    info: dict[str, Any] = {
        "python": [sys.implementation.name, list(sys.version_info[:3]), sys.version],
        "machine": [platform.system(), platform.machine()],
        "cpu": _cpu_model(),
        "env": {name: os.environ.get(name) for name in PLATFORM_ENV},
        "numpy": _numpy_info(),
        "torch": _torch_info(),
    }
    return json.loads(json.dumps(info, sort_keys=True, default=str))


def platform_fingerprint() -> str:
    """sha256 of `platform_info()`."""
    return hashlib.sha256(json.dumps(platform_info(), sort_keys=True).encode()).hexdigest()


def _numpy_info() -> dict[str, Any]:
    info: dict[str, Any] = {"version": np.__version__}
    try:
        config = np.show_config(mode="dicts")
    except TypeError:  # numpy < 1.26
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            np.show_config()
        config = buffer.getvalue()
    info["config"] = config
    info["threadpools"] = _threadpools([Path(np.__file__).resolve().parent])
    return info


def _torch_info() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"version": None}
    return {
        "version": torch.__version__,
        "config": torch.__config__.show(),  # compilers, MKL / oneDNN versions, BLAS_INFO, ...
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "threadpools": _threadpools([Path(torch.__file__).resolve().parent]),
    }


def _threadpools(packages: list[Path]) -> list[dict[str, Any]] | None:
    """The BLAS / OpenMP libraries threadpoolctl sees (if installed) that ship with the given
    packages: which ones are loaded elsewhere depends on what the process imported, so only
    these count. Thread counts and file paths are left out (they are not the code path)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    roots = [str(p) for p in packages] + [f"{p}.libs" for p in packages]
    fields = ("user_api", "internal_api", "version", "architecture", "threading_layer")
    return sorted(
        (
            {k: lib.get(k) for k in fields}
            for lib in threadpool_info()
            if any(str(lib.get("filepath", "")).startswith(r) for r in roots)
        ),
        key=lambda lib: json.dumps(lib, sort_keys=True, default=str),
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# ----------------------------------------------------------------------- code fingerprint
def code_fingerprint(fn: Callable[..., Any]) -> str:
    """sha256 over the source of `fn` and of every project module it can reach.

    "Reach" is read statically from the source, so it is the same in every process whatever
    else was imported: the module file that defines `fn` (wherever it lives), then, transitively,
    every project module named by an `import` / `from ... import` statement anywhere in a
    reached file (function bodies included; relative imports resolved; importing `a.b.c`
    reaches the packages `a` and `a.b` too). Project modules are files under the repository
    root (outside `.venv`) or under the import root of `fn`'s own module. Files are hashed by
    content and named by module, not by absolute path, so another checkout gives the same
    fingerprint. Dynamic imports (importlib) are not seen. A function defined in a notebook (no
    module file) contributes its own source text.
    """
    target, bound = _unwrap(fn)
    digest = hashlib.sha256()
    digest.update(json.dumps(bound, sort_keys=True, default=_stable_repr).encode())
    try:
        digest.update(inspect.getsource(target).encode())
    except (OSError, TypeError):
        digest.update(getattr(target, "__qualname__", repr(target)).encode())
    entries = sorted((name, _file_hash(path)) for path, name in _reachable_modules(target).items())
    for name, file_hash in entries:
        digest.update(f"{name}\0{file_hash}\n".encode())
    return digest.hexdigest()


def _unwrap(fn: Callable[..., Any]) -> tuple[Callable[..., Any], Any]:
    """The underlying function and the arguments a functools.partial binds (part of the key)."""
    bound: list[Any] = []
    while isinstance(fn, functools.partial):
        bound.append([list(fn.args), dict(fn.keywords)])
        fn = fn.func
    return inspect.unwrap(fn), bound


def _stable_repr(value: Any) -> str:
    """A bound argument's text for the key, without memory addresses for functions/classes."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return repr(value)


def _reachable_files(fn: Callable[..., Any]) -> set[Path]:
    """The files `code_fingerprint` hashes for `fn`."""
    return set(_reachable_modules(_unwrap(fn)[0]))


def _reachable_modules(fn: Callable[..., Any]) -> dict[Path, str]:
    """File -> module name of every project module `fn` reaches (see code_fingerprint)."""
    own = _module_info(inspect.getmodule(fn if _is_code(fn) else type(fn)))
    if own is not None and not _is_project_file(own[1]):
        return {own[1]: own[0]}  # fn lives in an installed package: its own file only
    # a function without a module file (defined in a notebook): start from the project
    # modules its code names
    seeds = [own] if own is not None else _referenced_modules(fn)
    roots = list(dict.fromkeys([*(root for _, _, root in seeds), REPO_ROOT]))
    found: dict[Path, str] = {}
    pending = list(seeds)
    while pending:
        name, path, root = pending.pop()
        if path in found:
            continue
        found[path] = name
        parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for level, module, names in _imports(path, *_stat(path)):
            if level:  # relative: `from ..module import names` inside package `parts`
                if level - 1 >= len(parts):
                    continue  # beyond the top-level package: an error at import time
                base = parts[: len(parts) - (level - 1)]
                dotted = ".".join([*base, module] if module else base)
                pending.extend(_resolve(dotted, names, [root]))
            else:
                pending.extend(_resolve(module, names, roots))
    return found


def _is_code(value: Any) -> bool:
    return inspect.isfunction(value) or inspect.isclass(value) or inspect.ismethod(value)


def _module_info(module: Any) -> tuple[str, Path, Path] | None:
    """(dotted name, file, import root) of a module with a .py file, else None."""
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return None
    path = Path(file).resolve()
    spec = getattr(module, "__spec__", None)
    name = getattr(spec, "name", None) or module.__name__
    parts = name.split(".")
    if path.name == "__init__.py":
        depth, expected = len(parts), Path(*parts, "__init__.py")
    else:
        depth, expected = len(parts) - 1, Path(*parts[:-1], parts[-1] + ".py")
    root = path.parents[depth] if depth < len(path.parents) else path.parent
    if name == "__main__" or root / expected != path:
        name, root = path.stem, path.parent  # a script, or run as __main__: named by its file
    return name, path, root


def _referenced_modules(fn: Callable[..., Any]) -> list[tuple[str, Path, Path]]:
    """The project modules that the globals named in `fn`'s code are, or are defined in."""
    namespace = getattr(fn, "__globals__", None) or {}
    code = getattr(fn, "__code__", None)
    names: set[str] = set()
    stack = [code] if code is not None else []
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack.extend(c for c in current.co_consts if inspect.iscode(c))
    seeds = []
    for name in sorted(names):
        value = namespace.get(name)
        if not isinstance(value, ModuleType):
            value = (
                sys.modules.get(getattr(value, "__module__", None) or "")
                if _is_code(value)
                else None
            )
        info = _module_info(value)
        if info is not None and _is_project_file(info[1]):
            seeds.append(info)
    return seeds


def _resolve(
    dotted: str, names: tuple[str, ...], roots: list[Path]
) -> list[tuple[str, Path, Path]]:
    """The project files that `from dotted import names` (or `import dotted`) executes: each
    package on the way, the module itself, and each imported name that is a submodule."""
    parts = dotted.split(".") if dotted else []
    if not parts:
        return []
    for root in roots:
        if _module_file(root, parts[:1]) is None and not os.path.isdir(
            os.path.join(root, parts[0])
        ):
            continue  # not under this root (a namespace package is a bare directory)
        files = []
        for depth in range(1, len(parts) + 1):
            file = _module_file(root, parts[:depth])
            if file is not None:
                files.append((".".join(parts[:depth]), file, root))
        for item in names:
            file = _module_file(root, [*parts, item])
            if file is not None:
                files.append((".".join([*parts, item]), file, root))
        return [f for f in files if _is_project_file(f[1])]
    return []


def _module_file(root: Path, parts: list[str]) -> Path | None:
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    base = os.path.join(root, *parts)
    for candidate in (os.path.join(base, "__init__.py"), base + ".py"):
        if os.path.isfile(candidate):
            return Path(candidate)
    return None


def _is_project_file(path: Path) -> bool:
    """Not in the repository's `.venv`, nor in the interpreter's stdlib or site-packages."""
    return _is_project_file_under(path, REPO_ROOT)


@memoized("project files", maxsize=4096)
def _is_project_file_under(path: Path, repo_root: Path) -> bool:
    if path.is_relative_to(repo_root) and ".venv" in path.relative_to(repo_root).parts:
        return False
    return not any(path.is_relative_to(p) for p in _installed_dirs())


@memoized("installed dirs", maxsize=1)
def _installed_dirs() -> tuple[Path, ...]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = sysconfig.get_paths()
    return tuple({Path(paths[n]).resolve() for n in names if n in paths})


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@memoized("file imports", maxsize=1024)
def _imports(path: Path, mtime_ns: int, size: int) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """(level, module, names) of every import statement in the file (an unparsable file: none,
    its bytes still count in the fingerprint)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return ()
    found: list[tuple[int, str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names if a.name != "*")
            found.append((node.level, node.module or "", names))
    return tuple(found)


@memoized("file hashes", maxsize=1024)
def _file_hash_at(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_hash(path: Path) -> str:
    return _file_hash_at(path, *_stat(path))


__all__ = [
    "CacheFormatError",
    "cache_dir",
    "cache_path",
    "cell_key",
    "clear_memory_cache",
    "code_fingerprint",
    "decode_frame",
    "encode_frame",
    "grid",
    "platform_fingerprint",
    "platform_info",
    "run_sweep",
]
