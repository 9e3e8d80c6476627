"""Vectorized learning-rate sweeps against a sequential loop, and notebook 03's full runtime.

The same grid (widths x learning rates x seeds, muP with Adam on the default task) is trained
two ways:
  vectorized  workbench.scaling: all learning rates and seeds of one width as one batched
              model (bmm over runs, one backward, one optimizer update of one buffer)
  sequential  one run at a time: per-tensor leaves, torch.optim.Adam with the rules'
              per-parameter learning rates, the same forward pass and minibatches
Both compute the same numbers: the table gives seconds, the ratio, the median difference of
the final losses and the largest difference of the fitted optimal learning rates. Timings
on a shared machine are noisy: the ratio is measured in one run.
Last, notebook 03 is executed in full mode with an empty sweep cache (a fresh
WORKBENCH_CACHE), as CI would, and its runtime printed (target: under 3 minutes).

The speed-up is largest where per-operation overhead dominates (narrow models: one batched
operation replaces R small ones); at width 256 both loops are bound by the same arithmetic
(matmul flops, the optimizer's passes over memory), so the grid's ratio is lower.
In float32 the two orders of summation round differently, and a run near the edge of
stability amplifies that over 150 steps (at width 128, lr 2^-2: 4e-3 in float32, 5e-14 in
float64; tests/test_scaling.py asserts the float64 agreement).

Run: python benchmarks/sweeps.py [--steps N] [--dtype float64] [--skip-notebook]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.scaling import (
    build_model,
    forward,
    get_task,
    init_params,
    optimal_lr,
    train_runs,
)
from workbench.scaling.training import DATA_SEED_OFFSET, DTYPES

GRIDS = {  # name -> (widths, log2 lr range, seeds, steps)
    "width 64, 12 lrs x 2 seeds": ((64,), (-12, -1), (0, 1), 100),
    # notebook 03's muP + Adam sweep
    "widths 16-256, 12 lrs x 2 seeds": ((16, 32, 64, 128, 256), (-12, -1), (0, 1), 150),
}
BATCH = 16


def vectorized(widths, lrs, seeds, steps, task, dtype) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    finals = []
    for width in widths:
        model = build_model(width=width, d_in=task.d_in, d_out=task.d_out, parametrization="mup")
        run_lrs = [lr for lr in lrs for _ in seeds]
        run_seeds = [s for _ in lrs for s in seeds]
        result = train_runs(
            model,
            task,
            optimizer="adam",
            lrs=run_lrs,
            seeds=run_seeds,
            steps=steps,
            batch_size=BATCH,
            dtype=dtype,
        )
        finals.append(result.final_loss)
    return time.perf_counter() - start, np.concatenate(finals)


def sequential(widths, lrs, seeds, steps, task, dtype) -> tuple[float, np.ndarray]:
    torch_dtype = DTYPES[dtype]
    eval_x, eval_y = task.eval_set(torch_dtype)
    start = time.perf_counter()
    finals = []
    for width in widths:
        model = build_model(width=width, d_in=task.d_in, d_out=task.d_out, parametrization="mup")
        multipliers = model.lr_multipliers("adam")
        for lr in lrs:
            for seed in seeds:
                initial = init_params(model, [seed], dtype=torch_dtype, requires_grad=False)
                params = {k: v[0].clone().requires_grad_(True) for k, v in initial.items()}
                optimizer = torch.optim.Adam(
                    [{"params": [p], "lr": lr * multipliers[k]} for k, p in params.items()]
                )
                generator = torch.Generator().manual_seed(seed + DATA_SEED_OFFSET)
                for _ in range(steps):
                    x, y = task.sample(generator, BATCH, torch_dtype)
                    optimizer.zero_grad()
                    views = {k: p.unsqueeze(0) for k, p in params.items()}
                    loss = task.losses(forward(model, views, x.unsqueeze(0)), y.unsqueeze(0))
                    loss.sum().backward()
                    optimizer.step()
                with torch.no_grad():
                    views = {k: p.unsqueeze(0) for k, p in params.items()}
                    prediction = forward(model, views, eval_x.unsqueeze(0))
                    finals.append(float(task.losses(prediction, eval_y.unsqueeze(0))))
    return time.perf_counter() - start, np.array(finals)


def notebook_runtime() -> tuple[float, str]:
    from workbench import runner

    project = runner.Project(Path(__file__).resolve().parents[1])
    notebook = project.notebooks_dir / "03_lr_transfer_width.ipynb"
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        previous = os.environ.get("WORKBENCH_CACHE")
        os.environ["WORKBENCH_CACHE"] = cache  # the kernel inherits it: a cold cache
        try:
            _, results = runner.run(
                [notebook],
                project=project,
                run_dir=Path(out),
                progress=False,
                html=False,
                echo=lambda *a, **k: None,
            )
        finally:
            if previous is None:
                os.environ.pop("WORKBENCH_CACHE")
            else:
                os.environ["WORKBENCH_CACHE"] = previous
    result = results[0]
    return result.runtime_s, result.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="override every grid's steps")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--skip-notebook", action="store_true")
    args = parser.parse_args()
    task = get_task(None)
    rows = []
    for name, (widths, (low, high), seeds, steps) in GRIDS.items():
        lrs = [2.0**k for k in range(low, high + 1)]
        steps = args.steps or steps
        fast, ours = vectorized(widths, lrs, seeds, steps, task, args.dtype)
        slow, theirs = sequential(widths, lrs, seeds, steps, task, args.dtype)
        finite = np.isfinite(ours) & np.isfinite(theirs)
        grid = pd.DataFrame(
            [(w, lr, seed) for w in widths for lr in lrs for seed in seeds],
            columns=["width", "lr", "seed"],
        ).assign(depth=2)
        optima = [
            optimal_lr(grid.assign(final_loss=losses, diverged=~np.isfinite(losses))).log2_lr
            for losses in (ours, theirs)
        ]
        rows.append(
            {
                "grid": name,
                "runs": len(ours),
                "steps": steps,
                "vectorized s": fast,
                "sequential s": slow,
                "speed-up": slow / fast,
                "median |loss diff|": float(np.median(np.abs(ours[finite] - theirs[finite]))),
                "max |log2 optimum diff|": float(np.abs(optima[0] - optima[1]).max()),
            }
        )
    table = pd.DataFrame(rows).set_index("grid")
    print(
        f"muP + Adam, task {task.name}, batch {BATCH}, {args.dtype}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )
    print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    if not args.skip_notebook:
        seconds, status = notebook_runtime()
        print(
            f"\nnotebook 03, full mode, cold sweep cache: {seconds:.1f} s ({status}; "
            "target < 180 s)"
        )


if __name__ == "__main__":
    main()
