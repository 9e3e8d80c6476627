"""Diffusion sampling on exact ground truth: schedules, time grids, model outputs, solvers."""

from workbench.diffusion import solvers as _solvers  # noqa: F401  (fills SOLVERS)
from workbench.diffusion.grids import GRIDS, make_grid
from workbench.diffusion.models import PREDICTIONS, DiffusionModel, convert
from workbench.diffusion.sampling import (
    SOLVERS,
    Evaluator,
    Grid,
    ModelOutputError,
    SampleResult,
    SolverOptions,
    reference_solution,
    register,
    sample,
)
from workbench.diffusion.schedules import (
    SCHEDULES,
    EDMSchedule,
    NoiseSchedule,
    VESchedule,
    VPSchedule,
    get_schedule,
)

__all__ = [
    "GRIDS",
    "PREDICTIONS",
    "SCHEDULES",
    "SOLVERS",
    "DiffusionModel",
    "EDMSchedule",
    "Evaluator",
    "Grid",
    "ModelOutputError",
    "NoiseSchedule",
    "SampleResult",
    "SolverOptions",
    "VESchedule",
    "VPSchedule",
    "convert",
    "get_schedule",
    "make_grid",
    "reference_solution",
    "register",
    "sample",
]
