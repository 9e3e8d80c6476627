"""Trained flows on CPU: a small velocity MLP fitted by flow matching, then reflow.

Flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2022) regresses a network on the
conditional velocity of a path x_t = alpha(t) x_0 + sigma(t) eps:

    loss = E_{t, (x_0, eps)} |v_theta(x_t, t) - (alpha'(t) x_0 + sigma'(t) eps)|^2,

whose minimizer is the marginal velocity u_t(x) = E[alpha' x_0 + sigma' eps | x_t = x]. The pairs
(x_0, eps) come either from the independent coupling (x_0 from a `GaussianMixture`, eps from
N(0, I), fresh every step) or from given pairs: `reflow` draws noise, solves the previous model's
ODE from t = 1 to t = 0, and trains on those (data, noise) pairs, warm-started from the previous
weights (Lee, Lin & Fanti 2024 likewise start their 2-rectified flow from a pretrained model;
on the ring, 2000 steps: 1-step Euler error 0.135 and 1-NFE sliced Wasserstein 0.109 warm,
0.156 and 0.113 from a fresh network).

Errors are reported separately (the issue's decomposition), each against an exact reference:
`model_error` (learned vs exact velocity in L2 over p_t), `step_error` (k Euler steps of the
learned model vs its own fine ODE solution) and `sample_error` (the learned model's k-step
samples vs the exact target, sliced Wasserstein).

Precision: float64 by default (see `DTYPES`): results must be the same on any CPU, and float64
keeps the spread between MKL's code paths (MKL_CBWR=COMPATIBLE vs AVX2) at rounding level
through thousands of Adam steps. float32 runs about 2x faster per step on this toy.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.sampling import prior_noise
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.memo import Memo
from workbench.metrics import mean_l2_error, sliced_wasserstein
from workbench.progress import progress
from workbench.registry import Registry
from workbench.scaling.optimizers import adam_update
from workbench.toy.mixture import GaussianMixture

DTYPES: Registry[torch.dtype] = Registry(
    "dtype", {"float64": torch.float64, "float32": torch.float32}
)
FINE_STEPS = 256  # Euler steps of a fine ODE solve (Richardson-extrapolated, see fine_solution)
DATA_SEED_OFFSET = 10_000  # the minibatch stream of a seed differs from its initialization
TRAINED = Memo("trained flows", maxsize=32)


# ---------------------------------------------------------------- timestep densities
@dataclass(frozen=True)
class TimeDensity:
    """A density on s in [0, 1] (mapped onto a path's [t_min, t_max]), sampled by inverse CDF.

    `pdf(s)` and `cdf(s)` take and return float64 tensors; `quantile(u)` is the inverse CDF, so
    `sample` turns uniforms into draws one to one (a seed gives the same times on any machine).
    """

    name: str
    label: str
    pdf: Callable[[torch.Tensor], torch.Tensor]
    cdf: Callable[[torch.Tensor], torch.Tensor]
    quantile: Callable[[torch.Tensor], torch.Tensor]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws in [0, 1], float64."""
        return self.quantile(torch.rand(int(n), generator=generator, dtype=DTYPE))

    def content_key(self):
        return ("time density", self.name)


def _uniform() -> TimeDensity:
    return TimeDensity(
        "uniform",
        "uniform",
        pdf=lambda s: torch.ones_like(s),
        cdf=lambda s: s.clamp(0, 1),
        quantile=lambda u: u,
    )


U_SHAPED_A = 4.0  # Lee, Lin & Fanti's a (their README's training commands pass --a 4)


def _u_shaped(a: float = U_SHAPED_A) -> TimeDensity:
    """p(s) = a (e^{a s} + e^{a (1 - s)}) / (2 (e^a - 1)) on [0, 1]: Lee, Lin & Fanti 2024
    (arXiv 2405.20320), "Improving the Training of Rectified Flows", whose code (t_dist.py)
    draws s from the density a e^{a s} / (e^a - 1) and flips it to 1 - s for half the batch;
    the same mixture here by one inverse CDF: heavy at both ends, lowest at s = 1/2, where
    p(0) / p(1/2) = cosh(a / 2)."""
    scale = 2 * math.expm1(a)

    def pdf(s):
        return a * (torch.exp(a * s) + torch.exp(a * (1 - s))) / scale

    def cdf(s):
        s = s.clamp(0, 1)
        return (torch.exp(a * s) - torch.exp(a * (1 - s)) + math.exp(a) - 1) / scale

    def quantile(u):
        # e^{a s} = y solves y - e^a / y = c with c = scale u - e^a + 1
        c = scale * u - math.exp(a) + 1
        y = (c + torch.sqrt(c * c + 4 * math.exp(a))) / 2
        return (torch.log(y) / a).clamp(0, 1)

    return TimeDensity("u_shaped", f"U-shaped (a = {a:g}; Lee et al. 2024)", pdf, cdf, quantile)


LOGIT_NORMAL = (-0.4, 1.0)  # MeanFlow's (t, r) sampler: lognorm(-0.4, 1.0), Geng et al. 2025


def _logit_normal(mean: float = LOGIT_NORMAL[0], std: float = LOGIT_NORMAL[1]) -> TimeDensity:
    """s = sigmoid(mean + std z), z ~ N(0, 1) (MeanFlow's time sampler, with its parameters)."""
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=DTYPE), 1.0)

    def logit(s):
        return torch.log(s) - torch.log1p(-s)

    def pdf(s):
        z = (logit(s) - mean) / std
        return torch.exp(normal.log_prob(z)) / (std * s * (1 - s))

    return TimeDensity(
        "logit_normal",
        f"logit-normal (mean {mean:g}, std {std:g})",
        pdf,
        cdf=lambda s: normal.cdf((logit(s.clamp(1e-300, 1 - 1e-16)) - mean) / std),
        quantile=lambda u: torch.sigmoid(mean + std * normal.icdf(u.clamp(1e-16, 1 - 1e-16))),
    )


TIME_DENSITIES: Registry[TimeDensity] = Registry("time density")
for _density in (_uniform(), _u_shaped(), _logit_normal()):
    TIME_DENSITIES.add(_density.name, _density, label=_density.label)


def path_times(density: TimeDensity, path: NoiseSchedule, n: int, generator) -> torch.Tensor:
    """n training times on the path's range: t = t_min + (t_max - t_min) s, s ~ density."""
    return path.t_min + (path.t_max - path.t_min) * density.sample(n, generator)


# ---------------------------------------------------------------- the network
class VelocityMLP(nn.Module):
    """x, t_1..t_T -> R^dim: an MLP on [x, Fourier features of each time] (SiLU, `depth` hidden
    layers of `width`). Each time enters as (t, sin(2^j pi t), cos(2^j pi t)), j < frequencies:
    a network of x alone cannot resolve how the velocity turns over t in [0, 1]. `n_times` = 1
    for a velocity v(x, t), 2 for MeanFlow's u(z, r, t) (fed t and t - r, as the paper does).
    `n_labels` > 0 adds a class input (the trained denoisers of workbench.models): `label=` a
    (N,) integer tensor in 0..n_labels, fed one-hot, where n_labels itself is the null label
    of classifier-free guidance."""

    def __init__(
        self,
        dim: int,
        width: int = 64,
        depth: int = 3,
        *,
        n_times: int = 1,
        frequencies: int = 4,
        n_labels: int = 0,
        dtype: str = "float64",
    ):
        super().__init__()
        for name, value, low in (("dim", dim, 1), ("width", width, 1), ("depth", depth, 1)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(frequencies, int) and frequencies >= 0):
            raise ValueError(f"frequencies must be an integer >= 0, got {frequencies!r}")
        if not (isinstance(n_labels, int) and n_labels >= 0):
            raise ValueError(f"n_labels must be an integer >= 0, got {n_labels!r}")
        self.config = {
            "dim": dim,
            "width": width,
            "depth": depth,
            "n_times": n_times,
            "frequencies": frequencies,
        }
        if n_labels:  # only then: the saved states of unconditional networks keep their keys
            self.config["n_labels"] = n_labels
        self.dtype, self.dtype_name = DTYPES[dtype], dtype
        self.register_buffer(
            "omega", math.pi * 2.0 ** torch.arange(frequencies, dtype=self.dtype), persistent=False
        )
        features = dim + n_times * (1 + 2 * frequencies) + (n_labels + 1 if n_labels else 0)
        layers: list[nn.Module] = []
        for n_in in [features] + [width] * (depth - 1):
            layers += [nn.Linear(n_in, width, dtype=self.dtype), nn.SiLU()]
        layers.append(nn.Linear(width, dim, dtype=self.dtype))
        self.net = nn.Sequential(*layers)

    def time_features(self, t: torch.Tensor, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=self.dtype, device=self.omega.device).reshape(-1, 1)
        t = t.expand(n, 1) if t.shape[0] == 1 else t
        angles = t * self.omega
        return torch.cat([t, torch.sin(angles), torch.cos(angles)], dim=1)

    def forward(self, x: torch.Tensor, *times, label: torch.Tensor | None = None) -> torch.Tensor:
        if len(times) != self.config["n_times"]:
            raise ValueError(f"the network takes {self.config['n_times']} times, got {len(times)}")
        features = [x] + [self.time_features(t, x.shape[0]) for t in times]
        n_labels = self.config.get("n_labels", 0)
        if (label is None) != (n_labels == 0):
            raise ValueError(f"the network takes {'a' if n_labels else 'no'} label")
        if n_labels:
            label = torch.as_tensor(label, device=x.device).reshape(-1).expand(x.shape[0])
            features.append(nn.functional.one_hot(label, n_labels + 1).to(self.dtype))
        return self.net(torch.cat(features, dim=1))


class Adam:
    """torch.optim.Adam (defaults) on a network's parameters through the workbench's own
    `adam_update` (the same formulas op for op, tested against torch.optim): torch.optim's
    first use imports torch._dynamo, which costs seconds, more than a SMOKE training run.
    `lr_scale(step)` multiplies the learning rate (the schedule)."""

    def __init__(self, network: nn.Module, lr: float, lr_scale: Callable[[int], float]):
        self.params = [p for p in network.parameters() if p.requires_grad]
        self.states: list[dict] = [{} for _ in self.params]
        self.lr, self.lr_scale, self.steps = lr, lr_scale, 0

    def step(self, loss: torch.Tensor) -> None:
        grads = torch.autograd.grad(loss, self.params)
        lr = self.lr * self.lr_scale(self.steps)
        self.steps += 1
        with torch.no_grad():
            for param, grad, state in zip(self.params, grads, self.states, strict=True):
                adam_update(param, grad, state, lr, self.steps)


def _constant(steps: int) -> Callable[[int], float]:
    return lambda step: 1.0


def _cosine(steps: int) -> Callable[[int], float]:
    return lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))


LR_SCHEDULES: Registry[Callable[[int], Callable[[int], float]]] = Registry("lr schedule")
LR_SCHEDULES.add("constant", _constant, label="constant")
LR_SCHEDULES.add("cosine", _cosine, label="cosine decay to 0")


def build_network(config: dict, seed: int, device: str) -> VelocityMLP:
    """A VelocityMLP initialized from `seed` (torch's default init on a forked global stream,
    so building a network never moves the caller's random state)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return VelocityMLP(**config).to(device)


def check_device(device: str) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    return device


def as_velocity_model(
    network: VelocityMLP, path: NoiseSchedule, name: str, content
) -> DiffusionModel:
    """The network as a `DiffusionModel` (prediction "velocity"): float64 CPU in and out, the
    network's own dtype and device inside; t a scalar or one time per row."""
    device = next(network.parameters()).device

    def fn(x, t):
        with torch.no_grad():
            out = network(x.to(device, network.dtype), torch.as_tensor(t).to(device))
        return out.to("cpu", DTYPE)

    return DiffusionModel(fn, "velocity", path, name, content)


# ---------------------------------------------------------------- training
@dataclass
class TrainedFlow:
    """A velocity network fitted by flow matching, with its loss curve and training time.

    `state()` is plain numpy arrays (parameters, losses, seconds, the network's config) and
    `from_state(state, path)` rebuilds it: what a sweep cache stores, never a pickle.
    """

    network: VelocityMLP
    path: NoiseSchedule
    losses: np.ndarray
    seconds: float
    name: str = "trained flow"
    _model: DiffusionModel | None = field(default=None, repr=False)

    @property
    def model(self) -> DiffusionModel:
        if self._model is None:
            self._model = as_velocity_model(self.network, self.path, self.name, self.content())
        return self._model

    def content(self):
        """What the model computes, for content-keyed memos: its config and parameters."""
        return ("velocity MLP", network_state(self.network))

    def state(self) -> dict[str, np.ndarray]:
        return network_state(self.network) | {
            "losses": np.asarray(self.losses, dtype=np.float64),
            "seconds": np.array(float(self.seconds)),
        }

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray], path: NoiseSchedule, device: str = "cpu"
    ) -> TrainedFlow:
        network = network_from_state(state, device)
        return cls(network.eval(), path, np.asarray(state["losses"]), float(state["seconds"]))


def network_state(network: VelocityMLP) -> dict[str, np.ndarray]:
    """The network as plain arrays: "param/<name>" (float64 copies) and "config/<key>" (0-d
    integers; the dtype as its index in DTYPES)."""
    state = {
        f"param/{name}": p.detach().to("cpu", DTYPE).numpy().copy()
        for name, p in network.state_dict().items()
    }
    state |= {f"config/{k}": np.array(v) for k, v in network.config.items()}
    state["config/dtype"] = np.array(list(DTYPES).index(network.dtype_name))
    return state


def network_from_state(state: dict[str, np.ndarray], device: str = "cpu") -> VelocityMLP:
    missing = [k for k in ("config/dim", "config/width", "config/depth") if k not in state]
    if missing:
        raise ValueError(f"not a trained-network state: missing {', '.join(missing)}")
    config = {
        k.removeprefix("config/"): int(v) for k, v in state.items() if k.startswith("config/")
    }
    config["dtype"] = list(DTYPES)[config["dtype"]]
    network = VelocityMLP(**config).to(check_device(device))
    params = {
        k.removeprefix("param/"): torch.from_numpy(np.asarray(v))
        for k, v in state.items()
        if k.startswith("param/")
    }
    network.load_state_dict({k: v.to(network.dtype) for k, v in params.items()})
    return network


class _Pairs:
    """Minibatches of (x_0, eps): from the independent coupling or from given pairs."""

    def __init__(self, data, generator: torch.Generator):
        self.generator = generator
        if isinstance(data, GaussianMixture):
            self.mixture, self.pairs = data, None
            self.dim = data.dim
        else:
            x0, eps = _check_pairs(data)
            self.mixture, self.pairs = None, (x0, eps)
            self.dim = x0.shape[1]

    def next(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pairs is None:
            x0 = self.mixture.sample(batch, self.generator)
            eps = torch.randn(batch, self.dim, generator=self.generator, dtype=DTYPE)
            return x0, eps
        x0, eps = self.pairs
        index = torch.randint(x0.shape[0], (batch,), generator=self.generator)
        return x0[index], eps[index]


def _check_pairs(data) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise ValueError(
            "data_or_pairs must be a GaussianMixture or a pair (x_0, eps) of (N, D) arrays, "
            f"got {type(data).__name__}"
        )
    x0, eps = (torch.as_tensor(a, dtype=DTYPE) for a in data)
    if x0.ndim != 2 or x0.shape != eps.shape or x0.shape[0] < 1:
        raise ValueError(
            f"pairs must be two (N, D) arrays of one shape, got {tuple(x0.shape)} "
            f"and {tuple(eps.shape)}"
        )
    if not (torch.isfinite(x0).all() and torch.isfinite(eps).all()):
        raise ValueError("pairs hold NaN or infinity")
    return x0, eps


def _check_positive_int(name: str, value) -> int:
    if not (isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_count(name: str, value) -> int:
    if not (isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _check_lr(lr) -> float:
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    return float(lr)


def conditional_velocity(path: NoiseSchedule, x0, eps, t) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, alpha'(t) x_0 + sigma'(t) eps) for one time per row (t of shape (N,))."""
    t = t.reshape(-1, 1)
    d_alpha, d_sigma = path.derivatives(t)
    return path.alpha(t) * x0 + path.sigma(t) * eps, d_alpha * x0 + d_sigma * eps


def train_flow(
    data_or_pairs,
    path: NoiseSchedule,
    *,
    steps: int,
    batch: int,
    lr: float,
    lr_schedule: str = "cosine",
    time_density: str = "uniform",
    width: int = 64,
    depth: int = 3,
    frequencies: int = 4,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float64",
    initial: TrainedFlow | None = None,
    name: str = "1-rectified flow",
    desc: str | None = "flow matching",
) -> TrainedFlow:
    """Fit a VelocityMLP to the conditional velocity of `path` with Adam at `lr` (see the module).

    `data_or_pairs`: a GaussianMixture (independent coupling, fresh x_0 and eps every step) or a
    pair (x_0, eps) of (N, D) arrays (minibatches drawn from the pairs with replacement).
    `lr_schedule` from LR_SCHEDULES ("cosine": lr decays to 0 over the run, which lowers the
    final model error at equal steps; "constant"). `initial` warm-starts from another trained
    flow's weights (its width and depth win). Deterministic: `seed` fixes the initialization
    and the minibatch and time streams. Memoized by content (`TRAINED`).
    """
    settings = TrainSettings.checked(
        steps, batch, lr, lr_schedule, time_density, width, depth, frequencies, seed, device, dtype
    )
    if not isinstance(data_or_pairs, GaussianMixture):
        data_or_pairs = _check_pairs(data_or_pairs)
    initial_content = None if initial is None else initial.content()
    key = ("train_flow", data_or_pairs, path, settings, initial_content)
    fitted = TRAINED.get(key, lambda: _fit(data_or_pairs, path, settings, initial, desc))
    return dataclasses.replace(fitted, name=name, _model=None)


@dataclass(frozen=True)
class TrainSettings:
    """What a training run depends on besides its data and path (checked once, on entry)."""

    steps: int
    batch: int
    lr: float
    lr_schedule: str
    time_density: str
    width: int
    depth: int
    frequencies: int
    seed: int
    device: str
    dtype: str

    @classmethod
    def checked(
        cls,
        steps,
        batch,
        lr,
        lr_schedule,
        time_density,
        width,
        depth,
        frequencies,
        seed,
        device,
        dtype,
    ) -> TrainSettings:
        LR_SCHEDULES[lr_schedule], TIME_DENSITIES[time_density], DTYPES[dtype]
        if not (isinstance(seed, int | np.integer) and not isinstance(seed, bool)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        return cls(
            _check_positive_int("steps", steps),
            _check_positive_int("batch", batch),
            _check_lr(lr),
            lr_schedule,
            time_density,
            _check_positive_int("width", width),
            _check_positive_int("depth", depth),
            _check_count("frequencies", frequencies),
            int(seed),
            str(check_device(device)),
            dtype,
        )

    def optimizer(self, network: nn.Module) -> Adam:
        return Adam(network, self.lr, LR_SCHEDULES[self.lr_schedule](self.steps))

    def times(self, path: NoiseSchedule, generator: torch.Generator) -> torch.Tensor:
        return path_times(TIME_DENSITIES[self.time_density], path, self.batch, generator)


def _fit(data, path, settings: TrainSettings, initial, desc) -> TrainedFlow:
    if initial is None:
        config = {
            "width": settings.width,
            "depth": settings.depth,
            "frequencies": settings.frequencies,
            "dtype": settings.dtype,
        }
    else:
        config = dict(initial.network.config) | {"dtype": initial.network.dtype_name}
    generator = torch.Generator().manual_seed(settings.seed + DATA_SEED_OFFSET)
    stream = _Pairs(data, generator)
    config["dim"] = stream.dim
    network = build_network(config, settings.seed, settings.device)
    if initial is not None:
        network.load_state_dict(initial.network.state_dict())
    to = dict(device=network.omega.device, dtype=network.dtype)

    def batch_loss() -> torch.Tensor:
        x0, eps = stream.next(settings.batch)
        t = settings.times(path, generator)
        x_t, target = conditional_velocity(path, x0, eps, t)
        prediction = network(x_t.to(**to), t.to(**to))
        return ((prediction - target.to(**to)) ** 2).sum(dim=1).mean()

    losses, seconds = run_training(network, settings, batch_loss, desc, "flow matching")
    return TrainedFlow(network.eval(), path, losses, seconds)


def run_training(
    network: nn.Module, settings: TrainSettings, batch_loss: Callable[[], torch.Tensor], desc,
    what: str,
) -> tuple[np.ndarray, float]:  # fmt: skip
    """`settings.steps` Adam steps on `batch_loss()` (a fresh minibatch's loss each call), with a
    progress bar (`desc`; None: none): the losses and the seconds taken. A non-finite loss
    raises FloatingPointError naming `what` diverged. Flow matching and the trained denoisers
    of workbench.models share it."""
    optimizer = settings.optimizer(network)
    losses = np.empty(settings.steps)
    start = time.perf_counter()
    for step in progress(range(settings.steps), desc=desc, disable=desc is None):
        loss = batch_loss()
        optimizer.step(loss)
        losses[step] = float(loss.detach())
    seconds = time.perf_counter() - start
    if not np.isfinite(losses).all():
        raise FloatingPointError(f"{what} diverged (lr {settings.lr:g}): a loss became non-finite")
    return losses, seconds


# ---------------------------------------------------------------- ODE solves and reflow
def fine_solution(model: DiffusionModel, x1: torch.Tensor, steps: int = FINE_STEPS) -> torch.Tensor:
    """The model's ODE from t_max to t_min to third order: Euler (`euler_solution`) on uniform
    grids of steps, steps / 2 and steps / 4, Richardson-extrapolated (Euler's error is
    c1 h + c2 h^2 + ... for a smooth velocity; (8 x_h - 6 x_2h + x_4h) / 3 cancels both terms).
    Measured at 256 steps: 9e-7 on the single Gaussian's closed form, 2e-5 on the exact ring's
    sharper velocity, against 4e-3 for 512 plain Euler steps."""
    if steps % 4:
        raise ValueError(f"steps must be a multiple of 4, got {steps}")
    fine, half, quarter = (euler_solution(model, x1, n) for n in (steps, steps // 2, steps // 4))
    return (8 * fine - 6 * half + quarter) / 3


def reflow(
    trained: TrainedFlow,
    n_pairs: int,
    *,
    rounds: int = 1,
    steps: int,
    batch: int,
    lr: float,
    lr_schedule: str = "cosine",
    time_density: str = "uniform",
    seed: int = 0,
    device: str = "cpu",
    ode_steps: int = FINE_STEPS,
    warm_start: bool = True,
    desc: str | None = "reflow",
) -> list[TrainedFlow]:
    """`rounds` reflow rounds: round k draws n_pairs fresh noises, solves the previous model's
    ODE from t = 1 to t = 0 (`fine_solution`) and trains on those (data, noise) pairs, starting
    from the previous weights with a fresh Adam state (`warm_start`; else from a fresh network
    of the same size, seeded by the round). Returns the 2-, 3-, ... rectified flows; each
    round is memoized like `train_flow`."""
    n_pairs = _check_positive_int("n_pairs", n_pairs)
    rounds = _check_positive_int("rounds", rounds)
    path = trained.path
    config = trained.network.config
    size = {k: config[k] for k in ("width", "depth", "frequencies")}
    flows, previous = [], trained
    for k in range(rounds):
        x1 = prior_noise(path, n_pairs, config["dim"], seed=seed + 1000 * (k + 1))
        x0 = fine_solution(previous.model, x1, ode_steps)
        previous = train_flow(
            (x0, x1),
            path,
            steps=steps,
            batch=batch,
            lr=lr,
            lr_schedule=lr_schedule,
            time_density=time_density,
            seed=seed + k + 1,
            device=device,
            dtype=previous.network.dtype_name,
            initial=previous if warm_start else None,
            name=f"{k + 2}-rectified flow",
            **size,
            desc=None if desc is None else f"{desc} round {k + 1}",
        )
        flows.append(previous)
    return flows


# ---------------------------------------------------------------- errors, reported separately
def exact_velocity_model(mixture: GaussianMixture, path: NoiseSchedule) -> DiffusionModel:
    """The mixture's exact marginal velocity u_t on `path` (from the exact denoiser)."""
    return mixture.denoiser(path).as_prediction("velocity")


def velocity_model(flow) -> DiffusionModel:
    """A trained flow's (or a trained MeanFlow's) velocity model; a DiffusionModel as given."""
    return flow if isinstance(flow, DiffusionModel) else flow.model


def model_error(flow, mixture: GaussianMixture, *, n: int = 4096, seed: int = 0) -> float:
    """E_{t ~ U, x_t ~ p_t} |v_theta(x_t, t) - u_t(x_t)|^2 against the exact velocity (Monte
    Carlo over n draws of (t, x_0, eps); t uniform on the path's open range). `flow`: a
    TrainedFlow, a TrainedMeanFlow (its r = t velocity) or any DiffusionModel. For a k-RF with
    k >= 2 this measures how far reflow moved the field from the independent coupling's u_t,
    which is its purpose, not an error: its own exact target (the rectified coupling's velocity)
    has no closed form, and its error shows as `sample_error(..., steps=None)`."""
    model = velocity_model(flow).as_prediction("velocity")
    path = model.schedule
    generator = torch.Generator().manual_seed(int(seed))
    x0 = mixture.sample(n, generator)
    eps = torch.randn(n, mixture.dim, generator=generator, dtype=DTYPE)
    lo, hi = path.t_min + 1e-6, path.t_max - 1e-6  # the exact velocity is 0/0 at the ends
    t = (lo + (hi - lo) * torch.rand(n, generator=generator, dtype=DTYPE)).reshape(-1, 1)
    x_t = path.alpha(t) * x0 + path.sigma(t) * eps
    exact = exact_velocity_model(mixture, path)(x_t, t)
    return float(((model(x_t, t) - exact) ** 2).sum(dim=1).mean())


def euler_states(model: DiffusionModel, x1: torch.Tensor, steps: int) -> Iterator[torch.Tensor]:
    """`steps` Euler steps in t, x <- x + (s - t) v(x, t), on a uniform grid from t_max to
    t_min: the flow-matching sampler on any path (DDIM coincides with it on the rectified path
    only; elsewhere DDIM is an exponential integrator). Yields x1, then the state after each
    step."""
    steps = _check_positive_int("steps", steps)
    velocity = model.as_prediction("velocity")
    path = model.schedule
    grid = torch.linspace(path.t_max, path.t_min, steps + 1, dtype=DTYPE)
    x = torch.as_tensor(x1, dtype=DTYPE)
    yield x
    for t, s in itertools.pairwise(grid):
        x = x + (s - t) * velocity(x, t)
        yield x


def euler_solution(model: DiffusionModel, x1: torch.Tensor, steps: int) -> torch.Tensor:
    """The endpoint of `euler_states` (the states on the way are not kept)."""
    return collections.deque(euler_states(model, x1, steps), maxlen=1)[0]


def flow_samples(flow, x1: torch.Tensor, steps: int | None) -> torch.Tensor:
    """x_0 from noise x1: `steps` Euler steps of a velocity model (a TrainedFlow or a
    DiffusionModel), or a TrainedMeanFlow's own `steps` jumps; steps=None is the fine ODE
    solution of the velocity (of a MeanFlow: its r = t network)."""
    if steps is not None and not isinstance(flow, DiffusionModel) and hasattr(flow, "sample"):
        return flow.sample(x1, steps)
    model = velocity_model(flow)
    return fine_solution(model, x1) if steps is None else euler_solution(model, x1, steps)


def step_error(flow, x1: torch.Tensor, steps: int) -> float:
    """Mean |x_k - x_fine|: `steps` steps of the learned model vs its own fine ODE solution from
    the same noise (the discretization error alone, no model error)."""
    return mean_l2_error(flow_samples(flow, x1, steps), flow_samples(flow, x1, None))


def sample_error(
    flow, mixture: GaussianMixture, x1: torch.Tensor, steps: int | None, *, seed: int = 0
) -> float:
    """Sliced Wasserstein-2 from the learned model's `steps`-step samples (None: its fine ODE
    solution, the model's error alone) to as many exact draws of the target. Its floor is the
    two samples' own distance: ~0.1 at 4000 points on the ring (mode counts fluctuate)."""
    target = mixture.sample(x1.shape[0], seed + DATA_SEED_OFFSET)
    return sliced_wasserstein(flow_samples(flow, x1, steps), target, seed=seed)
