"""Parametrizations and learning-rate transfer: SP, NTK, muP, u-muP and depth scaling.

- `parametrizations`: per-layer rules (init std, forward multiplier, SGD / Adam learning-rate
  multipliers) and the residual branch scaling L^-alpha with its learning-rate correction
- `models`: MLP and residual MLP as batched tensors (R runs per forward pass)
- `tasks`: tasks generated in code (order-2 Markov chain, teacher-student, spirals)
- `optimizers`: batched SGD, Adam, Adam-atan2 with a learning rate per run
- `sweeps`: `lr_sweep`, `optimal_lr`; `coord_check`: `coordinate_check`
- `summaries`: what the notebooks and explorers show of sweeps and checks
- `studies`: notebooks 03 and 04's studies, their SMOKE and full sizes defined once
"""

from workbench.scaling.coord_check import (
    SLOPE_THRESHOLD,
    CoordCheck,
    coordinate_check,
    slope_table,
)
from workbench.scaling.models import (
    MODELS,
    Architecture,
    Model,
    build_model,
    forward,
    init_params,
)
from workbench.scaling.optimizers import SCALING_OPTIMIZERS
from workbench.scaling.parametrizations import (
    PARAMETRIZATIONS,
    LayerRule,
    ParamRule,
    ResidualScaling,
    layer_rule,
    residual_scaling,
)
from workbench.scaling.sweeps import (
    drift_octaves,
    fit_optimum,
    lr_sweep,
    optimal_lr,
    optimum_table,
    seed_averaged,
    transfer_penalty,
)
from workbench.scaling.tasks import DEFAULT_TASK, TASKS, get_task
from workbench.scaling.training import DIVERGENCE_FACTOR, TrainResult, train_runs

__all__ = [
    "DEFAULT_TASK",
    "DIVERGENCE_FACTOR",
    "MODELS",
    "PARAMETRIZATIONS",
    "SCALING_OPTIMIZERS",
    "SLOPE_THRESHOLD",
    "TASKS",
    "Architecture",
    "CoordCheck",
    "LayerRule",
    "Model",
    "ParamRule",
    "ResidualScaling",
    "TrainResult",
    "build_model",
    "coordinate_check",
    "drift_octaves",
    "fit_optimum",
    "forward",
    "get_task",
    "init_params",
    "layer_rule",
    "lr_sweep",
    "optimal_lr",
    "optimum_table",
    "residual_scaling",
    "seed_averaged",
    "slope_table",
    "train_runs",
    "transfer_penalty",
]
