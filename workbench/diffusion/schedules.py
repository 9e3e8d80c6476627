"""Noise schedules x_t = alpha(t) x_0 + sigma(t) eps as plain objects.

Each gives alpha(t), sigma(t), lambda(t) = log(alpha / sigma) (half the log-SNR), the inverse
t(lambda), and the derivatives of alpha and sigma (for flow-velocity outputs). Inputs are
floats or tensors; outputs are float64 tensors. `t_min` and `t_max` are where sampling ends and
starts by default (DPM-Solver's conventions: eps = 1e-3 for VP, [0.002, 80] for EDM).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from workbench import _torch  # noqa: F401  (single-threaded torch; see the module)
from workbench.registry import Registry

DTYPE = torch.float64


def _t(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=DTYPE)


def _check_range(name: str, value, lo: float, hi: float, *, open_lo=True, open_hi=True):
    """value as a float, refused unless finite and inside (lo, hi) (brackets as asked)."""
    ok_lo = (value > lo) if open_lo else (value >= lo)
    ok_hi = (value < hi) if open_hi else (value <= hi)
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and ok_lo and ok_hi):
        interval = f"{'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return float(value)


def _check_levels(min_name: str, low, max_name: str, high) -> None:
    """0 < low < high < inf, for a pair of noise levels."""
    _check_range(min_name, low, 0.0, math.inf)
    _check_range(max_name, high, 0.0, math.inf)
    if not low < high:
        raise ValueError(f"{min_name} ({low}) must be smaller than {max_name} ({high})")


class NoiseSchedule(ABC):
    name: str
    t_min: float
    t_max: float

    @abstractmethod
    def log_alpha(self, t) -> torch.Tensor: ...

    @abstractmethod
    def sigma(self, t) -> torch.Tensor: ...

    @abstractmethod
    def t_of_lambda(self, lam) -> torch.Tensor: ...

    def alpha(self, t) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def lambda_(self, t) -> torch.Tensor:
        return self.log_alpha(t) - torch.log(self.sigma(t))

    def derivatives(self, t, h: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
        """(d alpha / dt, d sigma / dt) by a central difference; exact forms where they exist."""
        t = _t(t)
        up, down = t + h, t - h
        return (
            (self.alpha(up) - self.alpha(down)) / (2 * h),
            (self.sigma(up) - self.sigma(down)) / (2 * h),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    # what defines the schedule, for content-keyed memos (workbench.memo); None: not keyable
    content: tuple | None = None

    def content_key(self):
        if self.content is None:
            return None
        return (type(self).__name__, self.t_min, self.t_max, self.content)


class VPSchedule(NoiseSchedule):
    """Variance preserving: sigma^2 = 1 - alpha^2. Build with the classmethods."""

    def __init__(
        self,
        name: str,
        log_alpha_fn,
        t_of_log_alpha_fn,
        t_min: float,
        t_max: float,
        content: tuple | None = None,  # the constructor's parameters (None: functions only)
    ):
        self.name = name
        self.content = content
        self._log_alpha = log_alpha_fn
        self._t_of_log_alpha = t_of_log_alpha_fn
        self.t_min, self.t_max = t_min, t_max

    def log_alpha(self, t) -> torch.Tensor:
        return self._log_alpha(_t(t))

    def sigma(self, t) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def lambda_(self, t) -> torch.Tensor:
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(-torch.expm1(2 * log_alpha))

    def t_of_lambda(self, lam) -> torch.Tensor:
        # alpha^2 = 1 / (1 + e^{-2 lambda})
        return self._t_of_log_alpha(-0.5 * torch.logaddexp(_t(0.0), -2 * _t(lam)))

    @classmethod
    def linear(
        cls, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3
    ) -> VPSchedule:
        """The continuous VP-SDE of Song et al.: beta(t) = beta_min + t (beta_max - beta_min)."""
        _check_range("beta_min", beta_min, 0.0, math.inf, open_lo=False)
        _check_range("beta_max", beta_max, 0.0, math.inf)
        if not beta_max >= beta_min:
            raise ValueError(f"beta_max ({beta_max}) must be >= beta_min ({beta_min})")
        _check_range("t_min", t_min, 0.0, 1.0)
        d = beta_max - beta_min

        def log_alpha(t):
            return -0.25 * t**2 * d - 0.5 * t * beta_min

        def t_of_log_alpha(log_alpha):
            tmp = -4 * log_alpha  # = t^2 d + 2 t beta_min
            return tmp / (torch.sqrt(beta_min**2 + d * tmp) + beta_min)

        return cls(
            f"VP linear continuous [{beta_min}, {beta_max}]",
            log_alpha,
            t_of_log_alpha,
            t_min,
            1.0,
            content=("linear", float(beta_min), float(beta_max)),
        )

    @classmethod
    def cosine(cls, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.9946) -> VPSchedule:
        """Nichol & Dhariwal's cosine schedule; t_max < 1 because alpha -> 0 at t = 1."""
        _check_range("s", s, 0.0, math.inf)
        _check_range("t_max", t_max, 0.0, 1.0)
        _check_range("t_min", t_min, 0.0, t_max)
        offset = math.log(math.cos(s / (1 + s) * math.pi / 2))

        def log_alpha(t):
            return torch.log(torch.cos((t + s) / (1 + s) * math.pi / 2)) - offset

        def t_of_log_alpha(log_alpha):
            return 2 * (1 + s) / math.pi * torch.arccos(torch.exp(log_alpha + offset)) - s

        return cls("VP cosine", log_alpha, t_of_log_alpha, t_min, t_max, ("cosine", float(s)))

    @classmethod
    def discrete(cls, betas: torch.Tensor, name: str = "VP discrete") -> VPSchedule:
        """A DDPM schedule of N betas as a continuous one: timestep k sits at t = (k + 1) / N.

        log alpha is interpolated linearly between the N knots (DPM-Solver's construction), so
        a grid of knot times reproduces the discrete alphas_cumprod exactly.
        """
        betas = _t(betas)
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError(f"betas must be 1-D with at least 2 values, got {tuple(betas.shape)}")
        bad = torch.nonzero(~((betas > 0) & (betas < 1))).flatten()
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"every beta must be in (0, 1), got betas[{i}]={float(betas[i])}")
        n = len(betas)
        log_alphas = 0.5 * torch.cumsum(torch.log1p(-betas), 0)
        knots = torch.linspace(1.0 / n, 1.0, n, dtype=DTYPE)
        schedule = cls(
            name,
            lambda t: _interp(t, knots, log_alphas),
            # log alpha decreases with t; interpolate on the reversed (increasing) arrays
            lambda la: _interp(la, log_alphas.flip(0), knots.flip(0)),
            t_min=1.0 / n,
            t_max=1.0,
            content=("discrete", betas.clone()),
        )
        schedule.alphas_cumprod = torch.exp(2 * log_alphas)
        return schedule

    @classmethod
    def linear_ddpm(
        cls, beta_start: float = 1e-4, beta_end: float = 0.02, n: int = 1000
    ) -> VPSchedule:
        """diffusers' default: betas linear from 1e-4 to 0.02 over 1000 steps."""
        betas = torch.linspace(beta_start, beta_end, n, dtype=DTYPE)
        return cls.discrete(betas, name=f"VP linear DDPM ({n} steps)")

    @classmethod
    def timestep_to_t(cls, timestep, n: int = 1000) -> torch.Tensor:
        return (_t(timestep) + 1) / n


class VESchedule(NoiseSchedule):
    """Variance exploding: alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        _check_levels("sigma_min", sigma_min, "sigma_max", sigma_max)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.name = f"VE [{sigma_min}, {sigma_max}]"
        self.content = (float(sigma_min), float(sigma_max))
        self.t_min, self.t_max = 0.0, 1.0
        self._log_ratio = math.log(sigma_max / sigma_min)

    def log_alpha(self, t) -> torch.Tensor:
        return torch.zeros_like(_t(t))

    def sigma(self, t) -> torch.Tensor:
        return self.sigma_min * torch.exp(_t(t) * self._log_ratio)

    def t_of_lambda(self, lam) -> torch.Tensor:
        return (-_t(lam) - math.log(self.sigma_min)) / self._log_ratio


class EDMSchedule(NoiseSchedule):
    """Karras et al.: alpha = 1, sigma(t) = t, sampled on sigma in [0.002, 80]."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        _check_levels("sigma_min", sigma_min, "sigma_max", sigma_max)
        self.name = f"EDM [{sigma_min}, {sigma_max}]"
        self.content = (float(sigma_min), float(sigma_max))
        self.t_min, self.t_max = sigma_min, sigma_max

    def log_alpha(self, t) -> torch.Tensor:
        return torch.zeros_like(_t(t))

    def sigma(self, t) -> torch.Tensor:
        return _t(t)

    def t_of_lambda(self, lam) -> torch.Tensor:
        return torch.exp(-_t(lam))

    def derivatives(self, t, h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        t = _t(t)
        return torch.zeros_like(t), torch.ones_like(t)


SCHEDULES: Registry[Callable[[], NoiseSchedule]] = Registry("schedule")
SCHEDULES.add("vp_linear_ddpm", VPSchedule.linear_ddpm, label="VP linear DDPM (1000 steps)")
SCHEDULES.add("vp_linear", VPSchedule.linear, label="VP linear")
SCHEDULES.add("vp_cosine", VPSchedule.cosine, label="VP cosine")
SCHEDULES.add("ve", VESchedule, label="VE")
SCHEDULES.add("edm", EDMSchedule, label="EDM")


def get_schedule(schedule: str | NoiseSchedule) -> NoiseSchedule:
    """A schedule by its name in SCHEDULES (a schedule object is returned as is)."""
    if isinstance(schedule, NoiseSchedule):
        return schedule
    return SCHEDULES[schedule]()


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation with linear extrapolation beyond the ends (xp increasing)."""
    x = _t(x)
    index = torch.clamp(torch.searchsorted(xp, x.reshape(-1)), 1, len(xp) - 1)
    x0, x1, f0, f1 = xp[index - 1], xp[index], fp[index - 1], fp[index]
    out = f0 + (x.reshape(-1) - x0) * (f1 - f0) / (x1 - x0)
    return out.reshape(x.shape)
