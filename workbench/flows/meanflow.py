"""MeanFlow: a network of the average velocity, trained from scratch for 1- and 2-step sampling.

Geng, Deng, Bai, Kolter & He 2025, "Mean Flows for One-step Generative Modeling" (arXiv
2505.13447). The average velocity over [r, t] along an ODE trajectory,

    u(z_t, r, t) = 1 / (t - r) int_r^t v(z_s, s) ds,     so   z_r = z_t - (t - r) u(z_t, r, t),

satisfies the MeanFlow identity u = v - (t - r) du/dt, with du/dt = v d_z u + d_t u the total
derivative along the trajectory. A network u_theta(z, r, t) is regressed on

    u_tgt = v(z_t, t) - (t - r) (v d_z u_theta + d_t u_theta),   stop-gradient on u_tgt,

with v the conditional velocity alpha' x_0 + sigma' eps of the path (its expectation given z_t
is the marginal velocity) and the bracket one forward-mode JVP of u_theta with tangent (v, 0, 1)
in (z, r, t) (`meanflow_target`). As in the paper: (t, r) are two draws of a
logit-normal(-0.4, 1) sorted so that t >= r, r = t on 75% of the batch (their best "25% r !=
t"), the network sees (t, t - r), and the loss may be adaptively weighted, sg(w) |delta|^2 with
w = 1 / (|delta|^2 + c)^p, c = 1e-3. Sampling: z_r = z_t - (t - r) u_theta(z_t, r, t) on a
uniform grid of 1 or 2 steps.

The paper's weight p = 1 is `adaptive_p=1.0`; the default here is p = 0, the plain squared
loss, because on this toy p = 1 made training chaotic: a 1e-13 change to one initial weight
grew to 0.09 in the 1-NFE samples after 500 steps at lr 3e-3 (p = 0: 9e-15), MKL_CBWR
COMPATIBLE and AVX2 runs ended 0.17 apart, and it was worse besides (ring, 2000 steps: sliced
Wasserstein at 1 NFE 0.29 with p = 1 at lr 1e-3, where it stays stable, against 0.17 with
p = 0 at lr 3e-3). Normalizing every sample's loss to ~1 keeps the steps large near the
optimum, where the target itself moves with the network.

Unlike the paper's DiT, the time inputs enter raw (no Fourier features: `frequencies` = 0 by
default): the 1-NFE jump asks for u at (r, t) = (0, 1), the corner a sorted pair of
logit-normal draws almost never reaches, and sinusoidal features of t - r made the network's
value there erratic (on a single Gaussian, 400 steps: error 0.05-0.11 raw against 0.3-0.7
with 4 frequencies).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.autograd import forward_ad

from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.flows.training import (
    DATA_SEED_OFFSET,
    TIME_DENSITIES,
    TRAINED,
    TrainSettings,
    VelocityMLP,
    _check_positive_int,
    _Pairs,
    build_network,
    conditional_velocity,
    network_from_state,
    network_state,
    path_times,
)
from workbench.progress import progress
from workbench.toy.mixture import GaussianMixture

SAME_TIME_SHARE = 0.75  # share of the batch with r = t (the paper's ablation: 25% r != t)
ADAPTIVE_C = 1e-3  # the paper's adaptive loss weight w = 1 / (|delta|^2 + c)^p
# p = 0 (the plain squared loss) here, not the paper's p = 1: see the module docstring
ADAPTIVE_P = 0.0


def average_velocity_network(network: VelocityMLP):
    """(z, r, t) -> u_theta(z, r, t): the network fed (t, t - r)."""

    def u(z, r, t):
        return network(z, t, t - r)

    return u


def meanflow_target(
    network: VelocityMLP, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(u_theta(z, r, t), u_tgt) with u_tgt = v - (t - r) (v d_z u + d_t u), detached.

    One forward-mode JVP of u_theta in (z, r, t) with tangent (v, 0, 1) gives u and its total
    derivative in one pass: the dual numbers of `torch.autograd.forward_ad`, which
    `torch.func.jvp` wraps (the same values bit for bit, tested) at 1.7x the cost per step on
    this small network. The primal u keeps its graph to the parameters; the target is detached
    (the paper's stop-gradient: no second-order terms)."""
    u_fn = average_velocity_network(network)
    with forward_ad.dual_level():
        out = u_fn(
            forward_ad.make_dual(z, v),
            forward_ad.make_dual(r, torch.zeros_like(r)),
            forward_ad.make_dual(t, torch.ones_like(t)),
        )
        u, dudt = forward_ad.unpack_dual(out)
    target = v - (t - r).reshape(-1, 1) * dudt
    return u, target.detach()


def sample_times(
    density, path: NoiseSchedule, n: int, share_same: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t): two draws from `density` sorted so that t >= r, then r = t on a share of rows."""
    a, b = path_times(density, path, n, generator), path_times(density, path, n, generator)
    t, r = torch.maximum(a, b), torch.minimum(a, b)
    same = torch.randperm(n, generator=generator)[: round(share_same * n)]
    r[same] = t[same]
    return r, t


@dataclass
class TrainedMeanFlow:
    """An average-velocity network u_theta(z, r, t) with its loss curve and training time."""

    network: VelocityMLP
    path: NoiseSchedule
    losses: np.ndarray
    seconds: float
    name: str = "MeanFlow"
    _model: DiffusionModel | None = field(default=None, repr=False)

    def average_velocity(self, z: torch.Tensor, r, t) -> torch.Tensor:
        """u_theta(z, r, t) as float64 on the CPU; r and t scalars or one per row."""
        device = next(self.network.parameters()).device
        n = z.shape[0]
        to = dict(device=device, dtype=self.network.dtype)
        r = torch.as_tensor(r).to(**to).reshape(-1).expand(n)
        t = torch.as_tensor(t).to(**to).reshape(-1).expand(n)
        with torch.no_grad():
            u = average_velocity_network(self.network)(z.to(**to), r, t)
        return u.to("cpu", DTYPE)

    def sample(self, x1: torch.Tensor, steps: int = 1) -> torch.Tensor:
        """x_0 from noise x1 in `steps` jumps z_r = z_t - (t - r) u(z_t, r, t) on a uniform
        grid from t_max to t_min (1 step = 1 NFE)."""
        steps = _check_positive_int("steps", steps)
        grid = torch.linspace(self.path.t_max, self.path.t_min, steps + 1, dtype=DTYPE)
        z = torch.as_tensor(x1, dtype=DTYPE)
        for t, r in itertools.pairwise(grid):
            z = z - (t - r) * self.average_velocity(z, r, t)
        return z

    @property
    def model(self) -> DiffusionModel:
        """The instantaneous velocity u_theta(z, t, t) as a velocity `DiffusionModel`."""
        if self._model is None:

            def fn(x, t):
                t = torch.as_tensor(t, dtype=DTYPE).reshape(-1)
                return self.average_velocity(x, t, t)

            content = ("MeanFlow network", network_state(self.network))
            self._model = DiffusionModel(fn, "velocity", self.path, self.name, content)
        return self._model

    def state(self) -> dict[str, np.ndarray]:
        return network_state(self.network) | {
            "losses": np.asarray(self.losses, dtype=np.float64),
            "seconds": np.array(float(self.seconds)),
        }

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray], path: NoiseSchedule, device: str = "cpu"
    ) -> TrainedMeanFlow:
        network = network_from_state(state, device)
        return cls(network.eval(), path, np.asarray(state["losses"]), float(state["seconds"]))


def train_meanflow(
    mixture: GaussianMixture,
    path: NoiseSchedule,
    *,
    steps: int,
    batch: int,
    lr: float,
    lr_schedule: str = "cosine",
    time_density: str = "logit_normal",
    same_time_share: float = SAME_TIME_SHARE,
    adaptive_p: float = ADAPTIVE_P,
    width: int = 64,
    depth: int = 3,
    frequencies: int = 0,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float64",
    desc: str | None = "MeanFlow",
) -> TrainedMeanFlow:
    """Train u_theta on the MeanFlow target (see the module) with Adam at `lr`, on the
    independent coupling of `mixture` and N(0, I). Deterministic in `seed`; memoized by content.
    `adaptive_p` = 0 is the plain squared loss."""
    if not isinstance(mixture, GaussianMixture):
        raise ValueError(f"train_meanflow takes a GaussianMixture, got {type(mixture).__name__}")
    settings = TrainSettings.checked(
        steps, batch, lr, lr_schedule, time_density, width, depth, frequencies, seed, device, dtype
    )
    if not (isinstance(same_time_share, int | float) and 0 <= same_time_share <= 1):
        raise ValueError(f"same_time_share must be in [0, 1], got {same_time_share!r}")
    if not (isinstance(adaptive_p, int | float) and math.isfinite(adaptive_p) and adaptive_p >= 0):
        raise ValueError(f"adaptive_p must be a finite number >= 0, got {adaptive_p!r}")
    share, p = float(same_time_share), float(adaptive_p)
    key = ("train_meanflow", mixture, path, settings, share, p)
    fitted = TRAINED.get(key, lambda: _fit(mixture, path, settings, share, p, desc))
    return dataclasses.replace(fitted, _model=None)


def _fit(mixture, path, settings, same_share: float, p: float, desc) -> TrainedMeanFlow:
    config = {
        "dim": mixture.dim,
        "width": settings.width,
        "depth": settings.depth,
        "n_times": 2,
        "frequencies": settings.frequencies,
        "dtype": settings.dtype,
    }
    network = build_network(config, settings.seed, settings.device)
    optimizer = settings.optimizer(network)
    generator = torch.Generator().manual_seed(settings.seed + DATA_SEED_OFFSET)
    stream = _Pairs(mixture, generator)
    density = TIME_DENSITIES[settings.time_density]
    to = dict(device=network.omega.device, dtype=network.dtype)
    losses = np.empty(settings.steps)
    start = time.perf_counter()
    for step in progress(range(settings.steps), desc=desc, disable=desc is None):
        x0, eps = stream.next(settings.batch)
        r, t = sample_times(density, path, settings.batch, same_share, generator)
        z, v = conditional_velocity(path, x0, eps, t)
        u, target = meanflow_target(network, z.to(**to), r.to(**to), t.to(**to), v.to(**to))
        squared = ((u - target) ** 2).sum(dim=1)
        weight = (squared.detach() + ADAPTIVE_C) ** -p
        optimizer.step((weight * squared).mean())
        losses[step] = float(squared.detach().mean())
    seconds = time.perf_counter() - start
    if not np.isfinite(losses).all():
        raise FloatingPointError(
            f"MeanFlow training diverged (lr {settings.lr:g}): a loss became non-finite"
        )
    return TrainedMeanFlow(network.eval(), path, losses, seconds)
