"""Scratch notebooks for the runner's and the CLI's tests (a parameters cell, then code cells)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


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
