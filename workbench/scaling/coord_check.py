"""Coordinate check (Yang et al., Tensor Programs V, appendix D): the size of every layer's
activations against width over the first training steps.

Under a parametrization that transfers, each layer's activation RMS is Theta(1) in the width
at every step; under SP with Adam, one step already moves the hidden activations and the
output by an amount that grows with the width. We train each width for a few steps at one
learning rate, measure the RMS of each layer's output on a fixed probe batch after every
step (step 0 is the initialization), fit log2(RMS) = slope * log2(width) + c per layer and
step, and call a layer, by its steepest slope over the training steps 1..steps,

    flat       |slope| <= SLOPE_THRESHOLD
    growing    slope > SLOPE_THRESHOLD
    shrinking  slope < -SLOPE_THRESHOLD

(the steepest step, because a blow-up can be transient: with SP, one Adam step at a
learning rate tuned for the narrow model sends the wide model's activations up, and later
steps partly undo it; step 0 is left out since the initialization is not what transfers).
SLOPE_THRESHOLD = 0.2 means a factor 16**0.2 = 1.74 across 16x width, while after one step
SP's hidden activations grow ~ width**0.5 and its output ~ width**1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.scaling.models import DEFAULT_DEPTH, Architecture, forward
from workbench.scaling.optimizers import SCALING_OPTIMIZERS
from workbench.scaling.parametrizations import DEFAULT_BASE_WIDTH
from workbench.scaling.tasks import get_task
from workbench.scaling.training import BatchedTraining, check_lrs, check_steps

SLOPE_THRESHOLD = 0.2
DEFAULT_COORD_LR = {"adam": 2.0**-6, "adam_atan2": 2.0**-6, "sgd": 2.0**-3}
PROBE_SIZE = 256


@dataclass(frozen=True)
class CoordCheck:
    table: pd.DataFrame  # layer, width, depth, axis (the varied one), step, rms (seed mean)
    slopes: pd.DataFrame  # layer, step, slope, verdict
    threshold: float
    axis: str = "width"  # what varies: "width" or "depth"

    @property
    def steepest(self) -> pd.DataFrame:
        """Per layer, the training step (>= 1) with the largest |slope|, and its verdict."""
        trained = self.slopes[self.slopes.step >= 1]
        index = trained.slope.abs().groupby(trained.layer, sort=False).idxmax()
        return trained.loc[index.to_numpy()].reset_index(drop=True)

    @property
    def verdicts(self) -> dict[str, str]:
        """Each layer's verdict, from its steepest training step."""
        steepest = self.steepest
        return dict(zip(steepest.layer, steepest.verdict, strict=True))

    @property
    def verdict(self) -> str:
        """growing if any layer grows, else shrinking if any shrinks, else flat."""
        values = set(self.verdicts.values())
        return next(v for v in ("growing", "shrinking", "flat") if v in values)


def verdict_of(slope: float, threshold: float = SLOPE_THRESHOLD) -> str:
    if slope > threshold:
        return "growing"
    if slope < -threshold:
        return "shrinking"
    return "flat"


def coordinate_check(
    *,
    parametrization: str,
    widths: Sequence[int] = (32, 64, 128, 256, 512),
    optimizer: str = "adam",
    lr: float | None = None,
    steps: int = 4,
    depth: int = DEFAULT_DEPTH,
    depths: Sequence[int] | None = None,
    model: str = "mlp",
    alpha: float | None = None,
    lr_correction: bool = True,
    task: str | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 32,
    base_width: int = DEFAULT_BASE_WIDTH,
) -> CoordCheck:
    """Activation RMS per layer, width and step; slopes and verdicts (module docstring).
    `lr` defaults to 2^-6 for Adam / Adam-atan2 and 2^-3 for SGD.

    With `depths` (two or more) and a single width, the check runs across depth instead:
    the table's `axis` column is the depth, and the layers compared are the input layer, the
    first and the last residual block ("first block", "last block") and the output."""
    SCALING_OPTIMIZERS.check(optimizer)
    lr = check_lrs([DEFAULT_COORD_LR[optimizer] if lr is None else lr])[0]
    steps = check_steps(steps)
    if depths is None:
        axis, points = "width", [(int(w), depth) for w in widths]
    else:
        if len(widths) != 1:
            raise ValueError(f"a check across depth takes one width, got {list(widths)}")
        axis, points = "depth", [(int(widths[0]), int(d)) for d in depths]
    if len(points) < 2:
        raise ValueError(f"a coordinate check needs at least two {axis}s, got {len(points)}")
    spec = get_task(task)
    probe = spec.eval_set(torch.float64)[0][:PROBE_SIZE]
    architecture = Architecture(parametrization, model, alpha, lr_correction, base_width)
    rows = []
    for width, net_depth in points:
        net = architecture.build(width, net_depth, spec.d_in, spec.d_out)
        names = _layer_names(net_depth) if axis == "depth" else None
        for step, sizes in enumerate(
            _activation_sizes(net, spec, optimizer, lr, steps, seeds, batch_size, probe)
        ):
            rows.extend(
                {
                    "layer": names.get(layer, layer) if names else layer,
                    "width": width,
                    "depth": net_depth,
                    "axis": width if axis == "width" else net_depth,
                    "step": step,
                    "rms": rms,
                }
                for layer, rms in sizes.items()
                if names is None or layer in names or not layer.startswith("hidden")
            )
    table = pd.DataFrame(rows)
    return CoordCheck(table, _slopes(table), SLOPE_THRESHOLD, axis)


def _layer_names(depth: int) -> dict[str, str]:
    """Across depth, blocks are matched by position: the first and the last."""
    names = {f"hidden{depth - 1}": "last block"}
    if depth > 1:
        names["hidden0"] = "first block"
    return names


def _activation_sizes(net, spec, optimizer, lr, steps, seeds, batch_size, probe):
    """Yield {layer: RMS over probe inputs, features and seeds} at steps 0..steps."""
    runs = BatchedTraining(
        net, spec, optimizer=optimizer, lrs=[lr] * len(seeds), seeds=seeds, batch_size=batch_size
    )
    probe = probe.expand(len(seeds), *probe.shape)
    for step in range(steps + 1):
        with torch.no_grad():
            activations = {}
            forward(net, runs.params(), probe, activations)
            yield {k: float(v.pow(2).mean().sqrt()) for k, v in activations.items()}
        if step < steps:
            runs.step(runs.losses())


def _slopes(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (layer, step), group in table.groupby(["layer", "step"], sort=False):
        slope = float(np.polyfit(np.log2(group.axis), np.log2(group.rms), 1)[0])
        rows.append({"layer": layer, "step": step, "slope": slope, "verdict": verdict_of(slope)})
    return pd.DataFrame(rows)


def slope_table(checks: Mapping[str, CoordCheck]) -> pd.DataFrame:
    """Each check's steepest log-log slope per layer (one column per check), and a last row
    with its verdict."""
    table = pd.DataFrame(
        {name: check.steepest.set_index("layer").slope for name, check in checks.items()}
    ).astype(object)
    table.loc["verdict"] = [check.verdict for check in checks.values()]
    return table
