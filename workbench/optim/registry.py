"""One registry of the optimizers that race: how to build each from (params, lr, frequency).

Hyperparameters other than the learning rate are each method's published defaults, except
that weight decay is off everywhere (the problems have nothing to regularize) and the
preconditioning frequency can be overridden for the methods that have one. SOAP runs twice:
with its paper's betas (0.95, 0.95) and with Adam's (0.9, 0.999), which isolates what its
basis does from what its shorter second-moment memory does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim._common import check_lr, check_positive_int
from workbench.optim.muon import Muon
from workbench.optim.psgd import PSGDKron
from workbench.optim.shampoo import Shampoo
from workbench.optim.soap import SOAP
from workbench.registry import Registry


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one optimizer, and what it is."""

    name: str
    label: str
    preconditioner: str  # what shape of curvature model it keeps
    default_lr: float
    build: Callable[..., torch.optim.Optimizer]  # (params, lr, **options)
    default_frequency: int | None = None  # None: no preconditioning frequency

    @property
    def uses_frequency(self) -> bool:
        return self.default_frequency is not None

    def make(self, params, lr: float, frequency: int | None = None) -> torch.optim.Optimizer:
        """The optimizer at ``lr``; ``frequency`` None keeps its default.

        ``lr`` must be a finite number >= 0 and ``frequency`` an integer >= 1, for every
        optimizer (torch's SGD takes a NaN learning rate, and SGD, Adam and Adafactor an
        infinite one, without a word).
        """
        lr = check_lr(lr)
        if frequency is not None and not self.uses_frequency:
            raise ValueError(f"{self.name} has no preconditioning frequency")
        if frequency is not None:
            check_positive_int("frequency", frequency)
        options = {}
        if self.uses_frequency:
            options["precondition_frequency"] = frequency or self.default_frequency
        return self.build(params, lr=lr, **options)


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")
for _spec in (
    OptimizerSpec(
        "sgd",
        "SGD (momentum 0.9)",
        "none",
        0.1,
        lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    ),
    OptimizerSpec("adam", "Adam", "diagonal", 1e-3, torch.optim.Adam),
    OptimizerSpec("adafactor", "Adafactor", "factored diagonal", 1e-2, torch.optim.Adafactor),
    OptimizerSpec(
        "shampoo",
        "Shampoo (Adam grafting)",
        "Kronecker",
        1e-3,
        Shampoo,
        default_frequency=1,
    ),
    OptimizerSpec(
        "soap",
        "SOAP",
        "Kronecker eigenbasis + diagonal",
        3e-3,
        lambda params, lr, **kw: SOAP(params, lr=lr, weight_decay=0.0, **kw),
        default_frequency=10,
    ),
    OptimizerSpec(
        "soap_adam_betas",
        "SOAP (Adam's betas)",
        "Kronecker eigenbasis + diagonal",
        3e-3,
        lambda params, lr, **kw: SOAP(params, lr=lr, betas=(0.9, 0.999), weight_decay=0.0, **kw),
        default_frequency=10,
    ),
    OptimizerSpec(
        "psgd_kron", "PSGD-Kron", "Kronecker (fitted)", 1e-3, PSGDKron, default_frequency=1
    ),
    OptimizerSpec("muon", "Muon", "orthogonalized (matrices)", 0.02, Muon),
):
    OPTIMIZERS.add(_spec.name, _spec, label=_spec.label)


def optimizer_spec(name: str) -> OptimizerSpec:
    return OPTIMIZERS[name]


def make_optimizer(name: str, params, lr: float, frequency: int | None = None):
    """Build a registered optimizer: ``make_optimizer("soap", model.parameters(), 3e-3)``."""
    return optimizer_spec(name).make(params, lr, frequency)
