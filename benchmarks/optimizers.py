"""The optimizer race as numbers: steps and seconds to target, per-step cost, state memory.

For the rotated kappa = 1e3 Kronecker quadratic (16 x 16, target 1e-6 of the starting loss)
and the teacher-student MLP (target 1e-3): every optimizer's learning rate is tuned on the
grid 2^-12..2^2 (the lr sweep of notebook 05, cached on disk), then each runs `--repeats`
times with a clock and the fastest repeat is reported: steps and seconds to the target, ms
per step, the time of optimizer.step() relative to Adam's, and the optimizer state in bytes
and per parameter byte. Last, our SOAP, PSGD-Kron and Shampoo against pytorch_optimizer's
on the same MLP gradients: ms per optimizer.step().

Run: python benchmarks/optimizers.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from workbench.optim import SOAP, PSGDKron, Shampoo
from workbench.optim.problems import TeacherStudentMLP
from workbench.optim.race import race, race_table
from workbench.optim.study import race_setups, race_sweeps, study_size

RACED = ("quadratic", "mlp")  # notebook 05's race problems the benchmark times (full size)


def fastest_race(problem, lrs: dict[str, float], steps: int, repeats: int) -> dict:
    """Each optimizer's fastest of `repeats` timed runs (the losses are identical)."""
    best: dict = {}
    for _ in range(repeats):
        for name, trace in race(problem, lrs, steps, progress=False).items():
            if name not in best or trace.seconds[-1] < best[name].seconds[-1]:
                best[name] = trace
    return best


def race_tables(repeats: int) -> dict[str, pd.DataFrame]:
    size = study_size(smoke=False)
    setups = race_setups(size)
    sweeps = race_sweeps(size)
    tables = {}
    for key in RACED:
        problem = setups[key].build(seed=0)
        lrs = {name: sweeps[key].tuned(name).lr for name in sweeps[key].optimizers}
        traces = fastest_race(problem, lrs, setups[key].steps, repeats)
        tables[setups[key].label] = race_table(traces, problem.target, problem.n_params * 8)
    return tables


def peer_step_times(steps: int = 100, repeats: int = 3) -> pd.DataFrame:
    """ms per optimizer.step() on the MLP's gradients: ours against pytorch_optimizer's."""
    import pytorch_optimizer

    pairs = {
        "SOAP": (
            lambda p: SOAP(p, lr=1e-3),
            lambda p: pytorch_optimizer.SOAP(p, lr=1e-3),
        ),
        "PSGD-Kron (float64 preconditioner)": (
            lambda p: PSGDKron(p, lr=1e-4),
            lambda p: pytorch_optimizer.Kron(
                p,
                lr=1e-4,
                pre_conditioner_update_probability=1.0,
                precondition_dtype=torch.float64,
            ),
        ),
        "Shampoo (no grafting, no momentum)": (
            lambda p: Shampoo(p, lr=1e-4, betas=(0.0, 1.0), grafting="none"),
            lambda p: pytorch_optimizer.Shampoo(p, lr=1e-4),
        ),
    }
    problem = TeacherStudentMLP()
    rows = []
    for method, (ours, theirs) in pairs.items():
        ms = {
            label: _ms_per_step(problem, make, steps, repeats)
            for label, make in (("workbench", ours), ("pytorch_optimizer", theirs))
        }
        rows.append(
            {
                "method": method,
                **{f"{k} ms/step": v for k, v in ms.items()},
                "ratio (ours/theirs)": ms["workbench"] / ms["pytorch_optimizer"],
            }
        )
    return pd.DataFrame(rows).set_index("method")


def _ms_per_step(problem, make, steps: int, repeats: int) -> float:
    """Best of `repeats` mean times of optimizer.step() alone, in milliseconds."""
    best = float("inf")
    for _ in range(repeats):
        params = problem.init_params()
        opt = make(params)
        total = 0.0
        for _ in range(steps):
            problem.loss_and_grad(params)
            start = time.perf_counter()
            opt.step()
            total += time.perf_counter() - start
        best = min(best, total / steps)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pd.set_option("display.width", 160)
    formats = {
        "lr": "{:.3g}".format,
        "final loss": "{:.1e}".format,
        "seconds to target": "{:.3f}".format,
        "ms per step": "{:.2f}".format,
        "step overhead vs adam": "{:.1f}x".format,
        "state / params": "{:.2f}".format,
    }
    for title, table in race_tables(args.repeats).items():
        table = table.copy()
        table["steps to target"] = table["steps to target"].map(
            lambda s: "not reached" if pd.isna(s) else str(int(s))
        )
        print(f"{title}: fastest of {args.repeats} timed runs at each tuned learning rate")
        print(table.to_string(formatters=formats, na_rep="-"))
        print()
    print("optimizer.step() on the MLP's gradients, best of 3 x 100 steps")
    print(peer_step_times().to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
