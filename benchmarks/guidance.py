"""Solver error under classifier-free guidance: workbench solvers against diffusers' DPM-Solver++.

One CFG model (noise form, exact class-conditional mixture, class 1 of `two_class`) per guidance
scale; every solver starts from the same noise and is compared with the exact solution of that
guided ODE (DOP853, tolerance 1e-11, ending at diffusers' sigma_min). Workbench: DDIM,
DPM-Solver++(2M), UniPC-bh2 and DPM-Solver-v3 (statistics per guided model, from its own
samples) on the uniform-logSNR grid. diffusers: DPMSolverMultistepScheduler (DPM-Solver++ 2M,
final_sigmas_type="sigma_min") with its default, Karras and uniform-lambda spacings, driven by
the same model. Printed: the scale x NFE error grid, then per cell the ratio of each workbench
solver to diffusers' best spacing. A last table checks that the two implementations agree on
identical grids, so the ratios measure grids and algorithms, not bugs.

Run: python benchmarks/guidance.py [--samples 1000] [--scales 1 3 7.5 15] [--nfes 5 10 20]
"""

from __future__ import annotations

import argparse
import math
import time

import pandas as pd
import torch

from workbench.diffusion.guidance_study import GuidanceStudy
from workbench.diffusion.peers import crosscheck, run_diffusers
from workbench.metrics import mean_l2_error

OURS = ("ddim", "dpmpp_2m", "unipc_bh2", "dpm_solver_v3")
SPACINGS = {
    "default": {},
    "karras": {"use_karras_sigmas": True},
    "lu-lambdas": {"use_lu_lambdas": True},
}
DIFFUSERS = {f"diffusers DPM++ 2M {name}": options for name, options in SPACINGS.items()}


def diffusers_error(study: GuidanceStudy, scale: float, nfe: int, options: dict) -> float:
    import diffusers

    scheduler = diffusers.DPMSolverMultistepScheduler(final_sigmas_type="sigma_min", **options)
    x = run_diffusers(scheduler, study.model("cfg", scale), study.x_T, nfe)
    # a configuration that returns NaN is reported, not allowed to stop the run
    if not torch.isfinite(x).all():
        return math.nan
    return mean_l2_error(x, study.reference("cfg", scale))


def error_grid(study: GuidanceStudy, scales, nfes) -> pd.DataFrame:
    rows = []
    for scale in scales:
        start = time.perf_counter()
        for nfe in nfes:
            row = {"w": scale, "NFE": nfe}
            row |= {solver: study.error("cfg", scale, solver, nfe) for solver in OURS}
            row |= {name: diffusers_error(study, scale, nfe, kw) for name, kw in DIFFUSERS.items()}
            rows.append(row)
        print(
            f"  w={scale:g}: {time.perf_counter() - start:.1f} s (reference, v3 statistics, solves)"
        )
    return pd.DataFrame(rows).set_index(["w", "NFE"])


def ratios(errors: pd.DataFrame) -> pd.DataFrame:
    """Each workbench solver's error over diffusers' best spacing in that cell (< 1: ours wins)."""
    best = errors[list(DIFFUSERS)].min(axis=1)
    table = pd.DataFrame({f"{solver} / diffusers best": errors[solver] / best for solver in OURS})
    best_name = errors[list(DIFFUSERS)].idxmin(axis=1)
    table["diffusers best spacing"] = best_name.str.removeprefix("diffusers DPM++ 2M ")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0, 7.5, 15.0])
    parser.add_argument("--nfes", type=int, nargs="+", default=[5, 10, 20])
    args = parser.parse_args()
    pd.set_option("display.width", 160)
    study = GuidanceStudy.two_class(n_samples=args.samples, n_error=args.samples)
    print(f"CFG on class 1 of two_class, {args.samples} starting points, {study.problem.schedule}")
    errors = error_grid(study, args.scales, args.nfes)
    print("\nmean L2 error to the exact guided ODE solution")
    print(errors.to_string(float_format=lambda v: f"{v:.2e}"))
    print("\nratio to diffusers' best DPM++ 2M spacing (< 1: the workbench solver is closer)")
    print(ratios(errors).to_string(float_format=lambda v: f"{v:.2f}"))
    scale = max(args.scales)
    agreement = crosscheck(study.model("cfg", scale), study.x_T[:256], 10)
    print(f"\nsame grids, same CFG model (w={scale:g}, 10 steps): max |ours - diffusers|")
    print(agreement.to_string(float_format=lambda v: f"{v:.1e}"))


if __name__ == "__main__":
    main()
