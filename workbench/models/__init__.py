"""Bring your own model: any torch denoiser, a discrete-time network with an alphas_cumprod
table, or a diffusers UNet saved in a local folder, as a `DiffusionModel` that every solver
of `workbench.diffusion` runs unchanged."""

from workbench.models.adapters import (
    TIME_INPUTS,
    TIMESTEPS,
    check_alphas_cumprod,
    discrete_schedule,
    from_denoiser,
    from_discrete,
    table_times,
)
from workbench.models.decomposition import (
    ErrorSplit,
    decomposition_table,
    saturation_nfe,
    score_error_by_level,
    split_error,
)
from workbench.models.denoisers import (
    DENOISER_PROBLEMS,
    DenoiserBudget,
    TrainedDenoiser,
    best_device,
    train_denoiser,
    trained_denoisers,
)
from workbench.models.diffusers_models import from_diffusers

__all__ = [
    "DENOISER_PROBLEMS",
    "TIMESTEPS",
    "TIME_INPUTS",
    "DenoiserBudget",
    "ErrorSplit",
    "TrainedDenoiser",
    "best_device",
    "check_alphas_cumprod",
    "decomposition_table",
    "discrete_schedule",
    "from_denoiser",
    "from_diffusers",
    "from_discrete",
    "saturation_nfe",
    "score_error_by_level",
    "split_error",
    "table_times",
    "train_denoiser",
    "trained_denoisers",
]
