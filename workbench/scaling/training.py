"""Train R runs of one model at once: one learning rate and one seed per run.

Run r trains with learning rate lrs[r] from the parameters of seeds[r], on minibatches drawn
from a generator seeded by seeds[r] (runs sharing a seed see the same data and start from the
same parameters, so a learning-rate curve compares like with like).

Divergence: a run whose training loss becomes non-finite, or exceeds DIVERGENCE_FACTOR times
its first loss, is frozen at that step (its learning rate and gradients are zeroed from then
on, so a NaN cannot leak into the other runs) and marked diverged. Its loss curve holds NaN
after the step where it diverged, and its final loss is +inf: worse than any finite loss, and
excluded by optimal_lr. No run is ever dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.registry import Registry
from workbench.scaling.models import Model, forward, init_params
from workbench.scaling.optimizers import SCALING_OPTIMIZERS
from workbench.scaling.tasks import Task

DIVERGENCE_FACTOR = 100.0
DATA_SEED_OFFSET = 10_000  # data streams differ from the init streams of the same seed
DTYPES: Registry[torch.dtype] = Registry(
    "dtype", {"float32": torch.float32, "float64": torch.float64}
)


@dataclass(frozen=True)
class TrainResult:
    curves: np.ndarray  # (R, steps) training loss per step, NaN after divergence
    final_loss: np.ndarray  # (R,) held-out loss after the last step, +inf if diverged
    diverged: np.ndarray  # (R,) bool
    diverged_step: np.ndarray  # (R,) step at which a run was frozen, -1 if never


def check_lrs(lrs: Sequence[float]) -> list[float]:
    lrs = [float(lr) for lr in lrs]
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    bad = [lr for lr in lrs if not (np.isfinite(lr) and lr > 0)]
    if bad:
        raise ValueError(f"learning rates must be finite and > 0, got {bad}")
    return lrs


def check_steps(steps: int) -> int:
    if not (isinstance(steps, int | np.integer) and not isinstance(steps, bool) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return int(steps)


class BatchedTraining:
    """R runs of one model advancing together, their parameters packed in one buffer.

    The buffer is (R, P): run r's parameters, every tensor flattened and concatenated in the
    model's order. torch.split hands the forward pass views of it (whose backward is one
    concatenation), and the optimizer updates all tensors at once with an (R, P) learning
    rate (run lr x per-parameter multiplier), so a step costs a handful of operations
    whatever the depth.
    """

    def __init__(
        self,
        model: Model,
        task: Task,
        *,
        optimizer: str,
        lrs: Sequence[float],
        seeds: Sequence[int],
        batch_size: int = 32,
        dtype: str = "float64",
        initial: dict[str, torch.Tensor] | None = None,
    ):
        """`initial` (name -> (R, *shape)) replaces the seeded initialization; the seeds
        still choose each run's data stream."""
        self.update = SCALING_OPTIMIZERS[optimizer].update
        lrs = check_lrs(lrs)
        if len(seeds) != len(lrs):
            raise ValueError(f"one seed per run: {len(lrs)} learning rates, {len(seeds)} seeds")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.model, self.task = model, task
        self.dtype = DTYPES[dtype]
        self.shapes = model.shapes()
        self.sizes = [math.prod(shape) for shape in self.shapes.values()]
        if initial is None:
            params = init_params(model, seeds, dtype=self.dtype, requires_grad=False)
        else:
            params = {name: initial[name].detach().to(self.dtype) for name in self.shapes}
        self.n = len(lrs)
        self.flat = torch.cat([p.reshape(self.n, -1) for p in params.values()], 1)
        self.flat.requires_grad_(True)
        multipliers = model.lr_multipliers(optimizer)
        per_param = torch.cat(
            [
                torch.full((size,), multipliers[name], dtype=torch.float64)
                for name, size in zip(self.shapes, self.sizes, strict=True)
            ]
        )
        run_lr = torch.tensor(lrs, dtype=torch.float64).view(-1, 1)
        self.lr = (run_lr * per_param).to(self.dtype)  # (R, P): products in float64
        self.data = _DataStreams(task, seeds, batch_size, self.dtype)
        self.state: dict = {}
        self.steps_taken = 0
        self.active = torch.ones(self.n, dtype=torch.bool)

    def params(self) -> dict[str, torch.Tensor]:
        """name -> (R, *shape) views of the buffer (in the autograd graph of `flat`)."""
        chunks = torch.split(self.flat, self.sizes, dim=1)
        return {
            name: chunk.view(self.n, *shape)
            for (name, shape), chunk in zip(self.shapes.items(), chunks, strict=True)
        }

    def losses(self) -> torch.Tensor:
        """Per-run training loss on the next minibatch, with the graph for `step`."""
        x, y = self.data.next()
        return self.task.losses(forward(self.model, self.params(), x), y)

    def step(self, losses: torch.Tensor) -> None:
        """One optimizer step of the active runs; frozen runs get zero gradient and lr."""
        frozen = ~self.active
        (grad,) = torch.autograd.grad(torch.where(self.active, losses, 0).sum(), [self.flat])
        with torch.no_grad():
            if frozen.any():
                grad[frozen] = 0  # 0 * inf upstream can still have left NaN in those rows
                self.lr[frozen] = 0
            self.steps_taken += 1
            self.update(self.flat, grad, self.state, self.lr, self.steps_taken)

    def held_out_loss(self) -> torch.Tensor:
        x, y = self.task.eval_set(self.dtype)
        with torch.no_grad():
            prediction = forward(self.model, self.params(), x.expand(self.n, *x.shape))
            return self.task.losses(prediction, y.expand(self.n, *y.shape))


def train_runs(
    model: Model,
    task: Task,
    *,
    optimizer: str,
    lrs: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    batch_size: int = 32,
    dtype: str = "float64",
) -> TrainResult:
    """Train len(lrs) == len(seeds) runs of `model` on `task` (see the module docstring)."""
    steps = check_steps(steps)
    runs = BatchedTraining(
        model, task, optimizer=optimizer, lrs=lrs, seeds=seeds, batch_size=batch_size, dtype=dtype
    )
    curves = np.full((runs.n, steps), np.nan)
    diverged_step = np.full(runs.n, -1)
    first_loss = None
    for step in range(steps):
        losses = runs.losses()
        values = losses.detach()
        if first_loss is None:
            first_loss = values.clone()
        active = runs.active
        curves[active.numpy(), step] = values[active].double().numpy()
        blown = active & (~torch.isfinite(values) | (values > DIVERGENCE_FACTOR * first_loss))
        if blown.any():
            diverged_step[blown.numpy()] = step
            runs.active = active & ~blown
        if not runs.active.any():
            break
        runs.step(losses)

    final = runs.held_out_loss()
    active = runs.active & torch.isfinite(final)
    diverged_step[(~active).numpy() & (diverged_step < 0)] = steps
    final_loss = np.where(active.numpy(), final.double().numpy(), np.inf)
    return TrainResult(curves, final_loss, ~active.numpy(), diverged_step)


class _DataStreams:
    """Minibatches per distinct seed, gathered to the runs that use each seed."""

    def __init__(self, task: Task, seeds: Sequence[int], batch_size: int, dtype):
        self.task, self.batch_size, self.dtype = task, batch_size, dtype
        distinct = sorted(set(seeds))
        self.index = torch.tensor([distinct.index(s) for s in seeds])
        self.generators = [
            torch.Generator().manual_seed(int(s) + DATA_SEED_OFFSET) for s in distinct
        ]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [self.task.sample(g, self.batch_size, self.dtype) for g in self.generators]
        if len(batches) == 1:  # one seed: broadcast instead of copying R times
            x, y = batches[0]
            return x.expand(len(self.index), *x.shape), y.expand(len(self.index), *y.shape)
        x = torch.stack([b[0] for b in batches])[self.index]
        y = torch.stack([b[1] for b in batches])[self.index]
        return x, y
