"""Every notebook: SMOKE run against its baselines, golden cells through nbval, and hygiene."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbstripout import strip_output

from workbench import regression, runner

PROJECT = runner.Project(Path(__file__).resolve().parents[1])
NOTEBOOKS = runner.discover(PROJECT.notebooks_dir)
IDS = [path.stem for path in NOTEBOOKS]


def committed(path: Path) -> nbformat.NotebookNode:
    """The notebook as git would commit it (the index, after the nbstripout filter)."""
    relative = path.relative_to(PROJECT.root).as_posix()
    shown = subprocess.run(
        ["git", "show", f":{relative}"], cwd=PROJECT.root, capture_output=True, text=True
    )
    text = shown.stdout if shown.returncode == 0 else path.read_text()
    return nbformat.reads(text, as_version=4)


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_tour.ipynb"]


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_smoke_run_reproduces_the_baseline(notebook, tmp_path):
    _, results = runner.run(
        [notebook], smoke=True, project=PROJECT, run_dir=tmp_path, progress=False, html=False
    )
    result = results[0]
    assert result.ok, result.error
    verdict = regression.check_notebook(
        PROJECT.baselines_dir, result.notebook, result.profile, result.metrics
    )
    assert verdict.ok, "\n".join(drift.describe() for drift in verdict.drifts)


GOLDEN = [p for p in NOTEBOOKS if runner.golden_cells(nbformat.read(p, as_version=4))]


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_cells_pass_nbval(notebook, tmp_path):
    """nbval re-executes the notebook (SMOKE) and compares the keep_output cells' outputs."""
    import papermill

    prepared = tmp_path / notebook.name
    papermill.execute_notebook(
        str(notebook),
        str(prepared),
        parameters={"SMOKE": True},
        prepare_only=True,
        kernel_name=runner.KERNEL_NAME,
    )
    prepared_nb = nbformat.read(prepared, as_version=4)
    for count, cell in enumerate(runner.golden_cells(prepared_nb), start=1):
        cell.metadata["tags"] = [*cell.metadata["tags"], "nbval-check-output"]
        cell.execution_count = count  # nbstripout drops counts; nbval skips cells without one
    nbformat.write(prepared_nb, prepared)
    env = {**os.environ, "WORKBENCH_ROOT": str(PROJECT.root)}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            str(prepared),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "--rootdir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_committed_notebook_is_stripped(notebook):
    """No outputs but keep_output cells, no execution counts, no widget state."""
    nb = committed(notebook)
    stripped = strip_output(copy.deepcopy(nb), keep_output=False, keep_count=False, keep_id=False)
    assert nb == stripped, f"{notebook.name} has outputs or metadata: run `nbstripout {notebook}`"
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_follows_the_conventions(notebook):
    nb = nbformat.read(notebook, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "title cell first"
    assert len(first.source.splitlines()) > 1, "a one-line summary follows the title"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged parameters"
    assignments = [n for n in ast.parse(tagged[0].source).body]
    assert all(isinstance(n, ast.AnnAssign) for n in assignments), "typed literals only"
    declared = runner.parameters(notebook)
    assert len(declared) == len(assignments), "papermill could not parse every parameter line"
    assert declared["SMOKE"].type == "bool" and declared["SMOKE"].default == "False"
    assert all(p.help for p in declared.values()), "every parameter has a help comment"
    last_code = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "record(" in last_code.source, "the last code cell records the metrics"
    for cell in runner.golden_cells(nb):
        assert cell.outputs, "keep_output cells carry their golden output"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_baselines_cover_both_profiles(notebook):
    path = regression.baseline_path(PROJECT.baselines_dir, notebook.stem)
    assert path.exists(), "no baseline: run the notebook and `workbench check --update-baselines`"
    profiles = json.loads(path.read_text())["profiles"]
    assert set(profiles) >= {"smoke", "full"}
    assert all(profiles[p] for p in ("smoke", "full")), "a baseline with no metrics checks nothing"


def test_readme_lists_every_notebook():
    readme = (PROJECT.root / "README.md").read_text()
    missing = [p.name for p in NOTEBOOKS if f"notebooks/{p.name}" not in readme]
    assert not missing, f"README does not list {missing}"
