"""workbench.sweep: grids, cell order, the cache and its invalidation, bad input."""

from __future__ import annotations

import functools
import importlib
import sys
import textwrap

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import scratch

from workbench import sweep
from workbench.sweep import grid, run_sweep

CALLS: list[dict] = []


def square_rows(x, offset=0.0):
    CALLS.append({"x": x, "offset": offset})
    return [{"y": x * x + offset, "k": k} for k in range(2)]


def square_frame(x):
    CALLS.append({"x": x})
    return pd.DataFrame({"y": [float(x) ** 2], "twice": [2 * x]})


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    CALLS.clear()
    with scratch.sweep_cache(tmp_path / "cache", monkeypatch):
        yield


# -------------------------------------------------------------------------------- grid
def test_grid_is_the_cartesian_product_last_axis_fastest():
    cells = grid(width=[32, 64], lr=[0.1, 0.2, 0.3], steps=100)
    assert cells == [
        {"width": w, "lr": lr, "steps": 100} for w in (32, 64) for lr in (0.1, 0.2, 0.3)
    ]
    assert list(cells[0]) == ["width", "lr", "steps"]


def test_grid_turns_numpy_scalars_into_python_numbers_and_strings_into_one_value():
    cells = grid(width=np.array([8, 16]), name="sp")
    assert cells == [{"width": 8, "name": "sp"}, {"width": 16, "name": "sp"}]
    assert all(type(c["width"]) is int for c in cells)


def test_grid_with_an_empty_axis_is_empty():
    assert grid(width=[], lr=[1.0]) == []


# --------------------------------------------------------------------------- run_sweep
def test_rows_are_concatenated_in_cell_order_with_cell_columns_first():
    cells = grid(x=[3, 1, 2], offset=[0.0, 0.5])
    df = run_sweep(square_rows, cells, name="order", progress=False)
    assert list(df.columns) == ["x", "offset", "y", "k"]
    assert len(df) == 2 * len(cells)
    expected_x = [c["x"] for c in cells for _ in range(2)]
    assert df["x"].tolist() == expected_x
    np.testing.assert_allclose(df["y"], df["x"] ** 2 + df["offset"], rtol=0, atol=0)
    assert df["k"].tolist() == [0, 1] * len(cells)
    assert [c["x"] for c in CALLS] == [c["x"] for c in cells]


def test_dataframe_results_are_accepted():
    df = run_sweep(square_frame, grid(x=[2, 5]), name="frames", progress=False)
    assert df.to_dict("list") == {"x": [2, 5], "y": [4.0, 25.0], "twice": [4, 10]}


def test_cache_hit_returns_an_identical_frame_without_calling_fn():
    cells = grid(x=[1, 2, 3], offset=[0.25])
    first = run_sweep(square_rows, cells, name="hit", progress=False)
    assert len(CALLS) == 3
    second = run_sweep(square_rows, cells, name="hit", progress=False)
    assert len(CALLS) == 3  # memory hit
    pdt.assert_frame_equal(first, second)

    sweep.clear_memory_cache()
    third = run_sweep(square_rows, cells, name="hit", progress=False)
    assert len(CALLS) == 3  # disk hit
    pdt.assert_frame_equal(first, third)


def test_cache_is_per_cell_and_per_name():
    run_sweep(square_rows, grid(x=[1, 2]), name="a", progress=False)
    run_sweep(square_rows, grid(x=[2, 3]), name="a", progress=False)
    assert [c["x"] for c in CALLS] == [1, 2, 3]  # x=2 reused
    run_sweep(square_rows, grid(x=[2]), name="b", progress=False)
    assert [c["x"] for c in CALLS] == [1, 2, 3, 2]  # another sweep name: recomputed


def test_cache_false_always_calls_and_stores_nothing(tmp_path):
    run_sweep(square_rows, grid(x=[1]), name="nocache", cache=False, progress=False)
    run_sweep(square_rows, grid(x=[1]), name="nocache", cache=False, progress=False)
    assert len(CALLS) == 2
    assert not (tmp_path / "cache").exists()


def test_mutating_a_returned_frame_does_not_poison_the_cache():
    df = run_sweep(square_rows, grid(x=[4]), name="mutate", progress=False)
    df.loc[:, "y"] = -1.0
    again = run_sweep(square_rows, grid(x=[4]), name="mutate", progress=False)
    assert again["y"].tolist() == [16.0, 16.0]


def test_partial_arguments_are_part_of_the_key():
    a = run_sweep(functools.partial(square_rows, offset=1.0), grid(x=[2]), name="p")
    b = run_sweep(functools.partial(square_rows, offset=2.0), grid(x=[2]), name="p")
    assert a["y"].tolist() == [5.0, 5.0] and b["y"].tolist() == [6.0, 6.0]
    assert len(CALLS) == 2


def test_a_code_change_invalidates_the_cache(tmp_path, monkeypatch):
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    source = module_dir / "sweep_target_mod.py"
    monkeypatch.syspath_prepend(str(module_dir))

    def load(body: str):
        source.write_text(textwrap.dedent(body))
        sys.modules.pop("sweep_target_mod", None)
        importlib.invalidate_caches()
        return importlib.import_module("sweep_target_mod")

    v1 = load(
        """
        CALLS = []
        def f(x):
            CALLS.append(x)
            return [{"y": x + 1}]
        """
    )
    assert run_sweep(v1.f, grid(x=[1]), name="code", progress=False)["y"].tolist() == [2]
    assert run_sweep(v1.f, grid(x=[1]), name="code", progress=False)["y"].tolist() == [2]
    assert v1.CALLS == [1]
    before = sweep.code_fingerprint(v1.f)

    v2 = load(
        """
        CALLS = []
        def f(x):
            CALLS.append(x)
            return [{"y": x + 100}]  # changed
        """
    )
    assert sweep.code_fingerprint(v2.f) != before
    assert run_sweep(v2.f, grid(x=[1]), name="code", progress=False)["y"].tolist() == [101]
    assert v2.CALLS == [1]


def test_fingerprint_follows_project_modules_the_function_reaches():
    from workbench import sweep as module

    files = module._reachable_files(test_fingerprint_follows_project_modules_the_function_reaches)
    names = {p.name for p in files}
    assert {"test_sweep.py", "sweep.py"} <= names
    assert not any(".venv" in p.parts for p in files)


def test_progress_bar_names_the_sweep(capsys):
    run_sweep(square_rows, grid(x=[1, 2]), name="visible-bar", progress=True)
    assert "visible-bar" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input
def test_non_serializable_cell_is_a_clear_error():
    with pytest.raises(ValueError, match=r"cell 1: parameter 'x' .*object.*JSON-serializable"):
        run_sweep(square_rows, [{"x": 1}, {"x": object()}], name="bad", progress=False)
    assert CALLS == []  # refused before any work


def test_cells_must_be_dicts_and_name_non_empty():
    with pytest.raises(ValueError, match="cell 0 must be a dict"):
        run_sweep(square_rows, [1], name="bad", progress=False)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        run_sweep(square_rows, [{"x": 1}], name="", progress=False)


def test_bad_results_are_refused():
    with pytest.raises(ValueError, match="DataFrame or a list of dicts"):
        run_sweep(lambda x: 3.0, [{"x": 1}], name="bad-result", progress=False)
    with pytest.raises(ValueError, match=r"repeat cell parameters"):
        run_sweep(lambda x: [{"x": x}], [{"x": 1}], name="clash", progress=False)


def test_empty_sweep_is_an_empty_frame():
    assert run_sweep(square_rows, [], name="empty", progress=False).empty


def test_a_corrupt_cache_file_is_recomputed():
    cells = grid(x=[7])
    run_sweep(square_rows, cells, name="corrupt", progress=False)
    key = sweep.cell_key("corrupt", cells[0], sweep.code_fingerprint(square_rows))
    sweep.cache_path(key).write_bytes(b"not a cache file")
    sweep.clear_memory_cache()
    df = run_sweep(square_rows, cells, name="corrupt", progress=False)
    assert df["y"].tolist() == [49, 49] and len(CALLS) == 2
