"""What notebook 02's explorer and figures show, computed from a study: the figures in
`widgets` take these results and never touch a solver."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.diffusion.guidance import GUIDANCE
from workbench.diffusion.guidance_experiments import (
    TARGET_LABELS,
    error_grid,
    sweep,
    target_id,
    target_sweep,
)
from workbench.diffusion.guidance_metrics import metrics, target_metrics
from workbench.diffusion.guidance_study import Diverged, GuidanceStudy
from workbench.diffusion.guidance_targets import target_density
from workbench.diffusion.schedules import NoiseSchedule
from workbench.diffusion.smc import ParticleResult

N_SHOWN = 1500  # samples drawn per panel
# the precision-diversity curve: one solve per scale, so fewer points than the study's sweep
CURVE_SCALES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0)
# below this an update needs no "computing..." notice: a reader hardly waits
NOTICEABLE_SECONDS = 0.5


@dataclass(frozen=True)
class SamplePanel:
    """One scale's samples (None when the solve diverged) over its target's log-density."""

    scale: float
    density: tuple[np.ndarray, np.ndarray, np.ndarray]
    samples: np.ndarray | None
    diverged: str | None


@dataclass(frozen=True)
class GuidanceView:
    method: str
    label: str
    scale: float
    solver: str  # the selected ODE solver (particle methods sample with their own SDE)
    particle: bool
    target: str  # the target's kind: "guidance" or "autoguidance"
    target_label: str
    steps: int
    panel: SamplePanel
    metrics: dict[str, float]
    target_metrics: dict[str, float]
    curve: pd.DataFrame
    target_curve: pd.DataFrame
    errors: pd.DataFrame  # scale x NFE solver errors
    errors_method: str  # whose errors: the method's, or CFG's for particle methods
    smc: ParticleResult
    schedule: NoiseSchedule
    n_samples: int


def sample_panel(study, method: str, scale: float, solver: str, steps: int) -> SamplePanel:
    run = study.run(method, scale, solver, steps)
    xs, ys, log_p = target_density(study.problem, method, scale)
    diverged = run.message if isinstance(run, Diverged) else None
    samples = None if diverged else run.x[:N_SHOWN].numpy()
    return SamplePanel(scale, (xs.numpy(), ys.numpy(), log_p.numpy()), samples, diverged)


def sample_panels(study, method: str, scales, solver: str, steps: int) -> list[SamplePanel]:
    return [sample_panel(study, method, w, solver, steps) for w in scales]


@dataclass(frozen=True)
class ViewGrids:
    """What the explorer's error heatmap and precision-diversity curve cover."""

    heatmap_scales: tuple[float, ...]
    heatmap_nfes: tuple[int, ...]
    curve_scales: tuple[float, ...] = CURVE_SCALES


def _errors_method(method: str) -> str:
    """Whose solver errors the view shows: the method's, or CFG's for a particle method
    (an SDE with weights has no ODE solution to compare with)."""
    return "cfg" if GUIDANCE[method].particle else method


def view_seconds(
    study: GuidanceStudy, grids: ViewGrids, method: str, scale: float, solver: str, steps: int
) -> float | None:
    """About how many seconds `guidance_view` of these values computes before it can show
    them (a first visit of a method, solver or step count: solves, DPM-Solver-v3 statistics,
    exact references); None when nearly everything is stored."""
    runs = [(method, w, solver, steps) for w in {scale, *grids.curve_scales}]
    runs.append(("fk_smc", scale, solver, steps))
    errors_method = _errors_method(method)
    errors = [
        (errors_method, w, solver, n) for w in grids.heatmap_scales for n in grids.heatmap_nfes
    ]
    seconds = study.seconds_to_compute(runs, errors)
    return seconds if seconds >= NOTICEABLE_SECONDS else None


def guidance_view(
    study: GuidanceStudy, grids: ViewGrids, method: str, scale: float, solver: str, steps: int
) -> GuidanceView:
    """Everything the explorer's panels show for one setting of its controls."""
    spec = GUIDANCE[method]
    errors_method = _errors_method(method)
    return GuidanceView(
        method=method,
        label=GUIDANCE.label(method),
        scale=scale,
        solver=solver,
        particle=spec.particle,
        target=spec.target,
        target_label=TARGET_LABELS[target_id(method)],
        steps=steps,
        panel=sample_panel(study, method, scale, solver, steps),
        metrics=metrics(study, method, scale, solver, steps),
        target_metrics=target_metrics(study, method, scale),
        curve=sweep(study, method, solver, steps, grids.curve_scales, distances=False),
        target_curve=target_sweep(study, method, grids.curve_scales, distances=False),
        errors=error_grid(study, errors_method, solver, grids.heatmap_scales, grids.heatmap_nfes),
        errors_method=errors_method,
        smc=study.run("fk_smc", scale, solver, steps),
        schedule=study.problem.schedule,
        n_samples=study.n_samples,
    )
