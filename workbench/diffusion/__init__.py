"""Diffusion sampling on exact ground truth: schedules, time grids, model outputs, solvers."""

from workbench.diffusion import solvers  # noqa: F401  (SOLVERS, complete on import)
from workbench.diffusion.grids import GRIDS, make_grid
from workbench.diffusion.guidance import (
    GUIDANCE,
    DynamicThreshold,
    GuidanceProblem,
    autoguidance,
    cfg,
    classifier_guidance,
)
from workbench.diffusion.learned import FittedGrid, fit_grid
from workbench.diffusion.models import PREDICTIONS, DiffusionModel, convert
from workbench.diffusion.paths import PATHS, AffinePath, change_path
from workbench.diffusion.sampling import (
    SOLVERS,
    Evaluator,
    Grid,
    ModelOutputError,
    SampleResult,
    SolverOptions,
    prior_noise,
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
from workbench.diffusion.smc import ParticleResult, fk_smc, svdd

__all__ = [
    "GRIDS",
    "GUIDANCE",
    "PATHS",
    "PREDICTIONS",
    "SCHEDULES",
    "SOLVERS",
    "AffinePath",
    "DiffusionModel",
    "DynamicThreshold",
    "EDMSchedule",
    "Evaluator",
    "FittedGrid",
    "Grid",
    "GuidanceProblem",
    "ModelOutputError",
    "NoiseSchedule",
    "ParticleResult",
    "SampleResult",
    "SolverOptions",
    "VESchedule",
    "VPSchedule",
    "autoguidance",
    "cfg",
    "change_path",
    "classifier_guidance",
    "convert",
    "fit_grid",
    "fk_smc",
    "get_schedule",
    "make_grid",
    "prior_noise",
    "reference_solution",
    "register",
    "sample",
    "svdd",
]
