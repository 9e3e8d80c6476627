"""Metrics a notebook reports.

A notebook calls `record(name, value)` for every number it claims. Interactively the values
are kept in memory (and `recorded()` shows them); under the runner, which sets
`WORKBENCH_METRICS_FILE` in the kernel's environment, every call also rewrites that JSON
file, so the runner sees whatever was recorded even if a later cell fails.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

METRICS_FILE_ENV = "WORKBENCH_METRICS_FILE"

# Tolerances used when a notebook does not say how much a metric may move between runs.
# Runs are seeded, so the default only absorbs floating-point differences between machines.
DEFAULT_ATOL = 1e-12
DEFAULT_RTOL = 1e-6

_recorded: dict[str, dict[str, Any]] = {}


def record(name: str, value: Any, *, atol: float | None = None, rtol: float | None = None) -> Any:
    """Report a metric; returns the (plain Python) value so it can be used inline.

    Args:
        name: a stable identifier (letters, digits, `_`, `.`, `-`), e.g. "score_max_abs_error".
        value: a real number, bool or short string. NaN and infinity are refused: a metric
            that is not a number is a bug to surface, not a value to compare.
        atol, rtol: how far a rerun may drift before the regression check fails:
            |actual - expected| <= atol + rtol * |expected|.
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_.-" for c in name):
        raise ValueError(f"metric name must be a non-empty identifier, got {name!r}")
    plain = _plain_value(name, value)
    if atol is not None and not (math.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol for {name!r} must be finite and >= 0, got {atol}")
    if rtol is not None and not (math.isfinite(rtol) and rtol >= 0):
        raise ValueError(f"rtol for {name!r} must be finite and >= 0, got {rtol}")
    entry: dict[str, Any] = {"value": plain}
    if isinstance(plain, (int, float)) and not isinstance(plain, bool):
        entry["atol"] = DEFAULT_ATOL if atol is None else float(atol)
        entry["rtol"] = DEFAULT_RTOL if rtol is None else float(rtol)
    _recorded[name] = entry
    _write_if_running()
    return plain


def record_table(
    prefix: str,
    table: Any,
    *,
    columns: Sequence[str] | None = None,
    tolerances: Mapping[str, Mapping[str, float]] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    missing: str | None = None,
) -> dict[str, Any]:
    """Record every cell of a table in one call, as `prefix.<row id>.<column id>`.

    `table` is a pandas DataFrame (rows by its index) or a mapping row -> mapping column ->
    value. Row and column ids are used as given (ids, not display labels: a space or other
    character a metric name cannot hold is refused by `record`). `columns` picks and orders
    the columns (default: all); `tolerances` maps a column to its {"atol": .., "rtol": ..},
    else `atol`/`rtol` apply. `missing` is recorded in place of a NaN or None cell (e.g.
    "diverged" or "not reached"); without it such a cell is refused like any NaN.
    Returns {metric name: recorded value}.
    """
    rows = _table_rows(table)
    out: dict[str, Any] = {}
    for row_id, row in rows.items():
        for column in columns if columns is not None else list(row):
            value = row[column]
            if missing is not None and _is_missing(value):
                value = missing
            limits = dict((tolerances or {}).get(column, {"atol": atol, "rtol": rtol}))
            name = f"{prefix}.{row_id}.{column}"
            out[name] = record(name, value, atol=limits.get("atol"), rtol=limits.get("rtol"))
    return out


def _table_rows(table: Any) -> dict[Any, Mapping[str, Any]]:
    if hasattr(table, "iterrows") and hasattr(table, "columns"):  # a pandas DataFrame
        by_column = {column: table[column].tolist() for column in table.columns}  # keeps dtypes
        return {
            index: {column: values[i] for column, values in by_column.items()}
            for i, index in enumerate(table.index)
        }
    if isinstance(table, Mapping):
        return {key: dict(row) for key, row in table.items()}
    kind = type(table).__name__
    raise TypeError(f"record_table takes a DataFrame or a mapping of rows, got {kind}")


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, numpy or Python
    except (TypeError, ValueError):
        return False


def recorded() -> dict[str, Any]:
    """The metrics recorded so far in this process, name -> value."""
    return {name: entry["value"] for name, entry in _recorded.items()}


def recorded_entries() -> dict[str, dict[str, Any]]:
    """The metrics with their tolerances, as the runner stores them."""
    return {name: dict(entry) for name, entry in _recorded.items()}


def clear() -> None:
    _recorded.clear()
    _write_if_running()


def _plain_value(name: str, value: Any) -> bool | int | float | str:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, bool | str):
        if isinstance(value, str) and len(value) > 200:
            raise ValueError(f"metric {name!r}: strings are limited to 200 characters")
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {name!r} is {value}: refusing to record a non-finite value")
        return value
    raise TypeError(f"metric {name!r} must be a number, bool or string, got {type(value).__name__}")


def _write_if_running() -> None:
    path = os.environ.get(METRICS_FILE_ENV)
    if not path:
        return
    target = Path(path)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(_recorded, indent=2, sort_keys=False) + "\n")
    tmp.replace(target)
