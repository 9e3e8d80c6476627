"""Parametrizations as per-layer rules: init std, forward multiplier, learning-rate multipliers.

An abc-parametrization (Yang & Hu, "Feature Learning in Infinite-Width Neural Networks")
writes every weight as W_eff = multiplier * w, draws w with a stated std, and trains w with
the global learning rate times a per-parameter multiplier. A layer's *role* says which of
its dimensions grow with the model's width:

    input   fan_in fixed (the task's input), fan_out = width
    hidden  fan_in = fan_out = width (square)
    output  fan_in = width, fan_out fixed (the task's outputs)

Rules take (fan_in, fan_out) and the base shapes (base_fan_in, base_fan_out): a fixed
dimension has base == actual, so its width multiplier is 1. Only muP uses the base shapes;
at base width muP *is* SP, which is what lets a proxy tuned in SP carry over.

Weights are drawn uniform(-sqrt(3) std, sqrt(3) std), the distribution of torch.nn.Linear, so
that SP is exactly PyTorch's default (weights and biases uniform(+-1/sqrt(fan_in))).

Adam and Adam-atan2 share one learning-rate rule (their updates are invariant to the
gradient's scale); SGD has its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from workbench.registry import Registry, check_choice
from workbench.scaling.optimizers import SCALING_OPTIMIZERS

ROLES = ("input", "hidden", "output")
DEFAULT_BASE_WIDTH = 32


@dataclass(frozen=True)
class ParamRule:
    """How one parameter tensor is initialized, used in the forward pass, and trained."""

    init_std: float
    multiplier: float
    lr_sgd: float
    lr_adam: float

    def lr(self, optimizer: str) -> float:
        family = SCALING_OPTIMIZERS[optimizer].family
        return self.lr_sgd if family == "sgd" else self.lr_adam

    def scaled(self, *, multiplier: float = 1.0, lr_sgd: float = 1.0, lr_adam: float = 1.0):
        lr_sgd, lr_adam = self.lr_sgd * lr_sgd, self.lr_adam * lr_adam
        return ParamRule(self.init_std, self.multiplier * multiplier, lr_sgd, lr_adam)


@dataclass(frozen=True)
class LayerRule:
    weight: ParamRule
    bias: ParamRule


@dataclass(frozen=True)
class Parametrization:
    name: str
    label: str
    rule: Callable[[str, int, int, int, int], LayerRule]
    summary: str


def _pytorch_std(fan_in: int) -> float:
    # nn.Linear draws weight and bias uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)): std 1/sqrt(3 fan_in)
    return 1.0 / math.sqrt(3.0 * fan_in)


def _standard(role, fan_in, fan_out, base_fan_in, base_fan_out) -> LayerRule:
    """SP: PyTorch defaults, one global learning rate."""
    std = _pytorch_std(fan_in)
    return LayerRule(ParamRule(std, 1.0, 1.0, 1.0), ParamRule(std, 1.0, 1.0, 1.0))


def _ntk(role, fan_in, fan_out, base_fan_in, base_fan_out) -> LayerRule:
    """NTK: unit-variance weights, 1/sqrt(fan_in) forward multiplier, zero biases, global lr."""
    weight = ParamRule(1.0, 1.0 / math.sqrt(fan_in), 1.0, 1.0)
    return LayerRule(weight, ParamRule(0.0, 1.0, 1.0, 1.0))


def _mup(role, fan_in, fan_out, base_fan_in, base_fan_out) -> LayerRule:
    """muP as the `mup` package implements it (MuReadout, set_base_shapes, MuAdam / MuSGD).

    Start from SP; with width multipliers m_in = fan_in / base_fan_in, m_out = fan_out /
    base_fan_out (1 for a fixed dimension):
      init: biases of width-fan_in layers and the readout weight are scaled by sqrt(m_in)
            (set_base_shapes' rescaling), so their std is that of the base model;
      forward: the readout multiplies its input by 1/m_in (MuReadout, output_mult=1);
      Adam: matrix-like (both dims grow: hidden) lr / m (MuAdam uses the first growing dim,
            fan_out; hidden layers are square so it equals m_in), everything else lr;
      SGD: vector-like (one dim grows) lr * m of that dim; matrix-like lr * m_out / m_in;
           the readout bias (no dim grows) lr.
    """
    m_in, m_out = fan_in / base_fan_in, fan_out / base_fan_out
    std = _pytorch_std(fan_in)
    if role == "input":
        weight = ParamRule(std, 1.0, m_out, 1.0)
        bias = ParamRule(std, 1.0, m_out, 1.0)
    elif role == "hidden":
        weight = ParamRule(std, 1.0, m_out / m_in, 1.0 / m_out)
        bias = ParamRule(std * math.sqrt(m_in), 1.0, m_out, 1.0)
    else:
        weight = ParamRule(std * math.sqrt(m_in), 1.0 / m_in, m_in, 1.0)
        bias = ParamRule(std * math.sqrt(m_in), 1.0, 1.0, 1.0)
    return LayerRule(weight, bias)


def _umup(role, fan_in, fan_out, base_fan_in, base_fan_out) -> LayerRule:
    """u-muP (Blake et al. 2024): unit-variance init, scale in the forward multipliers.

    Forward: input and hidden 1/sqrt(fan_in) (unit-scaled matmul), readout 1/fan_in. No base
    shapes: the rules are absolute in the width. Layers are bias-free, as in the paper's
    models and the unit_scaling library's default: biases stay at zero (init 0, learning
    rate 0). Adam: hidden lr / sqrt(fan_in); input lr / sqrt(fan_out) (the paper's embedding
    rule); readout lr. SGD (not in the paper's recipe; plain autograd, no unit-scaled
    backward): lr * width for every weight, the rule that keeps each layer's update to W_eff
    at the muP size (Delta W_eff ~ 1/width for hidden and readout, ~1 for the input layer).
    """
    no_bias = ParamRule(0.0, 1.0, 0.0, 0.0)
    if role == "input":
        weight = ParamRule(1.0, 1.0 / math.sqrt(fan_in), fan_out, 1.0 / math.sqrt(fan_out))
    elif role == "hidden":
        weight = ParamRule(1.0, 1.0 / math.sqrt(fan_in), fan_in, 1.0 / math.sqrt(fan_in))
    else:
        weight = ParamRule(1.0, 1.0 / fan_in, fan_in, 1.0)
    return LayerRule(weight, no_bias)


PARAMETRIZATIONS: Registry[Parametrization] = Registry("parametrization")
for _parametrization in (
    Parametrization("sp", "SP", _standard, "PyTorch defaults, one global learning rate"),
    Parametrization("ntk", "NTK", _ntk, "unit init, 1/sqrt(fan_in) multipliers"),
    Parametrization("mup", "muP", _mup, "the mup package's muP, relative to a base width"),
    Parametrization("umup", "u-muP", _umup, "unit-scaled muP, absolute in the width"),
):
    PARAMETRIZATIONS.add(_parametrization.name, _parametrization)


def layer_rule(
    parametrization: str,
    role: str,
    fan_in: int,
    fan_out: int,
    *,
    base_fan_in: int | None = None,
    base_fan_out: int | None = None,
) -> LayerRule:
    """The rule of one layer; base shapes default to the actual ones (width multiplier 1)."""
    spec = PARAMETRIZATIONS[parametrization]
    check_choice("layer role", role, ROLES)
    for name, value in (("fan_in", fan_in), ("fan_out", fan_out)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    base_fan_in = fan_in if base_fan_in is None else base_fan_in
    base_fan_out = fan_out if base_fan_out is None else base_fan_out
    return spec.rule(role, fan_in, fan_out, base_fan_in, base_fan_out)


# ------------------------------------------------------------------------ residual depth
@dataclass(frozen=True)
class ResidualScaling:
    """Residual branch multiplier L^-alpha and the learning-rate correction that goes with it.

    With h_{l+1} = h_l + L^-alpha f_l(h_l), each block's update to the residual stream must be
    O(1/L) for the sum over L blocks to stay O(1) (Bordelon et al. 2023; Yang et al.,
    Tensor Programs VI). Adam moves a branch weight by O(lr) per entry, so the block moves
    the stream by L^-alpha lr: lr ~ L^(alpha - 1). SGD's gradient carries the multiplier once
    more: lr ~ L^(2 alpha - 1). alpha = 1/2 gives Depth-muP: lr / sqrt(L) for Adam, a
    depth-independent lr for SGD.
    """

    alpha: float
    depth: int

    @property
    def multiplier(self) -> float:
        return self.depth**-self.alpha

    @property
    def lr_adam(self) -> float:
        return self.depth ** (self.alpha - 1.0)

    @property
    def lr_sgd(self) -> float:
        return self.depth ** (2.0 * self.alpha - 1.0)


def residual_scaling(alpha: float, depth: int) -> ResidualScaling:
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not (isinstance(depth, int) and depth >= 1):
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    return ResidualScaling(float(alpha), depth)
