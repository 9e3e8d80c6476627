"""`python -m workbench` / `workbench`: list, run and check notebooks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from workbench import history, runner
from workbench.backends import BackendError

USER_ERRORS = (runner.RunnerError, BackendError, history.HistoryError)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 fine, 1 a notebook failed or drifted (`check`), 2 a user's mistake
    (one line on stderr, no traceback), 128 + the signal for SIGINT (130) / SIGTERM (143)."""
    parser = _parser()
    args = parser.parse_args(argv)
    project = runner.Project.find()
    with runner.interrupt_handlers():
        try:
            return args.command(args, project)
        except USER_ERRORS as error:
            print(f"workbench: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as interruption:  # Ctrl-C outside a run, or runner.Interrupted
            if not isinstance(interruption, runner.Interrupted):
                interruption = runner.Interrupted()
            print(f"workbench: {interruption}", file=sys.stderr)
            return interruption.exit_code


def _list(args: argparse.Namespace, project: runner.Project) -> int:
    notebooks = runner.resolve_notebooks(args.notebooks, project.notebooks_dir)
    for notebook in notebooks:
        print(notebook.stem)
        declared = runner.parameters(notebook)
        if not declared:
            print("    (no parameters cell)")
        width = max((len(p.name) for p in declared.values()), default=0)
        for p in declared.values():
            help_text = f"  # {p.help}" if p.help else ""
            print(f"    {p.name.ljust(width)}  {p.type:<5} = {p.default}{help_text}")
    return 0


def _run(args: argparse.Namespace, project: runner.Project) -> int:
    notebooks = runner.resolve_notebooks(args.notebooks, project.notebooks_dir)
    _, results = runner.run(
        notebooks,
        [tuple(p) for p in args.parameter],
        smoke=args.smoke,
        grid=args.grid,
        backend=args.backend,
        project=project,
        run_dir=Path(args.run_dir) if args.run_dir else None,
        progress=not args.quiet,
        html=not args.no_html,
        timeout=args.timeout,
    )
    failed = [r.notebook for r in results if not r.ok]
    if failed:
        print(f"workbench: {len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _check(args: argparse.Namespace, project: runner.Project) -> int:
    clean = runner.check(
        Path(args.run) if args.run else None,
        project=project,
        update_baselines=args.update_baselines,
    )
    return 0 if clean else 1


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value != value or value < 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value or None  # 0: no limit


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values) -> str:
    """A metric's trend in one line of block characters (flat when it does not move)."""
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        return ""  # a text metric has no trend line
    low, high = min(values), max(values)
    if high - low <= 1e-12 * max(abs(high), 1.0):
        return SPARK[3] * len(values)
    return "".join(SPARK[round((v - low) / (high - low) * (len(SPARK) - 1))] for v in values)


def _history(args: argparse.Namespace, project: runner.Project) -> int:
    path = history.database(project.runs_dir)
    if not path.exists():
        print(f"no run history yet ({path}): `python -m workbench run` records every run")
        return 0
    notebooks = (
        runner.resolve_notebooks([args.notebook], project.notebooks_dir) if args.notebook else []
    )
    stem = notebooks[0].stem if notebooks else None
    if not stem:
        frame = history.runs(path, profile=args.profile).tail(args.last)
        if frame.empty:
            print("no runs recorded")
            return 0
        frame["commit"] = frame["git_commit"].fillna("").str[:8]
        shown = frame[
            [
                "recorded_at",
                "notebook",
                "profile",
                "status",
                "commit",
                "runtime_s",
                "peak_memory_mb",
            ]
        ]
        print(shown.to_string(index=False))
        return 0
    if not args.metric:
        names = history.metric_names(path, stem)
        if not names:
            print(f"no metrics recorded for {stem}")
            return 0
        print(f"{stem}: metrics recorded (plus runtime_s and peak_memory_mb)")
        for name in names:
            trend = history.trend(path, stem, name, args.profile)
            line = sparkline(trend["value"].tail(args.last)) if not trend.empty else ""
            latest = f"{trend['value'].iloc[-1]:.6g}" if not trend.empty else "-"
            print(f"  {name:<40} {len(trend):>4} runs  latest {latest:<12} {line}")
        return 0
    trend = history.trend(path, stem, args.metric, args.profile).tail(args.last)
    if trend.empty:
        known = ", ".join(history.metric_names(path, stem)) or "none"
        print(f"no values of {args.metric!r} for {stem} (recorded metrics: {known})")
        return 1
    trend = trend.assign(change=trend["value"].diff())
    table = trend[["recorded_at", "profile", "commit", "value", "change"]]
    with pd.option_context("display.float_format", "{:.6g}".format):
        print(table.to_string(index=False))
    print(f"{stem} {args.metric}: {sparkline(trend['value'])}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench", description="Run the workbench notebooks and check their metrics."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="notebooks with their parameters")
    listing.add_argument("notebooks", nargs="*", help="names, stems or paths (default: all)")
    listing.set_defaults(command=_list)

    running = commands.add_parser(
        "run", help="execute notebooks with papermill into runs/<timestamp>/"
    )
    running.add_argument("notebooks", nargs="*", help="names, stems or paths (default: all)")
    running.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter (parsed with the type the notebook declares); repeatable",
    )
    running.add_argument("--smoke", action="store_true", help="shorthand for -p SMOKE True")
    running.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="run every notebook at each value (several --grid: every combination)",
    )
    running.add_argument(
        "--backend",
        default="inprocess",
        help="where the executions run: inprocess (default), processes[:N], dask[:N] "
        "(a local cluster) or dask://HOST:PORT (a running scheduler)",
    )
    running.add_argument(
        "--run-dir",
        help="write into this folder instead of a new one (its earlier results are kept; "
        "rerunning a notebook it already holds is refused)",
    )
    running.add_argument(
        "--timeout",
        type=_seconds,
        default=runner.DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"stop a cell that runs longer (default {runner.DEFAULT_TIMEOUT_S:g}; 0: no limit)",
    )
    running.add_argument("--no-html", action="store_true", help="skip the HTML export")
    running.add_argument("-q", "--quiet", action="store_true", help="no per-cell progress bar")
    running.set_defaults(command=_run)

    checking = commands.add_parser(
        "check",
        help="compare a run's metrics with the baselines; each notebook's metrics, baselines, "
        "tolerances and verdicts go to <run folder>/<notebook>.metrics.csv",
    )
    checking.add_argument("--run", help="the run folder (default: the latest in runs/)")
    checking.add_argument(
        "--update-baselines",
        action="store_true",
        help="rewrite tests/baselines/ from the run instead of comparing",
    )
    checking.set_defaults(command=_check)

    past = commands.add_parser(
        "history", help="recorded runs; a notebook's metrics; one metric's trend across runs"
    )
    past.add_argument("notebook", nargs="?", help="a notebook (name, stem or path)")
    past.add_argument("metric", nargs="?", help="a metric name, runtime_s or peak_memory_mb")
    past.add_argument("--profile", choices=("smoke", "full", "custom"), help="only this profile")
    past.add_argument(
        "--last", type=_positive, default=20, help="how many runs to show (default 20)"
    )
    past.set_defaults(command=_history)
    return parser


if __name__ == "__main__":
    sys.exit(main())
