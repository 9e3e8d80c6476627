"""Run history: every notebook run, with its parameters, metrics, commit, runtime and memory,
in one SQLite file under runs/ (`runs/history.sqlite`), so a metric's trend across commits is
one query away (`python -m workbench history NOTEBOOK METRIC`).

SQLite is in the standard library, safe with several writers (a notebook grid on several
processes), and one file that survives `rm -rf runs/<stamp>`.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pandas as pd

FILENAME = "history.sqlite"
GIT_TIMEOUT_S = 10


class HistoryError(RuntimeError):
    """The history file cannot be read or written (not a SQLite database, locked, ...)."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    recorded_at TEXT NOT NULL,        -- ISO time the run finished
    run_dir TEXT NOT NULL,
    notebook TEXT NOT NULL,
    profile TEXT NOT NULL,            -- smoke / full / custom
    status TEXT NOT NULL,             -- ok / failed
    parameters TEXT NOT NULL,         -- JSON
    git_commit TEXT,                  -- NULL outside a git checkout
    git_dirty INTEGER,                -- 1 when the work tree had uncommitted changes
    runtime_s REAL NOT NULL,
    peak_memory_mb REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    result_id INTEGER NOT NULL REFERENCES results(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value NOT NULL,                   -- a number, or text for text metrics (no type affinity)
    PRIMARY KEY (result_id, name)
);
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics(name);
"""


def database(runs_dir: Path) -> Path:
    return Path(runs_dir) / FILENAME


def connect(path: Path) -> sqlite3.Connection:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=30)  # waits for a concurrent writer
        connection.execute("PRAGMA foreign_keys = ON")
        connection.executescript(SCHEMA)
    except (OSError, sqlite3.Error) as error:
        raise _unusable(path, error) from None
    return connection


def _unusable(path: Path, error: Exception) -> HistoryError:
    return HistoryError(
        f"{path} is not a usable run history ({error}); move it away to start a new one"
    )


def git_state(repo: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout at `repo`: (None, None) outside git, and a commit
    with dirty None when the work tree's state cannot be read in time.

    The dirty check compares tracked files as they are, without the clean filters
    (nbstripout): `git status` runs the filter on every notebook whose stat data the index
    does not trust (a fresh clone, a touched file), a Python start per notebook, which took
    longer than the timeout. Unfiltered, a notebook that carries outputs counts as a change.
    """
    commit = _git(repo, ["rev-parse", "--verify", "HEAD"])
    if not commit:
        return None, None
    filters = _git(repo, ["config", "--get-regexp", r"^filter\..*\.clean$"]) or ""
    overrides = []
    for line in filters.splitlines():
        overrides += ["-c", f"{line.split(maxsplit=1)[0]}=cat"]  # filter.NAME.clean=cat
    status = _git(
        repo,
        ["status", "--porcelain", "--untracked-files=no", "--ignore-submodules"],
        options=overrides,
    )
    return commit, None if status is None else bool(status.strip())


def _git(repo: Path, args: Sequence[str], options: Sequence[str] = ()) -> str | None:
    """A git command's output, or None when it fails, times out or git is missing."""
    try:
        return subprocess.run(
            ["git", "-C", str(repo), "--no-optional-locks", *options, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def record_results(
    path: Path,
    run_dir: Path,
    results: Sequence,  # runner.NotebookResult
    *,
    commit: str | None,
    dirty: bool | None,
    when: datetime | None = None,
) -> list[int]:
    """Append one row per notebook result (and its metrics); returns the new row ids."""
    stamp = (when or datetime.now()).isoformat(timespec="seconds")
    try:
        return _insert(path, run_dir, results, commit, dirty, stamp)
    except sqlite3.Error as error:
        raise _unusable(Path(path), error) from None


def _insert(path, run_dir, results, commit, dirty, stamp) -> list[int]:
    ids = []
    with closing(connect(path)) as connection, connection:
        for result in results:
            cursor = connection.execute(
                "INSERT INTO results (recorded_at, run_dir, notebook, profile, status, "
                "parameters, git_commit, git_dirty, runtime_s, peak_memory_mb) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    stamp,
                    str(run_dir),
                    result.notebook,
                    result.profile,
                    result.status,
                    json.dumps(result.parameters, sort_keys=True, default=str),
                    commit,
                    None if dirty is None else int(dirty),
                    float(result.runtime_s),
                    result.peak_memory_mb,
                ),
            )
            ids.append(cursor.lastrowid)
            connection.executemany(
                "INSERT INTO metrics (result_id, name, value) VALUES (?, ?, ?)",
                [(cursor.lastrowid, k, _storable(m["value"])) for k, m in result.metrics.items()],
            )
    return ids


def _storable(value):
    if isinstance(value, bool):
        return int(value)
    return value if isinstance(value, int | float | str) else json.dumps(value)


def runs(path: Path, notebook: str | None = None, profile: str | None = None) -> pd.DataFrame:
    """One row per recorded notebook run, oldest first."""
    query = "SELECT r.* FROM results r"
    where, args = _filters(notebook=notebook, profile=profile)
    frame = _read(path, f"{query}{where} ORDER BY id", args)
    if not frame.empty:
        frame["recorded_at"] = pd.to_datetime(frame["recorded_at"])
        frame["parameters"] = frame["parameters"].map(json.loads)
    return frame


def metric_names(path: Path, notebook: str | None = None) -> list[str]:
    where, args = _filters(notebook=notebook)
    frame = _read(
        path,
        f"SELECT DISTINCT m.name FROM metrics m JOIN results r ON r.id = m.result_id{where} "
        "ORDER BY m.name",
        args,
    )
    return frame["name"].tolist() if not frame.empty else []


def trend(
    path: Path,
    notebook: str,
    metric: str,
    profile: str | None = None,
) -> pd.DataFrame:
    """A metric's value run after run, oldest first. The pseudo-metrics `runtime_s` and
    `peak_memory_mb` give the run's own cost."""
    where, args = _filters(notebook=notebook, profile=profile)
    if metric in ("runtime_s", "peak_memory_mb"):
        query = (
            f"SELECT r.id, r.recorded_at, r.profile, r.git_commit, r.git_dirty, "
            f"r.{metric} AS value FROM results r{where} AND r.status = 'ok' ORDER BY r.id"
        )
    else:
        query = (
            "SELECT r.id, r.recorded_at, r.profile, r.git_commit, r.git_dirty, m.value "
            f"FROM results r JOIN metrics m ON m.result_id = r.id{where} AND m.name = ? "
            "ORDER BY r.id"
        )
        args = (*args, metric)
    frame = _read(path, query, args)
    if not frame.empty:
        frame["recorded_at"] = pd.to_datetime(frame["recorded_at"])
        frame["commit"] = frame["git_commit"].fillna("").str[:8] + frame["git_dirty"].map(
            {1: "+", 0: ""}
        ).fillna("")
    return frame


def _filters(**equal) -> tuple[str, tuple]:
    clauses = [(f"r.{k} = ?", v) for k, v in equal.items() if v]
    if not clauses:
        return " WHERE 1 = 1", ()
    return " WHERE " + " AND ".join(c for c, _ in clauses), tuple(v for _, v in clauses)


def _read(path: Path, query: str, args: tuple) -> pd.DataFrame:
    path = Path(path)
    # no history yet: the same query on an empty in-memory store, so the columns are there
    connection = connect(path) if path.exists() else _empty_store()
    with closing(connection):
        try:
            return pd.read_sql_query(query, connection, params=args)
        except (sqlite3.Error, pd.errors.DatabaseError) as error:
            raise _unusable(path, error) from None


def _empty_store() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    connection.executescript(SCHEMA)
    return connection
