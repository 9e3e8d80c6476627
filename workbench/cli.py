"""`python -m workbench` / `workbench`: list, run and check notebooks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench import runner


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    project = runner.Project.find()
    try:
        return args.command(args, project)
    except runner.RunnerError as error:
        print(f"workbench: error: {error}", file=sys.stderr)
        return 2


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
        project=project,
        run_dir=Path(args.run_dir) if args.run_dir else None,
        progress=not args.quiet,
        html=not args.no_html,
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
    running.add_argument("--run-dir", help="write into this folder instead of a new one")
    running.add_argument("--no-html", action="store_true", help="skip the HTML export")
    running.add_argument("-q", "--quiet", action="store_true", help="no per-cell progress bar")
    running.set_defaults(command=_run)

    checking = commands.add_parser("check", help="compare a run's metrics with the baselines")
    checking.add_argument("--run", help="the run folder (default: the latest in runs/)")
    checking.add_argument(
        "--update-baselines",
        action="store_true",
        help="rewrite tests/baselines/ from the run instead of comparing",
    )
    checking.set_defaults(command=_check)
    return parser


if __name__ == "__main__":
    sys.exit(main())
