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
from workbench.models.diffusers_models import from_diffusers

__all__ = [
    "TIMESTEPS",
    "TIME_INPUTS",
    "check_alphas_cumprod",
    "discrete_schedule",
    "from_denoiser",
    "from_diffusers",
    "from_discrete",
    "table_times",
]
