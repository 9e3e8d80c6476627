"""Scratch state for the tests: notebooks (a parameters cell, then code cells) and projects
for the runner's and the CLI's tests, and an empty sweep cache of the test's own."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from workbench import runner, sweep
from workbench.reporting import METRICS_FILE_ENV


def write_notebook(path: Path, *cells: str, parameters: str) -> None:
    notebook = new_notebook(
        cells=[
            new_markdown_cell(f"# {path.stem}\nA scratch notebook for the tests."),
            new_code_cell(parameters, metadata={"tags": ["parameters"]}),
            *(new_code_cell(source) for source in cells),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(notebook, path)


def project(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    notebooks: Mapping[str, Sequence[str]],
    *,
    parameters: str,
) -> runner.Project:
    """A scratch project in `root` (a pyproject.toml, notebooks/NAME.ipynb of each entry's
    cells) that WORKBENCH_ROOT points at, with no metrics file set."""
    (root / "notebooks").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'scratch'\n")
    for name, cells in notebooks.items():
        write_notebook(root / "notebooks" / f"{name}.ipynb", *cells, parameters=parameters)
    monkeypatch.setenv("WORKBENCH_ROOT", str(root))
    monkeypatch.delenv(METRICS_FILE_ENV, raising=False)
    return runner.Project(root)


@contextmanager
def sweep_cache(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sweep cache on disk in `folder`, and empty in memory before and after."""
    monkeypatch.setenv(sweep.CACHE_ENV, str(folder))
    sweep.clear_memory_cache()
    try:
        yield
    finally:
        sweep.clear_memory_cache()
