"""A user's mistake gets one line on stderr and exit 2, never a traceback (issue 11); an
interrupted run ends its kernels and workers, keeps what finished and exits 128 + signal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import scratch

from workbench import history, runner
from workbench.cli import main
from workbench.reporting import METRICS_FILE_ENV

PARAMETERS = "SMOKE: bool = False  # run small\nX: float = 1.0  # the value, in [0, 10]\n"


def write_notebook(path: Path, *cells: str) -> None:
    scratch.write_notebook(path, *cells, parameters=PARAMETERS)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_THREADS", raising=False)
    cells = (
        "from workbench import record\nrecord('x', X)",
        "import time\nif X > 1.5:\n    time.sleep(300)  # the point a run is interrupted in",
    )
    return scratch.project(tmp_path, monkeypatch, {"01_value": cells}, parameters=PARAMETERS)


def one_error_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ check --run
def test_check_on_a_missing_folder(project, capsys):
    assert main(["check", "--run", str(project.root / "runs" / "nope")]) == 2
    one_error_line(capsys, "no run folder", "nope")


def test_check_on_a_file(project, capsys):
    path = project.root / "a-file.txt"
    path.write_text("hello")
    assert main(["check", "--run", str(path)]) == 2
    one_error_line(capsys, "is a file, not a run folder")


def test_check_on_a_folder_without_metrics(project, capsys):
    (project.root / "empty").mkdir()
    assert main(["check", "--run", str(project.root / "empty")]) == 2
    one_error_line(capsys, "has no metrics.json")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"01_value": {"bogus": 1}}', "\xff"])
def test_check_on_a_corrupt_metrics_file(project, capsys, content):
    folder = project.root / "broken"
    folder.mkdir()
    (folder / "metrics.json").write_bytes(content.encode("latin-1"))
    assert main(["check", "--run", str(folder)]) == 2
    one_error_line(capsys, "metrics.json is not readable run metrics")


def test_check_without_any_run(project, capsys):
    assert main(["check"]) == 2
    one_error_line(capsys, "no runs with metrics")


# ------------------------------------------------------------------ a corrupt history
@pytest.fixture
def corrupt_history(project):
    path = history.database(project.runs_dir)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, it is a text file " * 100)
    return path


@pytest.mark.parametrize("argv", [["history"], ["history", "01_value"], ["history", "01", "x"]])
def test_history_on_a_corrupt_store(project, corrupt_history, capsys, argv):
    assert main(argv) == 2
    one_error_line(capsys, str(corrupt_history), "not a usable run history", "move it away")


def test_run_with_a_corrupt_history_still_prints_its_table_and_passes(
    project, corrupt_history, capsys
):
    assert main(["run", "01_value", "-q", "--no-html"]) == 0
    captured = capsys.readouterr()
    assert "01_value  full" in captured.out and "run folder:" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("workbench:")]
    assert warnings == [
        f"workbench: warning: the run history was not written: {corrupt_history} is not a "
        "usable run history (file is not a database); move it away to start a new one"
    ]
    assert "Traceback" not in captured.err
    (run_dir,) = [p for p in project.runs_dir.iterdir() if p.is_dir()]
    assert runner.load_run(run_dir)[0].ok  # the results are kept all the same


# ------------------------------------------------------------------ backends
@pytest.mark.parametrize("spec", ["dask://", "tcp://", "dask://:8786", "tcp://host:port"])
def test_a_scheduler_address_without_a_host_or_port_is_refused(project, capsys, spec):
    assert main(["run", "01_value", "--backend", spec, "-q"]) == 2
    one_error_line(capsys, f"backend {spec!r}: expected dask://HOST[:PORT]")
    assert not project.runs_dir.exists()


def test_a_scheduler_address_where_nothing_listens_fails_fast(project, capsys):
    with socket.socket() as probe:  # a free port: nothing listens there once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    assert main(["run", "01_value", "--backend", f"dask://127.0.0.1:{port}", "-q"]) == 2
    assert time.monotonic() - start < 10
    one_error_line(capsys, f"no Dask scheduler reachable at tcp://127.0.0.1:{port}")
    assert not project.runs_dir.exists()  # no empty run folder


# ------------------------------------------------------------------ WORKBENCH_THREADS
@pytest.mark.parametrize("value", ["abc", "0", "-2", ""])
def test_a_bad_thread_count_is_refused_before_running(project, capsys, monkeypatch, value):
    import workbench._torch  # noqa: F401  (already imported: the check must not rely on importing it)

    monkeypatch.setenv("WORKBENCH_THREADS", value)
    assert main(["run", "01_value", "-q"]) == 2
    one_error_line(capsys, f"WORKBENCH_THREADS={value!r} is not allowed", "positive integer")
    assert not project.runs_dir.exists()


@pytest.mark.parametrize("value", ["abc", "0"])
def test_importing_the_compute_modules_with_a_bad_thread_count_says_why(value):
    env = dict(os.environ, WORKBENCH_THREADS=value)
    done = subprocess.run(
        [sys.executable, "-c", "import workbench._torch"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"workbench._threads.ThreadsError: WORKBENCH_THREADS={value!r} is not allowed: it must be "
        "a positive integer, the number of torch threads per process (e.g. 1, the default, or 2)"
    )


def test_a_good_thread_count_is_applied():
    env = dict(os.environ, WORKBENCH_THREADS="2")
    done = subprocess.run(
        [sys.executable, "-c", "import workbench._torch, torch; print(torch.get_num_threads())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "2"


# ------------------------------------------------------------------ other mistakes
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "01_value", "-p", "X", "11"], "parameter X (float) must be in [0, 10], got 11.0"),
        (["run", "01_value", "-p", "X", "inf"], "parameter X (float) expects a finite number"),
        (["run", "01_value", "--grid", "X=1,1,2"], "--grid X: the value 1 is given twice"),
        (["run", "01_value", "--run-dir", "pyproject.toml"], "is a file, not a folder"),
    ],
)
def test_other_mistakes_are_one_line(project, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(project.root)
    assert main(argv) == 2
    one_error_line(capsys, fragment)


# ------------------------------------------------------------------ SIGTERM / Ctrl-C
def start_run(project: runner.Project, backend: str) -> subprocess.Popen:
    env = dict(os.environ, WORKBENCH_ROOT=str(project.root))
    env.pop(METRICS_FILE_ENV, None)
    command = [sys.executable, "-m", "workbench", "run", "01_value", "--grid", "X=1,2"]
    return subprocess.Popen(
        [*command, "--backend", backend, "-q", "--no-html"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_the_second_point(project: runner.Project, process: subprocess.Popen) -> list:
    """Until the first grid point is in metrics.json and the second one's kernel runs;
    returns every process the run has started by then."""
    deadline = time.monotonic() + 120
    me = psutil.Process(process.pid)
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        written = list(project.runs_dir.glob("*/metrics.json")) if project.runs_dir.exists() else []
        descendants = me.children(recursive=True)
        kernels = [p for p in descendants if _is_kernel(p)]
        if written and kernels:
            return [me, *descendants]
        time.sleep(0.2)
    pytest.fail("the run never reached its second grid point")


def _is_kernel(process: psutil.Process) -> bool:
    try:
        return "ipykernel" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_the_run_its_kernels_and_its_workers(project, signum, code):
    process = start_run(project, "processes:1")
    started = wait_for_the_second_point(project, process)
    time.sleep(1)  # into the second point's sleeping cell
    process.send_signal(signum)
    try:
        _out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the run did not end within 30 s of the signal")
    assert process.returncode == code, err
    assert "Traceback" not in err, err
    ours = [line for line in err.splitlines() if line.startswith("workbench")]
    name = signal.Signals(signum).name
    assert len(ours) == 1 and ours[0].startswith(f"workbench: interrupted by {name}: "), err
    assert "1 finished notebook(s) kept in" in ours[0]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p.pid for p in started if _alive(p)], "processes outlived the run"
    # the grid point that finished is kept, in the run folder and in the history
    (metrics,) = project.runs_dir.glob("*/metrics.json")
    assert list(json.loads(metrics.read_text())) == ["01_value[X=1]"]
    stored = history.runs(history.database(project.runs_dir))
    assert stored["parameters"].tolist() == [{"X": 1.0}]
