"""The sentences notebook 01 writes from its measurements (Markdown, numbers filled in).

Each takes what the study computed and returns a paragraph; numbers go through `readable`
and solvers appear by their labels, never their registry ids.
"""

from __future__ import annotations

import pandas as pd
import torch

from workbench.claims import readable
from workbench.diffusion.dpm_solver_v3 import EMS
from workbench.diffusion.sampling import SOLVERS
from workbench.diffusion.study import SolverStudy
from workbench.metrics import mean_l2_error


def count_text(n: int, noun: str) -> str:
    """'1 step', '2 steps', '0 samples'."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def study_paragraph(study: SolverStudy, solvers, reference_seconds: float) -> str:
    """What the study solves: its schedule, starting points, reference time and solvers."""
    labels = ", ".join(SOLVERS.label(s) for s in solvers)
    return (
        f"The {study.schedule.name} schedule, {count_text(study.n_samples, 'starting point')}; "
        f"the exact solution took {readable(reference_seconds)} s. Solvers: {labels}."
    )


def best_solvers_paragraph(summary: pd.DataFrame, baseline: str = "ddim") -> str:
    """Which solver is best at NFE 5 and 10 (a `SolverStudy.summary`), against `baseline`."""

    def best(nfe: int) -> str:
        column = summary[f"NFE {nfe}"]
        return (
            f"{SOLVERS.label(column.idxmin())} ({readable(column.min())}, against "
            f"{readable(column[baseline])} for {SOLVERS.label(baseline)})"
        )

    column = summary["NFE 10"]
    return (
        f"At NFE 5 the best solver is {best(5)}; at NFE 10 it is {best(10)}. At NFE 10 "
        f"{SOLVERS.label(baseline)}'s error is {readable(column[baseline] / column.min())}x "
        f"that of {SOLVERS.label(column.idxmin())}."
    )


def clipping_paragraph(clipped: torch.Tensor, ours: torch.Tensor, reference: torch.Tensor) -> str:
    """diffusers' default DDIM (which clips x_0 to [-1, 1]) against ours, both at 10 steps."""
    return (
        f"diffusers' default DDIM clips its $x_0$ prediction to $[-1, 1]$: its samples reach at "
        f"most |x| = {readable(clipped.abs().max().item())}, and its error is "
        f"{readable(mean_l2_error(clipped, reference))} against ours, "
        f"{readable(mean_l2_error(ours, reference))}."
    )


def final_step_paragraph(theirs: torch.Tensor, ours: torch.Tensor, reference: torch.Tensor) -> str:
    """diffusers' UniPC bh1 stepping to sigma = 0 against ours."""

    def non_finite(x: torch.Tensor) -> int:
        return int((~torch.isfinite(x)).any(1).sum().item())

    n = len(theirs)
    return (
        f"Stepping to σ = 0, diffusers' UniPC (bh1) leaves {non_finite(theirs)} of "
        f"{count_text(n, 'sample')} non-finite; ours leaves {non_finite(ours)}, with error "
        f"{readable(mean_l2_error(ours, reference))}."
    )


def ems_paragraph(ems: EMS, gains: dict[int, float]) -> str:
    """How the statistics were computed, and DPM-Solver-v3's gain over DPM-Solver++(2M)."""
    ratios = ", ".join(f"{readable(g)}x at NFE {nfe}" for nfe, g in gains.items())
    return (
        f"The statistics on {count_text(len(ems.lambdas), 'log-SNR point')} took "
        f"{readable(ems.seconds)} s. {SOLVERS.label('dpmpp_2m')}'s error over "
        f"{SOLVERS.label('dpm_solver_v3')}'s: {ratios}."
    )
