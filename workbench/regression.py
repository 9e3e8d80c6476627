"""Baselines: the metric values a notebook is expected to reproduce, and the drift check.

`tests/baselines/<notebook>.json` holds, per profile ("smoke" for SMOKE=True, "full" for the
notebook's defaults), each metric's expected value and tolerances:

    {"notebook": "00_tour",
     "profiles": {"smoke": {"score_max_abs_error": {"value": 3e-16, "atol": 1e-12, "rtol": 1e-6}}}}

A run with any other parameter changed is profile "custom" and has no baseline: the check
names it as skipped rather than comparing it to numbers it was never meant to reproduce.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CUSTOM_PROFILE = "custom"


@dataclass(frozen=True)
class Drift:
    notebook: str
    profile: str
    metric: str
    expected: Any
    actual: Any
    reason: str

    def describe(self) -> str:
        return (
            f"{self.notebook} [{self.profile}] {self.metric}: expected {_fmt(self.expected)}, "
            f"actual {_fmt(self.actual)} ({self.reason})"
        )


@dataclass
class NotebookCheck:
    notebook: str
    profile: str
    n_metrics: int
    drifts: list[Drift]
    skipped: str | None = None  # why nothing was compared

    @property
    def ok(self) -> bool:
        return self.skipped is None and not self.drifts

    def summary(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        missing = [d for d in self.drifts if d.metric == "*"]
        if missing:
            return missing[0].reason
        if self.drifts:
            return f"{len(self.drifts)} of {self.n_metrics} drifted"
        return f"{self.n_metrics} within baseline"


def baseline_path(baselines_dir: Path, notebook: str) -> Path:
    return Path(baselines_dir) / f"{notebook}.json"


def load_baseline(baselines_dir: Path, notebook: str) -> dict[str, dict[str, dict[str, Any]]]:
    path = baseline_path(baselines_dir, notebook)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data.get("profiles", {})


def within_tolerance(expected: Any, actual: Any, atol: float, rtol: float) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if not (isinstance(expected, int | float) and isinstance(actual, int | float)):
        return expected == actual
    if not (math.isfinite(expected) and math.isfinite(actual)):
        return False
    return abs(actual - expected) <= atol + rtol * abs(expected)


def compare(
    notebook: str, profile: str, expected: dict[str, dict[str, Any]], actual: dict[str, dict]
) -> list[Drift]:
    """Every way `actual` (name -> entry with "value") departs from `expected`."""
    drifts = []
    for metric, spec in expected.items():
        if metric not in actual:
            drifts.append(Drift(notebook, profile, metric, spec["value"], None, "not recorded"))
            continue
        value = actual[metric]["value"]
        atol, rtol = spec.get("atol", 0.0), spec.get("rtol", 0.0)
        if not within_tolerance(spec["value"], value, atol, rtol):
            tolerance = f"atol {atol:g}, rtol {rtol:g}" if "atol" in spec else "exact"
            drifts.append(
                Drift(notebook, profile, metric, spec["value"], value, f"outside {tolerance}")
            )
    for metric, entry in actual.items():
        if metric not in expected:
            drifts.append(
                Drift(
                    notebook,
                    profile,
                    metric,
                    None,
                    entry["value"],
                    "no baseline: run `python -m workbench check --update-baselines`",
                )
            )
    return drifts


def check_notebook(
    baselines_dir: Path, notebook: str, profile: str, metrics: dict[str, dict]
) -> NotebookCheck:
    if profile == CUSTOM_PROFILE:
        return NotebookCheck(notebook, profile, len(metrics), [], "custom parameters")
    expected = load_baseline(baselines_dir, notebook).get(profile)
    if expected is None:
        drift = Drift(
            notebook,
            profile,
            "*",
            None,
            f"{len(metrics)} metrics",
            f"no {profile} baseline in {baseline_path(baselines_dir, notebook)}",
        )
        return NotebookCheck(notebook, profile, len(metrics), [drift])
    drifts = compare(notebook, profile, expected, metrics)
    return NotebookCheck(notebook, profile, len(expected), drifts)


def update_baseline(
    baselines_dir: Path, notebook: str, profile: str, metrics: dict[str, dict]
) -> Path:
    """Rewrite one profile of a notebook's baseline with these metrics and tolerances."""
    if profile == CUSTOM_PROFILE:
        raise ValueError(f"{notebook}: a run with custom parameters cannot become a baseline")
    path = baseline_path(baselines_dir, notebook)
    profiles = load_baseline(baselines_dir, notebook)
    profiles[profile] = {name: dict(entry) for name, entry in metrics.items()}
    ordered = {key: profiles[key] for key in sorted(profiles)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"notebook": notebook, "profiles": ordered}, indent=2) + "\n")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if isinstance(value, str) else str(value)
