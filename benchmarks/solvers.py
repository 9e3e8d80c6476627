"""Solver accuracy and overhead against diffusers, on exact problems.

For the 8-mode ring (std 0.1) and a mixture with unequal widths and weights: the mean L2 error
to the exact ODE solution at NFE 5, 10 and 20 of every workbench solver x grid (named grids and
grids fitted for a few solvers) and of every diffusers configuration (DPM-Solver++ 2M/3M,
UniPC bh2 2/3 with default, Karras and uniform-lambda spacings, DEIS 2/3; all ending at
sigma_min like the reference), then the ratio of the bests. Last, the per-step overhead of a
solve with a trivial model: ours against diffusers' step() loop.

Run: python benchmarks/solvers.py [--samples 2000]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from workbench.diffusion import GRIDS, DiffusionModel, VPSchedule, fit_grid, sample
from workbench.diffusion.peers import diffusers_configurations, run_diffusers
from workbench.diffusion.study import SOLVER_PROBLEMS, SolverStudy, solver_names, study_for
from workbench.metrics import mean_l2_error

NFES = (5, 10, 20)
FITTED_FOR = ("dpmpp_2m", "unipc_bh2", "deis")


def workbench_errors(study: SolverStudy) -> pd.DataFrame:
    rows = []
    for solver in solver_names():
        per_step = study.solve(solver, 1).nfe
        for nfe in NFES:
            steps = nfe // per_step
            if steps < 1:
                continue
            grids = dict.fromkeys(GRIDS)
            if solver in FITTED_FOR:
                grids["fitted"] = fit_grid(study.model, solver=solver, steps=steps, seed=1000)
            for name, grid in grids.items():
                error = study.error(solver, steps, grid if grid is not None else name)
                rows.append({"config": f"{solver} / {name}", "nfe": nfe, "error": error})
    return pd.DataFrame(rows)


def diffusers_errors(study: SolverStudy) -> pd.DataFrame:
    rows = []
    for name, make in diffusers_configurations().items():
        for nfe in NFES:
            x = run_diffusers(make(), study.model, study.x_T, nfe)
            # a configuration that returns NaN is reported, not allowed to stop the run
            finite = bool(torch.isfinite(x).all())
            error = mean_l2_error(x, study.reference) if finite else float("nan")
            rows.append({"config": name, "nfe": nfe, "error": error})
    return pd.DataFrame(rows)


def best_per_nfe(errors: pd.DataFrame) -> pd.DataFrame:
    errors = errors.dropna(subset=["error"])
    best = errors.loc[errors.groupby("nfe").error.idxmin()]
    return best.set_index("nfe")


def overhead(n: int = 4000, steps: int = 50, repeats: int = 3) -> pd.DataFrame:
    """Milliseconds per step of a solve whose model costs almost nothing: the overhead."""
    import diffusers

    schedule = VPSchedule.linear_ddpm()
    trivial = DiffusionModel(lambda x, t: 0.5 * x, "data", schedule, "trivial")
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # method -> (our solver, diffusers scheduler class), both ending at sigma_min
    pairs = {
        "DPM++ 2M": ("dpmpp_2m", diffusers.DPMSolverMultistepScheduler),
        "UniPC bh2": ("unipc_bh2", diffusers.UniPCMultistepScheduler),
    }
    rows = []
    for method, (solver, scheduler) in pairs.items():
        ours = _ms_per_step(
            lambda solver=solver: sample(trivial, x_T, solver=solver, steps=steps), steps, repeats
        )
        theirs = _ms_per_step(
            lambda scheduler=scheduler: run_diffusers(
                scheduler(final_sigmas_type="sigma_min"), trivial, x_T, steps, float64=False
            ),
            steps,
            repeats,
        )
        rows.append(
            {
                "method": method,
                "workbench ms/step": ours,
                "diffusers ms/step": theirs,
                "ratio (ours/theirs)": ours / theirs,
            }
        )
    return pd.DataFrame(rows).set_index("method")


def _ms_per_step(run, steps: int, repeats: int) -> float:
    """Best of `repeats` wall times of `run()`, per step, in milliseconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    pd.set_option("display.width", 140)
    summary = []
    for problem in SOLVER_PROBLEMS:
        study = study_for(problem, args.samples, 0)
        their_errors = diffusers_errors(study)
        for row in their_errors[their_errors.error.isna()].itertuples():
            print(f"{problem}: diffusers {row.config} at NFE {row.nfe} returned NaN")
        our_errors = workbench_errors(study)
        ours, theirs = best_per_nfe(our_errors), best_per_nfe(their_errors)
        hand = best_per_nfe(our_errors[~our_errors.config.str.endswith("/ fitted")])
        for nfe in NFES:
            summary.append(
                {
                    "problem": problem,
                    "NFE": nfe,
                    "best workbench": ours.loc[nfe, "config"],
                    "error": ours.loc[nfe, "error"],
                    "best diffusers": theirs.loc[nfe, "config"],
                    "diffusers error": theirs.loc[nfe, "error"],
                    "ratio (ours/theirs)": ours.loc[nfe, "error"] / theirs.loc[nfe, "error"],
                    "best on a hand grid": hand.loc[nfe, "config"],
                    "its ratio": hand.loc[nfe, "error"] / theirs.loc[nfe, "error"],
                }
            )
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print()
    print(overhead().to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
