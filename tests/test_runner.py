"""The runner and the regression check, on small notebooks written into a scratch project."""

from __future__ import annotations

import csv
import json
import math
import re

import nbformat
import pytest
import scratch

from workbench import record, regression, reporting, runner
from workbench.cli import main
from workbench.reporting import METRICS_FILE_ENV

PARAMETERS = """SMOKE: bool = False  # run small
SCALE: float = 2.0  # multiplies the answer
LABEL: str = "base"  # free text
"""
METRIC_CELL = """from workbench import record
record("answer", 21 * SCALE * (0.5 if SMOKE else 1.0), rtol=1e-9)
record("label", LABEL)
"""


def write_notebook(path, *cells: str, parameters: str = PARAMETERS) -> None:
    scratch.write_notebook(path, *cells, parameters=parameters)


@pytest.fixture
def project(tmp_path, monkeypatch):
    notebooks = {
        "01_answer": [METRIC_CELL],
        "02_broken": [
            "x = 1",
            "from workbench import record\nrecord('before_failure', 1.5)",
            "raise RuntimeError('deliberate failure')",
            "record('never', 1)",
        ],
    }
    return scratch.project(tmp_path, monkeypatch, notebooks, parameters=PARAMETERS)


def only_run(project: runner.Project):
    runs = sorted(p for p in project.runs_dir.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def test_list_shows_parameters_with_types_defaults_and_help(project, capsys):
    assert main(["list", "01_answer"]) == 0
    out = capsys.readouterr().out
    assert "01_answer" in out
    assert "SMOKE  bool  = False  # run small" in out
    assert "SCALE  float = 2.0  # multiplies the answer" in out
    assert 'LABEL  str   = "base"  # free text' in out


def test_run_writes_the_run_folder_and_prints_the_table(project, capsys):
    assert main(["run", "01_answer", "-p", "SCALE", "3", "-q"]) == 0
    out = capsys.readouterr().out
    run_dir = only_run(project)
    assert (run_dir / "01_answer.ipynb").is_file()
    assert (run_dir / "01_answer.html").read_text().startswith("<!DOCTYPE html>")
    payload = json.loads((run_dir / "metrics.json").read_text())["01_answer"]
    assert payload["status"] == "ok"
    assert payload["parameters"] == {"SCALE": 3.0}
    assert payload["profile"] == "custom"
    assert payload["metrics"]["answer"]["value"] == 63.0
    assert payload["peak_memory_mb"] > 10  # a kernel with numpy imported is tens of MiB
    for column in ("notebook", "status", "runtime", "peak memory", "metrics vs baseline"):
        assert column in out
    assert "skipped: custom parameters" in out


def test_unknown_parameter_is_refused_before_running(project, capsys):
    assert main(["run", "01_answer", "-p", "SCALLE", "3"]) == 2
    err = capsys.readouterr().err
    assert "01_answer.ipynb has no parameter 'SCALLE'" in err
    assert "valid parameters: SMOKE, SCALE, LABEL" in err
    assert not project.runs_dir.exists()


def test_badly_typed_parameter_is_refused(project, capsys):
    assert main(["run", "01_answer", "-p", "SCALE", "big"]) == 2
    assert "parameter SCALE (float) expects a number, got 'big'" in capsys.readouterr().err
    assert main(["run", "01_answer", "-p", "SMOKE", "maybe"]) == 2
    assert "expects True or False, got 'maybe'" in capsys.readouterr().err


def test_unknown_notebook_is_refused(project, capsys):
    assert main(["run", "07_nothing"]) == 2
    assert (
        "'07_nothing' matches no notebook; notebooks: 01_answer, 02_broken"
        in capsys.readouterr().err
    )


def test_failing_notebook_exits_nonzero_names_the_cell_and_keeps_its_output(project, capsys):
    assert main(["run", "-q", "--smoke"]) == 1  # both notebooks: one passes, one fails
    captured = capsys.readouterr()
    expected = (
        "02_broken FAILED: cell 5 (In [5] in the executed copy) raised RuntimeError: "
        "deliberate failure -- in `raise RuntimeError('deliberate failure')`"
    )
    assert expected in captured.out
    assert "1 notebook(s) failed: 02_broken" in captured.err
    run_dir = only_run(project)
    executed = nbformat.read(run_dir / "02_broken.ipynb", as_version=4)
    failed_cell = next(c for c in executed.cells if c.source.startswith("raise RuntimeError"))
    assert [output.get("ename") for output in failed_cell.outputs] == ["RuntimeError"]
    results = {r.notebook: r for r in runner.load_run(run_dir)}
    assert results["01_answer"].ok and results["01_answer"].metrics["answer"]["value"] == 21.0
    # metrics recorded before the failure are kept
    assert results["02_broken"].metrics == {
        "before_failure": {"value": 1.5, "atol": 1e-12, "rtol": 1e-6}
    }


def test_check_passes_after_update_and_names_a_drift_readably(project, capsys):
    assert main(["run", "01_answer", "--smoke", "-q", "--no-html"]) == 0
    assert main(["check"]) == 1  # no baseline yet
    assert "no smoke baseline" in capsys.readouterr().out
    assert main(["check", "--update-baselines"]) == 0
    baseline_file = project.baselines_dir / "01_answer.json"
    baseline = json.loads(baseline_file.read_text())
    assert baseline["profiles"]["smoke"]["answer"] == {"value": 21.0, "atol": 1e-12, "rtol": 1e-9}
    capsys.readouterr()
    assert main(["check"]) == 0
    assert "ok      01_answer [smoke]: 2 within baseline" in capsys.readouterr().out

    baseline["profiles"]["smoke"]["answer"]["value"] = 20.0
    baseline["profiles"]["smoke"]["label"]["value"] = "other"
    baseline_file.write_text(json.dumps(baseline))
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert (
        "DRIFT   01_answer [smoke] answer: expected 20, actual 21 (outside atol 1e-12, rtol 1e-09)"
        in out
    )
    assert "DRIFT   01_answer [smoke] label: expected 'other', actual 'base' (outside exact)" in out


def read_table(path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["metric", "value", "baseline", "atol", "rtol", "verdict"]
    return {row["metric"]: row for row in rows}


def test_each_notebook_gets_a_metrics_table_with_baseline_tolerance_and_verdict(project, capsys):
    assert main(["run", "--smoke", "-q", "--no-html"]) == 1  # 02_broken fails
    run_dir = only_run(project)
    assert read_table(run_dir / "01_answer.metrics.csv")["answer"] == {
        "metric": "answer",
        "value": "21",
        "baseline": "",
        "atol": "1e-12",
        "rtol": "1e-09",
        "verdict": "no smoke baseline",
    }
    broken = read_table(run_dir / "02_broken.metrics.csv")
    assert broken["before_failure"]["value"] == "1.5"
    assert broken["before_failure"]["verdict"] == "not compared: the run failed"

    assert main(["check", "--update-baselines"]) == 1  # 02_broken still failed
    updated = read_table(run_dir / "01_answer.metrics.csv")
    assert [row["verdict"] for row in updated.values()] == ["within baseline"] * 2
    assert updated["answer"]["baseline"] == "21"
    baseline_file = project.baselines_dir / "01_answer.json"
    baseline = json.loads(baseline_file.read_text())
    baseline["profiles"]["smoke"]["answer"]["value"] = 20.0
    baseline["profiles"]["smoke"]["gone"] = {"value": 0.125, "atol": 0.0, "rtol": 0.01}
    baseline_file.write_text(json.dumps(baseline))
    capsys.readouterr()
    assert main(["check", "--run", str(run_dir)]) == 1
    assert (
        f"every metric with its baseline, tolerance and verdict: {run_dir}/<notebook>.metrics.csv"
        in capsys.readouterr().out
    )
    table = read_table(run_dir / "01_answer.metrics.csv")  # rewritten by the check
    assert table["answer"]["baseline"] == "20"
    assert table["answer"]["verdict"] == "outside atol 1e-12, rtol 1e-09"
    assert table["label"] == {
        "metric": "label",
        "value": "base",
        "baseline": "base",
        "atol": "",
        "rtol": "",
        "verdict": "within baseline",
    }
    assert table["gone"] == {
        "metric": "gone",
        "value": "",
        "baseline": "0.125",
        "atol": "0",
        "rtol": "0.01",
        "verdict": "not recorded",
    }
    assert list(table) == ["answer", "label", "gone"]  # recorded order, then the missing


def test_a_custom_run_lists_its_metrics_as_not_compared(project):
    assert main(["run", "01_answer", "-p", "SCALE", "3", "-q", "--no-html"]) == 0
    table = read_table(only_run(project) / "01_answer.metrics.csv")
    assert table["answer"]["value"] == "63"
    assert table["answer"]["verdict"] == "not compared: custom parameters"


def test_default_parameters_compare_with_the_full_profile(project):
    notebooks = runner.resolve_notebooks(["01"], project.notebooks_dir)
    _, results = runner.run(
        notebooks, progress=False, html=False, project=project, echo=lambda *_: None
    )
    assert results[0].profile == "full"
    assert results[0].check.startswith("no full baseline in ")


def test_profile_of_explicit_defaults_is_not_custom(project):
    notebook = project.notebooks_dir / "01_answer.ipynb"
    assert runner.profile_of(notebook, {"SCALE": 2.0, "LABEL": "base"}) == "full"
    assert runner.profile_of(notebook, {"SMOKE": True, "SCALE": 2.0}) == "smoke"
    assert runner.profile_of(notebook, {"SCALE": 2.5}) == "custom"


def test_a_missing_metric_and_an_unbaselined_metric_are_both_drifts():
    expected = {"a": {"value": 1.0, "atol": 0.0, "rtol": 0.1}, "b": {"value": True}}
    drifts = regression.compare("nb", "smoke", expected, {"a": {"value": 1.05}, "c": {"value": 3}})
    reasons = {d.metric: d.reason for d in drifts}
    assert reasons == {
        "b": "not recorded",
        "c": "no baseline: run `python -m workbench check --update-baselines`",
    }


@pytest.mark.parametrize(
    ("expected", "actual", "atol", "rtol", "ok"),
    [
        (1.0, 1.0 + 1e-7, 0.0, 1e-6, True),
        (1.0, 1.0 + 1e-5, 0.0, 1e-6, False),
        (0.0, 1e-13, 1e-12, 0.0, True),
        (0.0, 1e-11, 1e-12, 0.0, False),
        (True, True, 0.0, 0.0, True),
        (True, 1, 0.0, 0.0, False),  # a bool is not the number 1 here
        ("a", "a", 0.0, 0.0, True),
        (1.0, math.nan, 1.0, 1.0, False),
    ],
)
def test_within_tolerance(expected, actual, atol, rtol, ok):
    assert regression.within_tolerance(expected, actual, atol, rtol) is ok


def test_record_refuses_what_cannot_be_compared(monkeypatch, tmp_path):
    reporting.clear()
    monkeypatch.setenv(METRICS_FILE_ENV, str(tmp_path / "m.json"))
    with pytest.raises(ValueError, match="refusing to record a non-finite value"):
        record("loss", float("nan"))
    with pytest.raises(ValueError, match="metric name must be"):
        record("has space", 1.0)
    with pytest.raises(TypeError, match="must be a number, bool or string, got list"):
        record("items", [1, 2])
    with pytest.raises(ValueError, match="atol for 'x' must be finite and >= 0"):
        record("x", 1.0, atol=-1)
    import numpy as np
    import torch

    assert record("from_numpy", np.float32(0.5)) == 0.5
    assert record("from_torch", torch.tensor(3)) == 3
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["from_numpy"] == {"value": 0.5, "atol": 1e-12, "rtol": 1e-6}
    assert written["from_torch"]["value"] == 3
    assert reporting.recorded() == {"from_numpy": 0.5, "from_torch": 3}
    reporting.clear()


# ------------------------------------------------------------------ grids, backends, history
def test_grid_runs_every_point_with_typed_values_and_keeps_each_output(project, capsys):
    code = main(["run", "01_answer", "--grid", "SCALE=1,3", "--grid", "LABEL=a,b", "--no-html"])
    assert code == 0, capsys.readouterr().err
    run_dir = only_run(project)
    payload = json.loads((run_dir / "metrics.json").read_text())
    answers = {key: entry["metrics"]["answer"]["value"] for key, entry in payload.items()}
    assert answers == {
        "01_answer[SCALE=1,LABEL=a]": 21.0,
        "01_answer[SCALE=1,LABEL=b]": 21.0,
        "01_answer[SCALE=3,LABEL=a]": 63.0,
        "01_answer[SCALE=3,LABEL=b]": 63.0,
    }
    assert len(list(run_dir.glob("01_answer[[]*].ipynb"))) == 4  # one executed copy per point


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid", "SCALE"], "expected NAME=V1,V2"),
        (["--grid", "SCALE=1,,2"], "expected NAME=V1,V2"),
        (["--grid", "SCALE=1", "--grid", "SCALE=2"], "SCALE is given twice"),
        (["--grid", "SCALE=1,x"], "SCALE"),
        (["--grid", "SCALE=1", "-p", "SCALE", "2"], "set by both -p and --grid"),
        (["--backend", "slurm"], "unknown backend 'slurm'"),
    ],
)
def test_bad_grids_and_backends_are_refused_before_running(project, capsys, argv, message):
    assert main(["run", "01_answer", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not project.runs_dir.exists() or not list(project.runs_dir.iterdir())  # nothing ran


def test_grid_on_local_processes_gives_the_inprocess_results(project, capsys):
    assert (
        main(
            [
                "run",
                "01_answer",
                "--grid",
                "SCALE=1,2,3",
                "--backend",
                "processes:2",
                "--no-html",
                "-q",
            ]
        )
        == 0
    )
    payload = json.loads((only_run(project) / "metrics.json").read_text())
    assert [e["metrics"]["answer"]["value"] for e in payload.values()] == [21.0, 42.0, 63.0]


def test_every_run_lands_in_the_history_and_shows_a_trend(project, capsys):
    from workbench import history

    for scale in ("1", "2", "4"):
        assert main(["run", "01_answer", "-p", "SCALE", scale, "--no-html", "-q"]) == 0
    path = history.database(project.runs_dir)
    trend = history.trend(path, "01_answer", "answer")
    assert trend["value"].tolist() == [21.0, 42.0, 84.0]
    assert trend["profile"].tolist() == ["custom", "full", "custom"]  # SCALE=2 is the default
    runs = history.runs(path, "01_answer")
    assert runs["parameters"].iloc[-1]["SCALE"] == 4.0 and (runs["runtime_s"] > 0).all()
    from widgets.figures import run_history

    figure = run_history(runs, title="t", y_title="s")
    assert [t["name"] for t in figure["data"]] == ["01_answer (custom)", "01_answer (full)"]
    assert len(figure["data"][0]["y"]) == 2 and len(figure["data"][1]["y"]) == 1
    capsys.readouterr()
    assert main(["history", "01_answer", "answer"]) == 0
    shown = capsys.readouterr().out
    assert "84" in shown and "▁▃█" in shown  # 21, 42, 84 on the sparkline
    assert main(["history", "01_answer", "nonsense"]) == 1
    assert "recorded metrics: answer, label" in capsys.readouterr().out


def test_failed_runs_are_recorded_without_their_missing_metrics(project):
    from workbench import history

    main(["run", "02_broken", "--no-html", "-q"])
    runs = history.runs(history.database(project.runs_dir))
    assert runs["status"].tolist() == ["failed"]
    assert history.trend(history.database(project.runs_dir), "02_broken", "runtime_s").empty


def test_a_relative_run_dir_works(project, monkeypatch):
    monkeypatch.chdir(project.root)
    assert main(["run", "01_answer", "--run-dir", "runs/mine", "--no-html", "-q"]) == 0
    payload = json.loads((project.root / "runs" / "mine" / "metrics.json").read_text())
    assert payload["01_answer"]["metrics"]["answer"]["value"] == 42.0


def test_an_empty_history_has_the_columns_a_reader_filters_on(tmp_path):
    from workbench import history

    missing = tmp_path / "runs" / "history.sqlite"
    runs = history.runs(missing)
    assert runs.empty and {"status", "notebook", "runtime_s", "git_commit"} <= set(runs.columns)
    assert history.trend(missing, "00_tour", "anything").empty
    assert history.metric_names(missing) == []
    assert not missing.exists()  # reading never creates the store


# ------------------------------------------------------------------ what an export shows
FIGURE_CELLS = (
    "import plotly.graph_objects as go\n"
    "go.Figure(go.Scatter(x=[1, 2, 3], y=[4, 1, 9], name='first-trace'))",
    "go.Figure(go.Bar(x=['a', 'b'], y=[3, 5], name='second-trace')).show()",
    "from workbench.progress import progress\nfor _ in progress(range(5), desc='loop'):\n    pass",
)


def test_executed_notebook_and_its_html_keep_every_figure_and_no_progress_widget(tmp_path):
    from plotly.offline import get_plotlyjs

    notebook = tmp_path / "01_figures.ipynb"
    write_notebook(notebook, *FIGURE_CELLS, parameters="SMOKE: bool = False  # run small\n")
    result = runner.execute(notebook, tmp_path / "out", {})
    assert result.ok, result.error

    executed = nbformat.read(tmp_path / "out" / "01_figures.ipynb", as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    # JupyterLab keeps its interactive figure; the HTML copy beside it is for everything else
    assert [f.data["application/vnd.plotly.v1+json"]["data"][0]["name"] for f in figures] == [
        "first-trace",
        "second-trace",
    ]
    assert all("Plotly.newPlot" in f.data["text/html"] for f in figures)
    assert not [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert re.fullmatch(r"loop: 5/5 in \d+\.\d s\n", streams), streams

    html = (tmp_path / "out" / "01_figures.html").read_text()
    assert html.count("Plotly.newPlot(") == 2
    first = html[html.index("Plotly.newPlot(") :]
    assert '"name":"first-trace"' in first and '"y":[4,1,9]' in first
    # plotly.js embedded once for the page (offline: never fetched), not once per figure
    bundle = get_plotlyjs()
    assert html.count(bundle[:2000]) == 1
    assert not re.search(r"<script[^>]+src=\"[^\"]*plotly", html)
    assert len(html) < len(bundle) + 500_000
