"""Runner faults (issue 11): nothing a run produced is lost, a hung cell is stopped, grids and
run folders never overwrite results, the commit is recorded on a fresh clone, drifts say so,
the failing cell is named right, and parameters are checked against declared ranges."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
import scratch

from workbench import history, runner
from workbench.cli import main

REPO = Path(__file__).resolve().parents[1]
PARAMETERS = """SMOKE: bool = False  # run small
SCALE: float = 2.0  # multiplies the answer, in (0, 100]
COUNT: int = 3  # how many, in [1, inf)
"""
METRIC_CELL = "from workbench import record\nrecord('answer', 21 * SCALE, rtol=1e-9)"


def write_notebook(path: Path, *cells: str, parameters: str = PARAMETERS) -> None:
    scratch.write_notebook(path, *cells, parameters=parameters)


@pytest.fixture
def project(tmp_path, monkeypatch):
    return scratch.project(
        tmp_path, monkeypatch, {"01_answer": [METRIC_CELL]}, parameters=PARAMETERS
    )


def quiet(*_):
    pass


def run_dirs(project: runner.Project) -> list[Path]:
    if not project.runs_dir.exists():
        return []
    return sorted(p for p in project.runs_dir.iterdir() if p.is_dir())


# ------------------------------------------------------------------ results kept as they come
def test_each_notebook_is_written_when_it_finishes(project, monkeypatch):
    """The run folder and the history hold a notebook as soon as it finished: an interruption
    during the third keeps the first two (before: nothing was written until the end)."""
    for stem in ("02_second", "03_third"):
        write_notebook(project.notebooks_dir / f"{stem}.ipynb", METRIC_CELL)
    seen = []
    real_execute = runner.execute

    def execute(notebook, out_dir, values, **kwargs):
        if Path(notebook).stem == "03_third":
            payload = json.loads((Path(out_dir) / "metrics.json").read_text())
            stored = history.runs(history.database(project.runs_dir))
            seen.append((sorted(payload), stored["notebook"].tolist()))
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of the third notebook
        return real_execute(notebook, out_dir, values, **kwargs)

    monkeypatch.setattr(runner, "execute", execute)
    notebooks = runner.resolve_notebooks([], project.notebooks_dir)
    with pytest.raises(runner.Interrupted) as interrupted:
        runner.run(notebooks, project=project, progress=False, html=False, echo=quiet)
    assert seen == [(["01_answer", "02_second"], ["01_answer", "02_second"])]
    assert interrupted.value.exit_code == 130 and interrupted.value.kept == 2
    (run_dir,) = run_dirs(project)
    kept = {r.notebook: r.metrics["answer"]["value"] for r in runner.load_run(run_dir)}
    assert kept == {"01_answer": 42.0, "02_second": 42.0}


def test_a_hung_cell_is_stopped_with_the_cell_and_the_timeout_named(project, capsys):
    write_notebook(
        project.notebooks_dir / "02_hang.ipynb",
        "x = 1",
        "import time\ntime.sleep(120)",
        "x = 2",
    )
    start = time.monotonic()
    assert main(["run", "02_hang", "--timeout", "2", "-q", "--no-html"]) == 1
    assert time.monotonic() - start < 60
    out = capsys.readouterr().out
    assert (
        "02_hang FAILED: cell 4 ran longer than 2 s (the per-cell --timeout) and was stopped "
        "-- in `import time`" in out
    )


def test_the_timeout_has_a_default_and_is_validated(project, capsys):
    import inspect

    assert inspect.signature(runner.run).parameters["timeout"].default == runner.DEFAULT_TIMEOUT_S
    assert runner.DEFAULT_TIMEOUT_S > 0
    with pytest.raises(SystemExit):
        main(["run", "01_answer", "--timeout", "soon"])
    assert "expected a number of seconds, got 'soon'" in capsys.readouterr().err


@pytest.mark.parametrize("failures, ok", [(1, True), (runner.KERNEL_START_ATTEMPTS, False)])
def test_a_kernel_that_dies_before_starting_is_started_again(project, monkeypatch, failures, ok):
    """Two kernels starting at once can race for a TCP port; the loser dies before it replies
    to kernel_info (nothing ran), and the runner starts it again instead of failing."""
    import papermill

    real = papermill.execute_notebook
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= failures:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    notebook = project.notebooks_dir / "01_answer.ipynb"
    result = runner.execute(notebook, project.root / "out", {"SMOKE": True}, html=False)
    assert result.ok is ok
    assert len(calls) == (failures + 1 if ok else failures)
    if ok:
        assert result.metrics["answer"]["value"] == 42.0
    else:
        assert result.error == "RuntimeError: Kernel died before replying to kernel_info"


def test_a_kernel_that_dies_mid_run_is_not_restarted(project, monkeypatch):
    import papermill

    calls = []

    def dies(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("Kernel died")

    monkeypatch.setattr(papermill, "execute_notebook", dies)
    notebook = project.notebooks_dir / "01_answer.ipynb"
    result = runner.execute(notebook, project.root / "out", {}, html=False)
    assert not result.ok and len(calls) == 1


# ------------------------------------------------------------------ nothing overwritten
@pytest.mark.parametrize("values", ["1,1,2", "1,1.0"])
def test_a_grid_with_a_repeated_value_is_refused(project, capsys, values):
    assert main(["run", "01_answer", "--grid", f"SCALE={values}", "-q", "--no-html"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ("SCALE" in err and "twice" in err) or "same parameters" in err
    assert run_dirs(project) == []


def test_a_reused_run_dir_keeps_its_earlier_results(project, capsys):
    write_notebook(project.notebooks_dir / "02_other.ipynb", METRIC_CELL)
    target = project.root / "mine"
    assert main(["run", "01_answer", "--run-dir", str(target), "-q", "--no-html"]) == 0
    assert main(["run", "02_other", "--run-dir", str(target), "-q", "--no-html"]) == 0
    payload = json.loads((target / "metrics.json").read_text())
    assert sorted(payload) == ["01_answer", "02_other"]  # before: only 02_other was left
    assert "01_answer" in (target / "summary.txt").read_text()
    capsys.readouterr()
    # the same notebook again would overwrite its executed copy and its metrics: refused
    assert main(["run", "01_answer", "--run-dir", str(target), "-q", "--no-html"]) == 2
    assert "already holds results for 01_answer" in capsys.readouterr().err
    assert sorted(json.loads((target / "metrics.json").read_text())) == ["01_answer", "02_other"]


# ------------------------------------------------------------------ the summary table
def test_the_table_says_drifted_when_a_profiled_notebook_misses_its_baseline(project, capsys):
    assert main(["run", "01_answer", "-q", "--no-html"]) == 0
    assert main(["check", "--update-baselines"]) == 0
    baseline_file = project.baselines_dir / "01_answer.json"
    baseline = json.loads(baseline_file.read_text())
    baseline["profiles"]["full"]["answer"]["value"] = 40.0
    baseline_file.write_text(json.dumps(baseline))
    capsys.readouterr()
    assert main(["run", "01_answer", "-q", "--no-html"]) == 0  # the notebook itself passed
    row = next(line for line in capsys.readouterr().out.splitlines() if "01_answer  full" in line)
    assert row.split()[2] == "drifted" and "1 of 1 drifted" in row
    results = runner.load_run(run_dirs(project)[-1])
    assert results[0].status == "ok" and results[0].drifted


# ------------------------------------------------------------------ the failing cell's number
@pytest.mark.parametrize(
    ("cells", "argv", "number"),
    [
        (["raise ValueError('first')", "x = 1"], ["-p", "SCALE", "3"], 3),  # after injected
        (["raise ValueError('first')", "x = 1"], [], 3),  # no injected cell
        (["x = 1", "raise ValueError('second')"], ["-p", "SCALE", "3"], 4),
        (["x = 1", "raise ValueError('second')"], [], 4),
        (["x = 1", "y = 2", "z = 3", "raise ValueError('late')"], ["-p", "COUNT", "2"], 6),
    ],
)
def test_the_failing_cell_is_named_as_the_source_notebook_counts(
    project, capsys, cells, argv, number
):
    write_notebook(project.notebooks_dir / "02_broken.ipynb", *cells)
    assert main(["run", "02_broken", *argv, "-q", "--no-html"]) == 1
    out = capsys.readouterr().out
    failure = next(line for line in out.splitlines() if "FAILED" in line)
    assert f"02_broken FAILED: cell {number} " in failure, failure
    source = nbformat.read(project.notebooks_dir / "02_broken.ipynb", as_version=4)
    assert source.cells[number - 1].source.startswith("raise ValueError")


def test_tour_noise_level_failure_names_the_cell_it_is_in(project, capsys):
    """The issue's case (`run 00 --smoke -p NOISE_LEVEL 1.5`) without its range: the tour's
    first cell after the parameters computes sqrt(1 - sigma^2) and fails there."""
    write_notebook(
        project.notebooks_dir / "02_tour.ipynb",
        "import math\nALPHA = math.sqrt(1 - X**2)",
        "y = ALPHA",
        parameters="SMOKE: bool = False  # s\nX: float = 0.6  # noise\n",
    )
    assert main(["run", "02_tour", "--smoke", "-p", "X", "1.5", "-q", "--no-html"]) == 1
    assert "02_tour FAILED: cell 3 (In [3] in the executed copy) raised ValueError" in (
        capsys.readouterr().out
    )


# ------------------------------------------------------------------ the commit on a fresh clone
def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture
def fresh_clone(tmp_path):
    """A clone whose notebook goes through a slow clean filter (like nbstripout, a Python
    start per notebook) that leaves a trace each time it runs."""
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "-q", "-b", "main", cwd=origin)
    (origin / ".gitattributes").write_text("*.ipynb filter=slow\n")
    for n in range(3):
        (origin / f"0{n}_topic.ipynb").write_text('{"cells": []}\n')
    git("add", ".", cwd=origin)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first", cwd=origin)
    clone = tmp_path / "clone"
    git("clone", "-q", str(origin), str(clone), cwd=tmp_path)
    trace = tmp_path / "filter-ran"
    script = tmp_path / "slow-clean"
    script.write_text(f"#!/bin/sh\necho ran >> {trace}\nsleep 4\ncat\n")
    script.chmod(0o755)
    git("config", "filter.slow.clean", str(script), cwd=clone)
    git("config", "filter.slow.smudge", "cat", cwd=clone)
    git("config", "filter.slow.required", "true", cwd=clone)
    later = time.time() + 5  # stat data the index no longer trusts: git must read the files
    for path in clone.glob("*.ipynb"):
        os.utime(path, (later, later))
    return clone, trace


def test_a_fresh_clone_records_its_commit_without_running_the_clean_filter(fresh_clone):
    clone, trace = fresh_clone
    head = git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    start = time.monotonic()
    commit, dirty = history.git_state(clone)
    assert (commit, dirty) == (head, False)
    assert not trace.exists(), "the dirty check ran the clean filter"
    assert time.monotonic() - start < 5
    (clone / "01_topic.ipynb").write_text('{"cells": [1]}\n')
    assert history.git_state(clone) == (head, True)


def test_outside_git_there_is_no_commit(tmp_path):
    assert history.git_state(tmp_path) == (None, None)


# ------------------------------------------------------------------ parameter ranges
@pytest.mark.parametrize(
    ("help_text", "inside", "outside"),
    [
        ("seed, in [0, 2**32)", [0, 2**32 - 1], [-1, 2**32, 2**80]),
        ("samples (full mode), in [1, inf)", [1, 10**9], [0, -5]),
        ("noise std, in (0, 1)", [1e-9, 0.999], [0.0, 1.0, 1.5, float("nan")]),
        ("scale, in (0, 100]", [100.0], [0.0, 100.5]),
        ("offset, in (-inf, 0]", [-1e300, 0], [1e-9]),
    ],
)
def test_ranges_read_from_the_help_comment(help_text, inside, outside):
    declared = runner.parse_range(Path("nb.ipynb"), "X", help_text)
    assert all(v in declared for v in inside), declared
    assert not any(v in declared for v in outside), declared


def test_help_without_a_range_has_none_and_a_bad_range_is_refused():
    assert runner.parse_range(Path("nb.ipynb"), "X", "steps per run (full mode)") is None
    assert runner.parse_range(Path("nb.ipynb"), "X", "") is None
    with pytest.raises(runner.RunnerError, match="parameter X: cannot read the range"):
        runner.parse_range(Path("nb.ipynb"), "X", "width, in [one, inf)")


def test_every_number_parameter_of_every_notebook_declares_a_range():
    for notebook in runner.discover(REPO / "notebooks"):
        for parameter in runner.parameters(notebook).values():
            if parameter.type in ("int", "float"):
                assert parameter.range is not None, (notebook.name, parameter.name)
                default = runner._literal(parameter.default)
                assert default in parameter.range, (notebook.name, parameter.name)


@pytest.mark.parametrize(
    ("notebook", "name", "value", "message"),
    [
        ("00", "SEED", "1208925819614629174706176", "parameter SEED (int) must be in [0, 2**32)"),
        ("00", "SEED", "2**80", "parameter SEED (int) expects a number, got '2**80'"),
        ("00", "SEED", "-1", "parameter SEED (int) must be in [0, 2**32), got -1"),
        ("00", "NOISE_LEVEL", "1.5", "parameter NOISE_LEVEL (float) must be in (0, 1), got 1.5"),
        ("00", "NOISE_LEVEL", "nan", "parameter NOISE_LEVEL (float) expects a finite number"),
        ("01", "N_SAMPLES", "-5", "parameter N_SAMPLES (int) must be in [1, inf), got -5"),
        ("01", "N_SAMPLES", "0", "parameter N_SAMPLES (int) must be in [1, inf), got 0"),
        ("02", "SMC_PARTICLES", "0", "parameter SMC_PARTICLES (int) must be in [1, inf), got 0"),
        ("04", "WIDTH", "0", "parameter WIDTH (int) must be in [1, inf), got 0"),
    ],
)
def test_the_notebooks_refuse_out_of_range_parameters_before_any_cell_runs(
    monkeypatch, tmp_path, capsys, notebook, name, value, message
):
    monkeypatch.setenv("WORKBENCH_ROOT", str(REPO))
    monkeypatch.setattr(
        runner, "execute", lambda *a, **k: pytest.fail("a notebook ran with a bad parameter")
    )
    run_dir = tmp_path / "never"
    assert main(["run", notebook, "-p", name, value, "--run-dir", str(run_dir), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not run_dir.exists()


def test_grid_values_are_range_checked_too(project, capsys):
    assert main(["run", "01_answer", "--grid", "COUNT=2,0", "-q", "--no-html"]) == 2
    assert "parameter COUNT (int) must be in [1, inf), got 0" in capsys.readouterr().err
    assert run_dirs(project) == []


def test_list_shows_the_ranges(project, capsys):
    assert main(["list", "01_answer"]) == 0
    out = capsys.readouterr().out
    assert "SCALE  float = 2.0  # multiplies the answer, in (0, 100]" in out
    assert "COUNT  int   = 3  # how many, in [1, inf)" in out
