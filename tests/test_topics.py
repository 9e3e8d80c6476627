"""The topic table (widgets/topics.py) against everything that lists topics.

Adding a topic is adding its own files plus one entry in TOPICS; these tests enforce the
checklist in the README's "Adding a topic" where a machine can: every notebook has exactly one
entry and every entry a notebook, baselines in both profiles, a README row, an app factory
taking `smoke`, a main control that exists, and explorers that never fit, train or solve.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

from widgets.topics import TOPICS, topic

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_has_one_entry_and_every_entry_a_notebook():
    entries = [t.notebook for t in TOPICS]
    assert sorted(entries) == NOTEBOOKS, (
        f"notebooks without an entry: {sorted(set(NOTEBOOKS) - set(entries))}; "
        f"entries without a notebook: {sorted(set(entries) - set(NOTEBOOKS))}"
    )
    assert entries == sorted(entries), "TOPICS is in notebook order"
    assert len({t.slug for t in TOPICS}) == len(TOPICS)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", t.slug) for t in TOPICS)


def test_lookup_by_notebook_stem_or_slug():
    assert topic("01_solver_steps.ipynb") is topic("solver-steps") is topic("01_solver_steps")
    with pytest.raises(ValueError, match="unknown topic 'nope'; choose from noised-mixture"):
        topic("nope")


@pytest.mark.parametrize("entry", TOPICS, ids=[t.slug for t in TOPICS])
def test_entry_checklist(entry):
    stem = entry.notebook.removesuffix(".ipynb")
    # the factory: app(smoke=False), defined in the topic's explorer module
    parameters = list(inspect.signature(entry.app).parameters.values())
    assert [p.name for p in parameters] == ["smoke"] and parameters[0].default is False
    assert entry.app.__module__.startswith("widgets.explorers."), entry.app.__module__
    # baselines in both profiles
    baseline = json.loads((ROOT / "tests" / "baselines" / f"{stem}.json").read_text())
    assert {"smoke", "full"} <= set(baseline["profiles"]), f"{stem}: record both profiles"
    # a parameters cell with SMOKE
    cells = json.loads((ROOT / "notebooks" / entry.notebook).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "SMOKE: bool = False" in "".join(tagged[0]["source"])
    # the benchmark's range is a real range of the control
    low, high, step = entry.sweep
    assert low < high and step >= 0


def test_readme_notebook_table_matches_the_topic_table():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| \[`(\d\d_[a-z0-9_]+\.ipynb)`\]\(notebooks/\1\) \| .+ \|$", readme, re.M)
    assert rows == [t.notebook for t in TOPICS]


def test_workbench_list_lists_exactly_the_topics(capsys):
    from workbench.cli import main

    assert main(["list"]) == 0
    listed = re.findall(r"^(\d\d_[a-z0-9_]+)\b", capsys.readouterr().out, re.M)
    assert list(dict.fromkeys(listed)) == [t.notebook.removesuffix(".ipynb") for t in TOPICS]


def test_the_served_app_and_the_benchmark_iterate_the_table():
    from widgets import app

    routes = app.routes()
    assert list(routes) == ["/", *(t.slug for t in TOPICS)]
    source = (ROOT / "benchmarks" / "explorer_latency.py").read_text()
    assert "for topic in TOPICS" in source and "widgets.explorers" not in source
    for folder in ("tests/ui",):
        for path in (ROOT / folder).glob("test_*.py"):
            assert "widgets.explorers" not in path.read_text(), path


# What fits, trains or solves: an explorer module receives the results of these, never calls them.
COMPUTE_ENTRY_POINTS = {
    "sample",
    "reference_solution",
    "fit_grid",
    "compute_ems",
    "run_sweep",
    "lr_sweep",
    "race",
    "optimal_lr",
    "train",
    "train_batched",
    "solve",
}


def _called_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


@pytest.mark.parametrize(
    "path", sorted((ROOT / "widgets").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_widgets_never_fit_train_or_solve(path):
    called = _called_names(ast.parse(path.read_text()))
    assert called & COMPUTE_ENTRY_POINTS == set(), f"{path.name} computes: move it to workbench/"


def logic_lines(source: str) -> int:
    """Lines of a cell that do something: not blank, comments, imports or closing brackets."""
    imports = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.update(range(node.lineno, node.end_lineno + 1))
    return sum(
        1
        for number, line in enumerate(source.splitlines(), 1)
        if (text := line.strip())
        and not text.startswith("#")
        and number not in imports
        and not all(char in ")]}," for char in text)
    )


def test_logic_lines_counts_what_does_something():
    cell = "import os\nfrom a import (\n    b,\n)\n\n# why\nx = f(\n    1,\n)\nx\n"
    assert logic_lines(cell) == 3


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_cells_stay_short(notebook):
    """~15 lines of logic per code cell; more belongs in workbench/ or widgets/."""
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    long = {}
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if source.lstrip().startswith(("%", "!")):
            continue
        if (count := logic_lines(source)) > 15:
            long[index] = count
    assert long == {}, f"cells over 15 lines of logic (cell index: lines): {long}"


def test_notebooks_take_their_data_from_workbench():
    """Notebooks import figures and explorers from widgets, never a study or a computation."""
    for notebook in NOTEBOOKS:
        cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("widgets"):
                for alias in node.names:
                    assert not alias.name.startswith("study"), f"{notebook}: {alias.name}"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_ends_with_its_verdict(notebook):
    """The last cell shows the claims table (workbench.claims) read from the recorded metrics,
    after a markdown heading; no dump of every recorded metric (the run folder has them)."""
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    last = code[-1].strip().splitlines()[-1]
    assert re.match(r"(\w+\.)?(claims|verdict)_table\(.*\)(\.style)?\b", last), last
    assert not any("recorded()" in source for source in code), "a metric dump is left"
    headings = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    assert headings[-1].startswith("#"), "the verdict comes under a heading of its own"
