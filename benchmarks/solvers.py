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
from workbench.diffusion.study import SolverStudy, solver_names
from workbench.metrics import mean_l2_error
from workbench.toy import GaussianMixture

NFES = (5, 10, 20)
FITTED_FOR = ("dpmpp_2m", "unipc_bh2", "deis")
PROBLEMS = {
    "ring (std 0.1)": GaussianMixture.ring,
    "unequal widths/weights": GaussianMixture.unequal,
}


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
    """Seconds per step beyond the model call, with a model that costs almost nothing."""
    import diffusers

    schedule = VPSchedule.linear_ddpm()
    trivial = DiffusionModel(lambda x, t: 0.5 * x, "data", schedule, "trivial")
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    timings = {}
    for label, run in {
        "workbench dpmpp_2m": lambda: sample(trivial, x_T, solver="dpmpp_2m", steps=steps),
        "diffusers DPM++ 2M": lambda: run_diffusers(
            diffusers.DPMSolverMultistepScheduler(final_sigmas_type="sigma_min"),
            trivial,
            x_T,
            steps,
            float64=False,
        ),
        "workbench unipc_bh2": lambda: sample(trivial, x_T, solver="unipc_bh2", steps=steps),
        "diffusers UniPC bh2": lambda: run_diffusers(
            diffusers.UniPCMultistepScheduler(final_sigmas_type="sigma_min"),
            trivial,
            x_T,
            steps,
            float64=False,
        ),
    }.items():
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        timings[label] = best / steps * 1e3
    pairs = {
        "DPM++ 2M": ("workbench dpmpp_2m", "diffusers DPM++ 2M"),
        "UniPC bh2": ("workbench unipc_bh2", "diffusers UniPC bh2"),
    }
    rows = [
        {
            "method": method,
            "workbench ms/step": timings[ours],
            "diffusers ms/step": timings[theirs],
            "ratio (ours/theirs)": timings[ours] / timings[theirs],
        }
        for method, (ours, theirs) in pairs.items()
    ]
    return pd.DataFrame(rows).set_index("method")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    pd.set_option("display.width", 140)
    summary = []
    for problem, make in PROBLEMS.items():
        study = SolverStudy(make(), VPSchedule.linear_ddpm(), n_samples=args.samples, seed=0)
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
