"""Denoisers trained on the toy mixtures of notebooks 01-02, as models every solver runs.

The standard denoising loss (Ho et al. 2020; in any parametrization, Salimans & Ho 2022):

    loss = E_{t, x_0, eps} |f_theta(alpha_t x_0 + sigma_t eps, t) - target(x_0, eps)|^2,

target eps ("noise"), x_0 ("data") or alpha eps - sigma x_0 ("v"), with x_0 drawn exactly from
the mixture every step, t uniform on the schedule's [t_min, t_max]. Its minimizer is the exact
model E[target | x_t], which the mixture gives in closed form, so a trained network's error is
measurable (workbench.models.decomposition).

Conditional training (Ho & Salimans 2022, classifier-free guidance): with `label_dropout=p`
the network is fed the class of each x_0 (one-hot), replaced by a null label with probability
p, so one network is both p(x | c) (`.model(label=c)`) and p(x) (`.model()`).

The network, Adam, the learning-rate schedule, the state as plain arrays and the training
loop are notebook 06's (workbench.flows.training): one MLP and one loop in the workbench.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from workbench.diffusion.guidance import GuidanceProblem
from workbench.diffusion.models import DiffusionModel, from_data_and_noise
from workbench.diffusion.schedules import DTYPE, NoiseSchedule, VPSchedule
from workbench.diffusion.study import SOLVER_PROBLEMS
from workbench.flows.training import (
    DATA_SEED_OFFSET,
    TRAINED,
    TrainSettings,
    VelocityMLP,
    build_network,
    check_device,
    network_from_state,
    network_state,
    run_training,
)
from workbench.models.adapters import from_denoiser
from workbench.registry import Registry, check_choice
from workbench.sweep import run_sweep
from workbench.toy.mixture import GaussianMixture

TRAIN_PREDICTIONS = ("noise", "data", "v")  # what the loss can regress on (x_0 and eps only)

# the mixtures of notebook 01 (SOLVER_PROBLEMS) and notebook 02's two-class one, by name
DENOISER_PROBLEMS: Registry = Registry("denoiser problem")
for _name in SOLVER_PROBLEMS:
    DENOISER_PROBLEMS.add(_name, SOLVER_PROBLEMS[_name], label=SOLVER_PROBLEMS.label(_name))
DENOISER_PROBLEMS.add(
    "two_class", lambda: GuidanceProblem.two_class().mixture, label="two classes (notebook 02)"
)


def best_device() -> str:
    """The one device setting's default: "cuda" when torch sees a GPU, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class _Labelled(nn.Module):
    """net(x, t) with a fixed class label (None: an unconditional network), as an nn.Module so
    that `from_denoiser` finds the network's dtype and device through its parameters."""

    def __init__(self, network: VelocityMLP, label: int | None):
        super().__init__()
        self.network, self.label = network, label

    def forward(self, x, t):
        label = None if self.label is None else torch.tensor(self.label, device=x.device)
        return self.network(x, t, label=label)


@dataclass
class TrainedDenoiser:
    """A network fitted with the denoising loss, its loss curve and its training seconds.

    `classes` are the mixture's class labels in the order of the network's one-hot (empty for an
    unconditional network); `label_dropout` the null-label probability it was trained with.
    `state()` is plain arrays and `from_state` rebuilds it: what the sweep cache stores.
    """

    network: VelocityMLP
    schedule: NoiseSchedule
    prediction: str
    classes: tuple[int, ...]
    label_dropout: float | None
    losses: np.ndarray
    seconds: float
    name: str = "trained denoiser"
    _models: dict = field(default_factory=dict, repr=False)

    def model(self, label: int | None = None) -> DiffusionModel:
        """The network as a DiffusionModel: of p(x | label), or with label None of p(x) (the null
        label of a network trained with label dropout > 0, or an unconditional network)."""
        if label is not None and not self.classes:
            raise ValueError(f"an unconditional denoiser takes no label, got {label!r}")
        if label is None and self.classes and not self.label_dropout:
            raise ValueError("trained without label dropout, the denoiser needs a label")
        if label is not None and label not in self.classes:
            raise ValueError(f"unknown label {label!r}; classes are {list(self.classes)}")
        if label not in self._models:
            index = None if not self.classes else (
                len(self.classes) if label is None else self.classes.index(label))  # fmt: skip
            model = from_denoiser(
                _Labelled(self.network, index), self.prediction, self.schedule,
                name=self.name + ("" if label is None else f" (label {label})"),
            )  # fmt: skip
            content = ("trained denoiser", network_state(self.network), index)
            self._models[label] = dataclasses.replace(model, content=content)
        return self._models[label]

    def state(self) -> dict[str, np.ndarray]:
        return network_state(self.network) | {
            "losses": np.asarray(self.losses, dtype=np.float64),
            "seconds": np.array(float(self.seconds)),
            "prediction": np.array(TRAIN_PREDICTIONS.index(self.prediction)),
            "classes": np.asarray(self.classes, dtype=np.int64),
            # -1 for None: the sweep cache's JSON holds no NaN
            "label_dropout": np.array(-1.0 if self.label_dropout is None else self.label_dropout),
        }

    @classmethod
    def from_state(cls, state, schedule: NoiseSchedule, device: str = "cpu") -> TrainedDenoiser:
        state = {k: np.asarray(v) for k, v in state.items()}
        network = network_from_state(state, device).eval()
        missing = [k for k in ("losses", "seconds", "prediction", "classes", "label_dropout")
                   if k not in state]  # fmt: skip
        if missing:
            raise ValueError(f"not a trained-denoiser state: missing {', '.join(missing)}")
        dropout = float(state["label_dropout"])
        return cls(
            network, schedule,
            TRAIN_PREDICTIONS[int(state["prediction"])],
            tuple(int(c) for c in state["classes"].reshape(-1)),
            None if dropout < 0 else dropout, state["losses"], float(state["seconds"]),
        )  # fmt: skip


def _check_dropout(label_dropout) -> float | None:
    if label_dropout is None:
        return None
    ok = isinstance(label_dropout, int | float) and not isinstance(label_dropout, bool)
    if not (ok and 0 <= label_dropout < 1):
        raise ValueError(f"label_dropout must be None or in [0, 1), got {label_dropout!r}")
    return float(label_dropout)


def train_denoiser(
    mixture: GaussianMixture,
    schedule: NoiseSchedule,
    *,
    prediction: str = "noise",
    steps: int,
    batch: int,
    lr: float,
    width: int = 64,
    depth: int = 3,
    seed: int = 0,
    label_dropout: float | None = None,
    lr_schedule: str = "cosine",
    device: str = "cpu",
    desc: str | None = "denoiser",
) -> TrainedDenoiser:
    """Fit a VelocityMLP (float64) with the denoising loss on exact draws of `mixture` (see the
    module). `label_dropout` None: unconditional; p in [0, 1): conditional on the class, null
    label with probability p. Deterministic in `seed`; memoized by content (flows' TRAINED)."""
    if not isinstance(mixture, GaussianMixture):
        raise ValueError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    check_choice("prediction", prediction, TRAIN_PREDICTIONS)
    dropout = _check_dropout(label_dropout)
    settings = TrainSettings.checked(
        steps, batch, lr, lr_schedule, "uniform", width, depth, 4, seed, device, "float64"
    )
    key = ("train_denoiser", mixture, schedule, prediction, dropout, settings)
    fitted = TRAINED.get(key, lambda: _fit(mixture, schedule, prediction, dropout, settings, desc))
    return dataclasses.replace(fitted, _models={})


def _fit(mixture, schedule, prediction, dropout, settings: TrainSettings, desc):
    classes = () if dropout is None else tuple(int(c) for c in mixture.classes)
    config = {"dim": mixture.dim, "width": settings.width, "depth": settings.depth,
              "frequencies": settings.frequencies, "n_labels": len(classes)}  # fmt: skip
    network = build_network(config, settings.seed, settings.device)
    generator = torch.Generator().manual_seed(settings.seed + DATA_SEED_OFFSET)
    to = dict(device=check_device(settings.device), dtype=network.dtype)

    def batch_loss() -> torch.Tensor:
        x0, component = mixture.sample(settings.batch, generator, return_components=True)
        eps = torch.randn(settings.batch, mixture.dim, generator=generator, dtype=DTYPE)
        t = settings.times(schedule, generator).reshape(-1, 1)
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        target = from_data_and_noise(x0, eps, prediction, alpha, sigma)
        label = None
        if classes:
            label = torch.searchsorted(mixture.classes, mixture.labels[component])
            dropped = torch.rand(settings.batch, generator=generator, dtype=DTYPE) < dropout
            label = torch.where(dropped, len(classes), label).to(to["device"])
        out = network((alpha * x0 + sigma * eps).to(**to), t.to(**to), label=label)
        return ((out - target.to(**to)) ** 2).sum(dim=1).mean()

    losses, seconds = run_training(network, settings, batch_loss, desc, "denoiser training")
    return TrainedDenoiser(network.eval(), schedule, prediction, classes, dropout, losses, seconds)


# ------------------------------------------------------------------ the cached set of runs
@dataclass(frozen=True)
class DenoiserBudget:
    """One training run of the cached set: its steps and width (the rest is fixed per set)."""

    steps: int
    width: int


DEFAULT = {"batch": 256, "lr": 3e-3, "depth": 3}  # every run's size besides its budget
# the default model: measured 15.6 s on the ring on a 2-core machine shared with other jobs
# (27 s under heavier load); 4000 steps took 56 s, so the largest budget is 3000
DEFAULT_BUDGET = DenoiserBudget(1500, 64)
BUDGETS = (DenoiserBudget(300, 32), DenoiserBudget(1500, 32), DEFAULT_BUDGET,
           DenoiserBudget(3000, 64))  # fmt: skip


def denoiser_cell(
    problem: str, steps: int, width: int, label_dropout: float | None, seed: int
) -> list[dict]:
    """One cached training run: a row with the state (plain arrays, losses included)."""
    trained = train_denoiser(
        DENOISER_PROBLEMS[problem](), VPSchedule.linear_ddpm(), steps=steps, width=width,
        label_dropout=label_dropout, seed=seed, desc=f"denoiser {problem} {steps}x{width}",
        **DEFAULT,
    )  # fmt: skip
    return [{"state": trained.state(), "seconds": trained.seconds}]


def trained_denoisers(
    problem: str = "ring",
    budgets=BUDGETS,
    *,
    label_dropout: float | None = None,
    seed: int = 0,
) -> dict[DenoiserBudget, TrainedDenoiser]:
    """The runs of `budgets` on a DENOISER_PROBLEMS mixture (DDPM linear schedule), trained once
    and cached on disk by `run_sweep` ("models-denoisers"): each with its training curve."""
    DENOISER_PROBLEMS[problem]
    dropout = _check_dropout(label_dropout)
    budgets = [b if isinstance(b, DenoiserBudget) else DenoiserBudget(*b) for b in budgets]
    cells = [{"problem": problem, "steps": b.steps, "width": b.width, "label_dropout": dropout,
              "seed": int(seed)} for b in budgets]  # fmt: skip
    rows = run_sweep(denoiser_cell, cells, name="models-denoisers")
    schedule = VPSchedule.linear_ddpm()
    return {
        b: TrainedDenoiser.from_state(state, schedule)
        for b, state in zip(budgets, rows.state, strict=True)
    }
