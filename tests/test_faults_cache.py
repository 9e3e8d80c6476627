"""The sweep cache against faults: files it must not trust, writes that fail, keys that must
follow the platform and only the code a sweep function can reach (issue 11, parts 1 and 4)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import scratch

from workbench import sweep
from workbench.sweep import grid, run_sweep

CALLS: list[dict] = []


def rows(x):
    CALLS.append({"x": x})
    return [
        {"y": x * x + 0.1, "k": k, "ok": k == 0, "curve": np.arange(3) / (x + 7)} for k in (0, 1)
    ]


def mixed(x):
    """A frame with every column kind the format holds, and the values that break formats."""
    CALLS.append({"x": x})
    return pd.DataFrame(
        {
            "f64": [0.1, np.nan, np.inf, -np.inf, -0.0, 5e-324],
            "f32": np.array([1 / 3, np.nan, 3e38, -1e-45, 0.0, np.inf], dtype=np.float32),
            "i64": [1, -(2**63), 2**63 - 1, 0, 5, x],
            "u64": np.array([0, 2**64 - 1, 1, 2, 3, 4], dtype=np.uint64),
            "i8": np.array([-128, 127, 0, 1, 2, 3], dtype=np.int8),
            "flag": [True, False, True, False, True, False],
            "label": ["a", None, 'é\n"', "", "x", "0.1"],
            "text": pd.array(["a", None, "b", "c", "d", "e"], dtype="string"),
            "curve": [
                np.arange(4, dtype=np.float32) / 7,
                np.array([np.nan, np.inf, -0.0]),
                np.zeros((2, 0)),
                np.array([[1, 2], [3, 4]], dtype=np.int16),
                np.array([True, False]),
                None,
            ],
            "misc": [np.float64(0.1), np.int64(3), np.bool_(True), [1, 2.5], (1, "a"), {"k": 0.5}],
        }
    )


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    CALLS.clear()
    with scratch.sweep_cache(tmp_path / "cache", monkeypatch):
        yield


def key_of(fn, cell, name):
    return sweep.cell_key(name, cell, sweep.code_fingerprint(fn))


def assert_exactly_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """assert_frame_equal(check_exact) plus what it lets pass: the sign of zero, float bits,
    and the dtype, shape, type and bits of every value of an object column."""
    pdt.assert_frame_equal(a, b, check_exact=True)
    for column in a.columns:
        if a[column].dtype.kind == "f":
            left, right = a[column].to_numpy(), b[column].to_numpy()
            assert np.array_equal(np.isnan(left), np.isnan(right))
            finite = ~np.isnan(left)
            assert np.array_equal(
                left[finite].view(f"u{left.itemsize}"), right[finite].view(f"u{right.itemsize}")
            )
        if a[column].dtype == object:
            for x, y in zip(a[column], b[column], strict=True):
                assert type(x) is type(y), (column, x, y)
                if isinstance(x, np.ndarray):
                    assert x.dtype == y.dtype and x.shape == y.shape
                    assert x.tobytes() == y.tobytes()


# ------------------------------------------------------------------------------ round trip
def test_the_frame_read_back_from_disk_is_exactly_the_frame_stored():
    cells = grid(x=[2])
    first = run_sweep(mixed, cells, name="exact", progress=False)
    sweep.clear_memory_cache()
    second = run_sweep(mixed, cells, name="exact", progress=False)
    assert len(CALLS) == 1  # from disk
    assert_exactly_equal(first, second)
    stored = mixed(2)
    read = sweep._read(
        sweep.cache_path(key_of(mixed, cells[0], "exact")), key_of(mixed, cells[0], "exact")
    )
    assert_exactly_equal(stored, read)


def test_the_cache_file_is_strict_json_of_the_documented_format():
    cells = grid(x=[3])
    run_sweep(mixed, cells, name="format", progress=False)
    key = key_of(mixed, cells[0], "format")
    path = sweep.cache_path(key)
    assert path.suffix == ".json"
    document = json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(token))
    assert document["format"] == sweep.FORMAT and document["version"] == sweep.FORMAT_VERSION
    assert document["key"] == key and document["cell"] == {"x": 3} and document["n_rows"] == 6
    assert [c["dtype"] for c in document["columns"]][:6] == [
        "float64", "float32", "int64", "uint64", "int8", "bool"
    ]  # fmt: skip
    assert document["columns"][0]["values"][:4] == [0.1, "nan", "inf", "-inf"]


def test_the_frames_of_the_real_sweeps_round_trip_exactly():
    from workbench.optim.race import sweep_cell as race_cell
    from workbench.scaling.sweeps import sweep_cell as scaling_cell

    race = pd.DataFrame(
        race_cell("quadratic", "adam", 5, kappa=10.0, rotated=True, lr_log2_min=-2, lr_log2_max=8)
    )
    scaling = pd.DataFrame(
        scaling_cell(
            parametrization="mup", optimizer="adam", task="markov", model="mlp", alpha=None,
            lr_correction=True, steps=4, batch_size=4, width=8, depth=2, lrs=[0.01, 1e3],
            seeds=[0, 1], base_width=8, dtype="float32", torch_version="x",
        )
    )  # fmt: skip
    assert race["losses"].map(type).eq(np.ndarray).all()
    assert scaling["curve"].map(lambda c: c.dtype == np.float32).all()
    for frame in (race, scaling):
        document = json.loads(json.dumps(sweep.encode_frame(frame, key="k"), allow_nan=False))
        assert_exactly_equal(frame, sweep.decode_frame(document, key="k"))


def test_a_frame_the_format_cannot_hold_stays_in_memory_only(tmp_path):
    def dated(x):
        CALLS.append(x)
        return pd.DataFrame({"when": pd.to_datetime(["2024-01-01"])})

    with pytest.warns(UserWarning, match="memory only"):
        run_sweep(dated, grid(x=[1]), name="dated", progress=False)
    run_sweep(dated, grid(x=[1]), name="dated", progress=False)
    assert len(CALLS) == 1  # memory hit
    assert not list((tmp_path / "cache").glob("*"))


# ---------------------------------------------------------------------- files not trusted
def _valid_document(key):
    return sweep.encode_frame(pd.DataFrame(rows(4)), key=key, name="bad", cell={"x": 4})


def _corruptions():
    def edit(change):
        def make(key):
            document = _valid_document(key)
            change(document)
            return json.dumps(document)

        return make

    def column(i, field, value):
        return edit(lambda d: d["columns"][i].__setitem__(field, value))

    return {
        "truncated": lambda key: json.dumps(_valid_document(key))[:-40],
        "empty": lambda key: "",
        "binary": lambda key: b"\x80\x04\x95\xff\xfe garbage",
        "not an object": lambda key: "[1, 2, 3]",
        "wrong format": edit(lambda d: d.__setitem__("format", "something.else")),
        "wrong version": edit(lambda d: d.__setitem__("version", 99)),
        "another key": edit(lambda d: d.__setitem__("key", "0" * 64)),
        "no key": edit(lambda d: d.pop("key")),
        "short column": column(0, "values", [16.1]),
        "n_rows lies": edit(lambda d: d.__setitem__("n_rows", 3)),
        "negative n_rows": edit(lambda d: d.__setitem__("n_rows", -2)),
        "dtype not allowed": column(0, "dtype", "datetime64[ns]"),
        "dtype a class path": column(3, "dtype", "pickle.loads"),
        "string in a float column": column(0, "values", ["16.1", 16.1]),
        "bool in an int column": column(1, "values", [True, False]),
        "int out of range": column(1, "values", [2**64, 0]),
        "float in a bool column": column(2, "values", [1.0, 0.0]),
        "untagged object value": column(3, "values", [[1, 2], [3]]),
        "unknown tag": column(3, "values", [{"pickle": "gASV"}, None]),
        "array data short": column(
            3, "values", [{"ndarray": {"dtype": "float64", "shape": [3], "data": [1.0]}}, None]
        ),
        "array dtype not allowed": column(
            3, "values", [{"ndarray": {"dtype": "object", "shape": [1], "data": [1]}}, None]
        ),
        "repeated column": edit(lambda d: d["columns"].append(dict(d["columns"][0]))),
        "extra column field": column(0, "python", "__import__('os')"),
        "NaN token": lambda key: json.dumps(_valid_document(key)).replace('"nan"', "NaN")
        .replace("16.1", "NaN"),
    }  # fmt: skip


@pytest.mark.parametrize("corruption", list(_corruptions()))
def test_an_invalid_cache_file_is_recomputed_and_overwritten(corruption):
    cells = grid(x=[4])
    key = key_of(rows, cells[0], "bad")
    path = sweep.cache_path(key)
    path.parent.mkdir(parents=True)
    content = _corruptions()[corruption](key)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    assert sweep._read(path, key) is None  # refused
    CALLS.clear()
    df = run_sweep(rows, cells, name="bad", progress=False)
    assert len(CALLS) == 1  # recomputed
    assert df["y"].tolist() == [16.1, 16.1]
    fresh = sweep._read(path, key)  # and overwritten with a valid file
    assert fresh is not None
    assert_exactly_equal(fresh, pd.DataFrame(rows(4)))
    sweep.clear_memory_cache()
    CALLS.clear()
    run_sweep(rows, cells, name="bad", progress=False)
    assert CALLS == []


def test_an_unreadable_cache_file_is_recomputed(monkeypatch):
    cells = grid(x=[5])
    run_sweep(rows, cells, name="unreadable", progress=False)
    sweep.clear_memory_cache()
    path = sweep.cache_path(key_of(rows, cells[0], "unreadable"))
    real = Path.read_text

    def failing(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", failing)
    df = run_sweep(rows, cells, name="unreadable", progress=False)
    assert len(CALLS) == 2 and df["y"].tolist() == [25.1, 25.1]


class _Marker:
    """Unpickling this creates `path` (as os.mkdir): proof that a loader ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_planted_pickle_is_never_executed(tmp_path):
    proof = tmp_path / "payload-works"
    pickle.loads(pickle.dumps(_Marker(proof)))
    assert proof.is_dir()  # the payload is live: loading it runs code

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Marker(marker))
    cells = grid(x=[6])
    key = key_of(rows, cells[0], "planted")
    directory = sweep.cache_dir()
    directory.mkdir(parents=True)
    (directory / f"{key}.pkl").write_bytes(payload)  # where the pickle cache kept this cell
    (directory / f"{key}.json").write_bytes(payload)  # and in place of the JSON file
    df = run_sweep(rows, cells, name="planted", progress=False)
    assert not marker.exists()
    assert len(CALLS) == 1 and df["y"].tolist() == [36.1, 36.1]
    assert sweep._read(directory / f"{key}.json", key) is not None  # overwritten with data


def test_the_module_imports_no_code_loader():
    source = Path(sweep.__file__).read_text()
    for loader in ("import pickle", "pickle.load", "joblib", "dill", "marshal", "eval(", "exec("):
        assert loader not in source


# ------------------------------------------------------------------------- failed writes
def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_a_write_that_fails_midway_leaves_no_temporary_file(monkeypatch):
    real_dump = json.dump

    def dump_half_then_fail(obj, stream, **kwargs):
        stream.write(json.dumps(obj)[:50])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_half_then_fail)
    with pytest.warns(UserWarning, match="could not store"):
        df = run_sweep(rows, grid(x=[7]), name="full-disk", progress=False)
    assert df["y"].tolist() == [49.1, 49.1]  # the results survive
    assert _leftovers(sweep.cache_dir()) == []

    monkeypatch.setattr(json, "dump", real_dump)
    sweep.clear_memory_cache()
    run_sweep(rows, grid(x=[7]), name="full-disk", progress=False)
    assert len(CALLS) == 2  # nothing was cached: computed again, now stored
    assert _leftovers(sweep.cache_dir()) == [
        sweep.cache_path(key_of(rows, {"x": 7}, "full-disk")).name
    ]


def test_an_unexpected_error_while_writing_leaves_no_temporary_file(monkeypatch):
    def boom(obj, stream, **kwargs):
        stream.write("{")
        raise RuntimeError("boom")

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_sweep(rows, grid(x=[8]), name="boom", progress=False)
    assert _leftovers(sweep.cache_dir()) == []


def test_a_failed_rename_leaves_no_temporary_file_and_keeps_the_old_file(monkeypatch):
    cells = grid(x=[9])
    key = key_of(rows, cells[0], "rename")
    path = sweep.cache_dir() / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not valid")  # an old, invalid file: the sweep will try to overwrite it

    def failing_replace(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", failing_replace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = run_sweep(rows, cells, name="rename", progress=False)
    assert df["y"].tolist() == [81.1, 81.1]
    assert _leftovers(path.parent) == [path.name]
    assert path.read_text() == "{not valid"


# ----------------------------------------------------------------------------- the key
def test_the_key_holds_the_platform(monkeypatch):
    info = sweep.platform_info()
    assert info["torch"]["version"] and info["torch"]["cpu_capability"]
    assert "BLAS_INFO" in info["torch"]["config"] and "LAPACK" in info["torch"]["config"]
    assert info["numpy"]["version"] == np.__version__ and info["numpy"]["config"]
    assert info["python"][1] == list(sys.version_info[:3])
    assert {"MKL_CBWR", "OPENBLAS_CORETYPE"} <= set(info["env"])
    assert sweep.platform_info() is info  # computed once per process

    cells = grid(x=[10])
    code = sweep.code_fingerprint(rows)
    before = sweep.cell_key("platform", cells[0], code)
    run_sweep(rows, cells, name="platform", progress=False)
    other = {**info, "torch": {**info["torch"], "config": "BLAS_INFO=open, LAPACK_INFO=open"}}
    monkeypatch.setattr(sweep, "platform_info", lambda: other)
    assert sweep.cell_key("platform", cells[0], code) != before
    run_sweep(rows, cells, name="platform", progress=False)
    assert len(CALLS) == 2  # another BLAS: computed again, not served from the cache


@pytest.mark.parametrize("variable", ["MKL_CBWR", "OPENBLAS_CORETYPE"])
def test_blas_code_path_settings_change_the_platform_fingerprint(monkeypatch, variable):
    sweep.platform_info.memo.clear()
    monkeypatch.delenv(variable, raising=False)
    before = sweep.platform_fingerprint()
    sweep.platform_info.memo.clear()
    monkeypatch.setenv(variable, "COMPATIBLE" if variable == "MKL_CBWR" else "Haswell")
    try:
        assert sweep.platform_fingerprint() != before
    finally:
        sweep.platform_info.memo.clear()


# ---------------------------------------------------------------------- code fingerprint
_FINGERPRINT = """
import importlib, json, pkgutil, sys
if sys.argv[1] == "everything":
    import widgets, workbench
    for package in (workbench, widgets):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    import widgets.app
from workbench import sweep
from workbench.optim.race import sweep_cell as race
from workbench.scaling.sweeps import sweep_cell as scaling
import workbench.scaling.studies
print(json.dumps({
    name: [sweep.code_fingerprint(fn), sorted(str(p) for p in sweep._reachable_files(fn))]
    for name, fn in (("race", race), ("scaling", scaling))
}))
"""


def _fingerprints_in_a_subprocess(mode: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _FINGERPRINT, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=sweep.REPO_ROOT,
        timeout=300,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_fingerprint_does_not_depend_on_what_else_the_process_imported():
    fresh = _fingerprints_in_a_subprocess("fresh")
    loaded = _fingerprints_in_a_subprocess("everything")
    assert loaded == fresh
    for _, files in fresh.values():
        names = {Path(f).relative_to(sweep.REPO_ROOT).as_posix() for f in files}
        assert "workbench/sweep.py" in names
        assert not any(n.startswith("widgets/") for n in names)
    scaling = {Path(f).name for f in fresh["scaling"][1]}
    assert {"sweeps.py", "training.py", "models.py", "tasks.py"} <= scaling
    from workbench.scaling.sweeps import sweep_cell

    assert sweep.code_fingerprint(sweep_cell) == fresh["scaling"][0]  # and in this process


def _package(root: Path) -> Path:
    package = root / "fppkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cell.py").write_text(
        textwrap.dedent(
            """
            import fppkg.helper

            def f(x):
                from .lazy import scale  # an import in the body: reachable too

                return [{"y": fppkg.helper.offset(x) * scale}]
            """
        )
    )
    (package / "helper.py").write_text("def offset(x):\n    return x + 1\n")
    (package / "lazy.py").write_text("scale = 2\n")
    (package / "unrelated.py").write_text("import fppkg\nvalue = 3\n")
    return package


@pytest.fixture
def fppkg(tmp_path, monkeypatch):
    """A project package `fppkg` (the project root is pointed at tmp_path)."""
    root = tmp_path / "project"
    package = _package(root)
    monkeypatch.setattr(sweep, "REPO_ROOT", root)
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m == "fppkg" or m.startswith("fppkg.")]:
        monkeypatch.delitem(sys.modules, name)
    import fppkg.cell

    yield package, fppkg.cell.f
    for name in [m for m in sys.modules if m == "fppkg" or m.startswith("fppkg.")]:
        del sys.modules[name]


def test_editing_a_reachable_file_changes_the_fingerprint_and_an_unreachable_one_does_not(
    fppkg,
):
    package, f = fppkg
    before = sweep.code_fingerprint(f)
    import fppkg.unrelated  # now an attribute of the package that f's module imports

    assert sweep.code_fingerprint(f) == before  # what else was imported does not count
    files = {p.name for p in sweep._reachable_files(f)}
    assert files == {"__init__.py", "cell.py", "helper.py", "lazy.py"}
    with (package / "unrelated.py").open("a") as handle:
        handle.write("value = 4  # edited\n")
    assert sweep.code_fingerprint(f) == before

    for name in ("helper.py", "lazy.py"):
        with (package / name).open("a") as handle:
            handle.write("# edited\n")
        after = sweep.code_fingerprint(f)
        assert after != before, name
        before = after


def test_the_fingerprint_names_files_by_module_not_by_where_the_checkout_lives(
    fppkg, tmp_path, monkeypatch
):
    _, f = fppkg
    here = sweep.code_fingerprint(f)
    elsewhere = tmp_path / "another-checkout"
    _package(elsewhere)
    for name in [m for m in sys.modules if m == "fppkg" or m.startswith("fppkg.")]:
        del sys.modules[name]
    monkeypatch.setattr(sweep, "REPO_ROOT", elsewhere)
    monkeypatch.syspath_prepend(str(elsewhere))
    import fppkg.cell

    assert Path(fppkg.cell.__file__).is_relative_to(elsewhere)
    assert sweep.code_fingerprint(fppkg.cell.f) == here


def test_a_notebook_function_reaches_the_project_modules_its_code_names():
    namespace = {"__name__": "a_notebook_without_a_module"}
    exec(  # a cell of a notebook: the function has no module file
        textwrap.dedent(
            """
            from workbench.scaling import sweeps as S
            from workbench.optim.race import train

            def cell(x):
                return S.fit_optimum, train
            """
        ),
        namespace,
    )
    files = {
        p.relative_to(sweep.REPO_ROOT).as_posix() for p in sweep._reachable_files(namespace["cell"])
    }
    assert {"workbench/scaling/sweeps.py", "workbench/optim/race.py", "workbench/sweep.py"} <= files


def test_the_old_pickle_cache_and_stale_temporary_files_are_deleted_unread(tmp_path, monkeypatch):
    directory = tmp_path / "old-cache"
    directory.mkdir()
    monkeypatch.setenv(sweep.CACHE_ENV, str(directory))
    legacy = directory / f"{'a' * 64}.pkl"
    legacy.write_bytes(pickle.dumps(_Marker(tmp_path / "pwned")))
    stale, fresh = directory / ".abc.1.tmp", directory / ".abc.2.tmp"
    stale.write_text("{")
    fresh.write_text("{")
    os.utime(stale, (0, 0))
    other = directory / "notes.txt"
    other.write_text("kept")
    run_sweep(rows, grid(x=[11]), name="tidy", progress=False)
    assert not (tmp_path / "pwned").exists()
    assert not legacy.exists() and not stale.exists()
    assert fresh.exists() and other.exists()  # maybe another process's write under way
