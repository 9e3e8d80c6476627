"""Affine probability paths x_t = alpha(t) x_0 + sigma(t) eps as schedules.

A flow-matching path is a noise schedule in all but name: the same x_t = alpha x_0 + sigma eps
with data x_0 at t = 0 and noise eps at t = 1 (the workbench's convention; Lipman et al. and
torchcfm put data at t = 1 and write x_1 for it). So a path is a `NoiseSchedule`, every solver
and `reference_solution` runs on it, and a velocity model is a `DiffusionModel` with prediction
"velocity" (dx_t/dt = alpha' x_0 + sigma' eps). Derivatives are exact.

The rectified-flow / conditional-OT path is alpha = 1 - t, sigma = t (Liu et al. 2022).
"""

from __future__ import annotations

import torch

from workbench.diffusion.schedules import DTYPE, SCHEDULES, NoiseSchedule, _t


class AffinePath(NoiseSchedule):
    """x_t = alpha(t) x_0 + sigma(t) eps on t in [t_min, t_max]; build with the classmethods."""

    def __init__(self, name: str, t_min: float, t_max: float, content: tuple | None = None):
        self.name = name
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.content = content

    def log_alpha(self, t) -> torch.Tensor:
        return torch.log(self.alpha(t))

    @classmethod
    def rectified(cls, t_min: float = 0.0, t_max: float = 1.0) -> AffinePath:
        """alpha = 1 - t, sigma = t: the straight line from data to noise (rectified flow)."""
        return _Rectified(t_min, t_max)


class _Rectified(AffinePath):
    def __init__(self, t_min: float, t_max: float):
        super().__init__("rectified", t_min, t_max, content=("rectified",))

    def alpha(self, t) -> torch.Tensor:
        return 1.0 - _t(t)

    def sigma(self, t) -> torch.Tensor:
        return _t(t).clone()

    def lambda_(self, t) -> torch.Tensor:
        t = _t(t)
        return torch.log1p(-t) - torch.log(t)

    def t_of_lambda(self, lam) -> torch.Tensor:
        return torch.sigmoid(-_t(lam))

    def derivatives(self, t, h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        t = _t(t)
        return -torch.ones_like(t, dtype=DTYPE), torch.ones_like(t, dtype=DTYPE)


SCHEDULES.add("rectified", AffinePath.rectified, label="rectified flow (alpha = 1 - t, sigma = t)")
