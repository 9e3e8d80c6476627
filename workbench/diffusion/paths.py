"""Affine probability paths x_t = alpha(t) x_0 + sigma(t) eps as schedules, and `change_path`.

A flow-matching path is a noise schedule in all but name: the same x_t = alpha x_0 + sigma eps
with data x_0 at t = 0 and noise eps at t = 1 (the workbench's convention; Lipman et al. and
torchcfm put data at t = 1 and write x_1 for it). So a path is a `NoiseSchedule`, every solver
and `reference_solution` runs on it, and a velocity model is a `DiffusionModel` with prediction
"velocity" (dx_t/dt = alpha' x_0 + sigma' eps). alpha, sigma, their derivatives, lambda =
log(alpha / sigma) and its inverse are exact closed forms, and the ends are exact: alpha = 0 at
t = 1 and sigma = 0 at t = 0 where the path has them, so lambda is infinite there (only methods
that do not step in log-SNR start or end there; see `workbench.diffusion.grids`).

Paths (`PATHS`):
- rectified: alpha = 1 - t, sigma = t (Liu et al. 2022, arXiv:2209.03003).
- condot: Lipman et al.'s conditional-OT path with sigma_min (arXiv:2210.02747, eq. 20: mu_s =
  s x_1, sigma_s = 1 - (1 - sigma_min) s with data at s = 1). With s = 1 - t: alpha = 1 - t,
  sigma = sigma_min + (1 - sigma_min) t. sigma_min > 0 keeps sigma > 0 at t = 0, so the data
  end has finite log-SNR and its marginal is the data blurred by N(0, sigma_min^2).
- vp: the variance-preserving path of the VP SDE (Song et al. 2021; Lipman et al.'s "VP
  diffusion" path): alpha = exp(-T(t) / 2), T(t) = beta_min t + (beta_max - beta_min) t^2 / 2,
  sigma = sqrt(1 - alpha^2). alpha(1) = e^{-5.025} > 0 at the defaults (it never reaches pure
  noise), and sigma' = beta alpha^2 / (2 sigma) is infinite at t = 0 (sigma ~ sqrt(beta_min t)).
- cosine: alpha = cos(pi t / 2), sigma = sin(pi t / 2) (also variance preserving; torchcfm's
  VariancePreservingConditionalFlowMatcher with time reversed). alpha is computed as
  sin(pi (1 - t) / 2) so that it is exactly 0 at t = 1.

`change_path(model, path)` is Flow Matching's schedule change: a model of one path used as the
velocity of another, exact (two paths with the same log-SNR at their times carry the same
(x_0, eps) up to a scale of x).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from workbench.diffusion.core import model_data_and_noise
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.schedules import DTYPE, SCHEDULES, NoiseSchedule, _check_range, _t
from workbench.registry import Registry

HALF_PI = math.pi / 2


class AffinePath(NoiseSchedule):
    """x_t = alpha(t) x_0 + sigma(t) eps on t in [t_min, t_max]; build with the classmethods.

    Each path gives alpha, sigma, `derivatives` (d alpha/dt, d sigma/dt), `lambda_` and
    `t_of_lambda` in closed form (lambda = +inf where sigma = 0, -inf where alpha = 0).
    """

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

    @classmethod
    def condot(cls, sigma_min: float = 0.01) -> AffinePath:
        """Lipman et al.'s CondOT: alpha = 1 - t, sigma = sigma_min + (1 - sigma_min) t.

        The default 0.01 is ours (visible in 2-D); sigma_min = 0 is the rectified path.
        """
        return _CondOT(_check_range("sigma_min", sigma_min, 0.0, 1.0, open_lo=False))

    @classmethod
    def vp(cls, beta_min: float = 0.1, beta_max: float = 20.0) -> AffinePath:
        """The VP-SDE path: alpha = exp(-T(t) / 2), sigma = sqrt(1 - alpha^2) on [0, 1]."""
        _check_range("beta_min", beta_min, 0.0, math.inf)
        _check_range("beta_max", beta_max, 0.0, math.inf)
        if not beta_max >= beta_min:
            raise ValueError(f"beta_max ({beta_max}) must be >= beta_min ({beta_min})")
        return _VP(float(beta_min), float(beta_max))

    @classmethod
    def cosine(cls) -> AffinePath:
        """alpha = cos(pi t / 2), sigma = sin(pi t / 2) on [0, 1]."""
        return _Cosine()


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


class _CondOT(AffinePath):
    def __init__(self, sigma_min: float):
        super().__init__(f"condot (sigma_min={sigma_min:g})", 0.0, 1.0, ("condot", sigma_min))
        self.sigma_min = sigma_min

    def alpha(self, t) -> torch.Tensor:
        return 1.0 - _t(t)

    def sigma(self, t) -> torch.Tensor:
        return self.sigma_min + (1.0 - self.sigma_min) * _t(t)

    def lambda_(self, t) -> torch.Tensor:
        t = _t(t)
        return torch.log1p(-t) - torch.log(self.sigma(t))

    def t_of_lambda(self, lam) -> torch.Tensor:
        # (1 - t) / (s + (1 - s) t) = e^lam  =>  t = (1 - s e^lam) / (1 + (1 - s) e^lam), written
        # with e^{-|lam|} so that neither end overflows (lam = -inf gives t = 1 exactly)
        lam, s = _t(lam), self.sigma_min
        up, down = torch.exp(-lam.clamp(min=0)), torch.exp(lam.clamp(max=0))
        return torch.where(lam >= 0, (up - s) / (up + 1 - s), (1 - s * down) / (1 + (1 - s) * down))

    def derivatives(self, t, h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        ones = torch.ones_like(_t(t), dtype=DTYPE)
        return -ones, (1.0 - self.sigma_min) * ones


class _VP(AffinePath):
    def __init__(self, beta_min: float, beta_max: float):
        super().__init__(f"vp [{beta_min:g}, {beta_max:g}]", 0.0, 1.0, ("vp", beta_min, beta_max))
        self.beta_min, self.beta_max = beta_min, beta_max

    def log_alpha(self, t) -> torch.Tensor:
        t = _t(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def lambda_(self, t) -> torch.Tensor:
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(-torch.expm1(2 * log_alpha))

    def t_of_lambda(self, lam) -> torch.Tensor:
        # alpha^2 = 1 / (1 + e^{-2 lambda}); then solve T(t) = -2 log alpha for t >= 0
        big_t = torch.logaddexp(_t(0.0), -2 * _t(lam))  # = T(t) = beta_min t + d t^2 / 2
        d = self.beta_max - self.beta_min
        return 2 * big_t / (torch.sqrt(self.beta_min**2 + 2 * d * big_t) + self.beta_min)

    def derivatives(self, t, h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        t = _t(t)
        beta = self.beta_min + t * (self.beta_max - self.beta_min)
        alpha, sigma = self.alpha(t), self.sigma(t)
        return -0.5 * beta * alpha, 0.5 * beta * alpha**2 / sigma  # +inf at t = 0


class _Cosine(AffinePath):
    def __init__(self):
        super().__init__("cosine", 0.0, 1.0, content=("cosine",))

    def alpha(self, t) -> torch.Tensor:
        return torch.sin(HALF_PI * (1.0 - _t(t)))  # exactly 0 at t = 1 (cos(pi / 2) is 6e-17)

    def sigma(self, t) -> torch.Tensor:
        return torch.sin(HALF_PI * _t(t))

    def t_of_lambda(self, lam) -> torch.Tensor:
        # alpha / sigma = cot(pi t / 2) = e^lam; atan2 keeps both infinite ends exact
        return torch.atan2(torch.ones_like(_t(lam)), torch.exp(_t(lam))) / HALF_PI

    def derivatives(self, t, h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        t = _t(t)
        return -HALF_PI * torch.cos(HALF_PI * (1.0 - t)), HALF_PI * torch.cos(HALF_PI * t)


PATHS: Registry[Callable[[], AffinePath]] = Registry("path")
PATHS.add("rectified", AffinePath.rectified, label="rectified flow (alpha = 1 - t, sigma = t)")
PATHS.add("condot", AffinePath.condot, label="CondOT (sigma = 0.01 + 0.99 t)")
PATHS.add("vp", AffinePath.vp, label="VP (alpha = exp(-T(t) / 2))")
PATHS.add("cosine", AffinePath.cosine, label="cosine (alpha = cos(pi t / 2))")
# the rectified path is also a schedule by name (get_schedule("rectified")); the others are
# found through PATHS only ("vp" there is not a diffusion schedule's name)
SCHEDULES.add("rectified", AffinePath.rectified, label=PATHS.label("rectified"))


def change_path(model: DiffusionModel, path: AffinePath) -> DiffusionModel:
    """`model` (of any prediction, on its own path or schedule A) as the velocity of `path` B.

    At time t on B, A's time with the same log-SNR is t_A = A.t_of_lambda(B.lambda_(t)), where
    x_A = c x with c = alpha_A / alpha_B = sigma_A / sigma_B (computed as (alpha_A + sigma_A) /
    (alpha_B + sigma_B), finite at both ends). A's output there gives (x_0, eps), and B's
    velocity is alpha_B' x_0 + sigma_B' eps. That is the Flow Matching guide's scale-time
    transform u_B(x, t) = (s'/s) x + s r' u_A(x / s, r) with r = t_A and s = 1 / c (the test
    checks the two agree), without derivatives of r or s. Exact for any model; a time of B whose
    log-SNR is outside A's range is refused.
    """
    source = model.schedule
    lam_lo = float(source.lambda_(source.t_max))
    lam_hi = float(source.lambda_(source.t_min))

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        lam = path.lambda_(t)
        slack = 1e-9 * max(1.0, abs(float(lam))) if math.isfinite(float(lam)) else 0.0
        if not lam_lo - slack <= float(lam) <= lam_hi + slack:
            raise ValueError(
                f"{path.name} at t={float(t):.6g} has log-SNR/2 lambda={float(lam):.6g}, outside "
                f"[{lam_lo:.6g}, {lam_hi:.6g}] of {source.name}, the model's path: change_path "
                "is defined only where the two paths share a noise level"
            )
        t_source = source.t_of_lambda(lam).clamp(source.t_min, source.t_max)
        alpha_a, sigma_a = source.alpha(t_source), source.sigma(t_source)
        scale = (alpha_a + sigma_a) / (path.alpha(t) + path.sigma(t))
        x_source = scale * x
        x0, eps = model_data_and_noise(model, x_source, t_source, source, alpha_a, sigma_a)
        d_alpha, d_sigma = path.derivatives(t)
        return d_alpha * x0 + d_sigma * eps

    content = None if model.content is None else ("change_path", model, path)
    return DiffusionModel(velocity, "velocity", path, f"{model.name} on {path.name}", content)
