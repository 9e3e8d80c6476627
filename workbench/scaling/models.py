"""MLPs and residual MLPs as batched tensors: R independent runs in one forward pass.

Every parameter carries a leading run dimension: a weight is (R, fan_in, fan_out), a bias
(R, 1, fan_out), and a batch of inputs (R, B, d_in). One torch.bmm per layer evaluates all R
runs; since no run's loss touches another run's parameters, one backward pass of the summed
loss gives every run its own gradient.

    mlp     x -> relu(input) -> depth x relu(hidden) -> output
    resmlp  x -> input -> depth x [h + L^-alpha * hidden(relu(h))] -> output   (pre-activation
            residual blocks with one matrix each, L = depth; Bordelon et al. 2023)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.registry import check_choice
from workbench.scaling.optimizers import SCALING_OPTIMIZERS
from workbench.scaling.parametrizations import (
    DEFAULT_BASE_WIDTH,
    PARAMETRIZATIONS,
    LayerRule,
    ParamRule,
    layer_rule,
    residual_scaling,
)

MODELS = ("mlp", "resmlp")
DEFAULT_DEPTH = 2
DEFAULT_ALPHA = 0.5


@dataclass(frozen=True)
class Layer:
    name: str
    role: str
    fan_in: int
    fan_out: int
    rule: LayerRule
    branch: float | None = None  # residual branch multiplier; None outside residual blocks


@dataclass(frozen=True)
class Model:
    kind: str
    width: int
    depth: int
    parametrization: str
    alpha: float | None
    layers: tuple[Layer, ...]

    def param_rules(self) -> dict[str, ParamRule]:
        """name -> rule, with `layer.weight` before `layer.bias`, layers in forward order."""
        rules = {}
        for layer in self.layers:
            rules[f"{layer.name}.weight"] = layer.rule.weight
            rules[f"{layer.name}.bias"] = layer.rule.bias
        return rules

    def lr_multipliers(self, optimizer: str) -> dict[str, float]:
        """Each parameter's learning rate as a multiple of the global learning rate."""
        SCALING_OPTIMIZERS.check(optimizer)
        return {name: rule.lr(optimizer) for name, rule in self.param_rules().items()}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for layer in self.layers:
            shapes[f"{layer.name}.weight"] = (layer.fan_in, layer.fan_out)
            shapes[f"{layer.name}.bias"] = (1, layer.fan_out)
        return shapes


def build_model(
    model: str = "mlp",
    *,
    width: int,
    depth: int = DEFAULT_DEPTH,
    d_in: int,
    d_out: int,
    parametrization: str,
    alpha: float | None = None,
    base_width: int = DEFAULT_BASE_WIDTH,
    lr_correction: bool = True,
) -> Model:
    """A model's layers with their rules. `depth` counts hidden (width x width) layers, which
    are residual blocks in a resmlp; `alpha` is the residual exponent (resmlp only, default
    1/2) and `lr_correction` whether the blocks' learning rates get the matching depth factor
    (False: a plain residual net's global learning rate); `base_width` is muP's base model
    width (other parametrizations ignore it)."""
    kind = check_choice("model", model, MODELS)
    PARAMETRIZATIONS.check(parametrization)
    for name, value in (("width", width), ("depth", depth), ("base_width", base_width)):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if kind == "mlp" and alpha is not None:
        raise ValueError("alpha (residual branch exponent) applies to model='resmlp' only")
    if not isinstance(lr_correction, bool):
        raise ValueError(f"lr_correction must be True or False, got {lr_correction!r}")
    scaling = None
    if kind == "resmlp":
        alpha = DEFAULT_ALPHA if alpha is None else alpha
        scaling = residual_scaling(alpha, depth)
        alpha = scaling.alpha

    def rule(role, fan_in, fan_out, base_in, base_out):
        return layer_rule(
            parametrization, role, fan_in, fan_out, base_fan_in=base_in, base_fan_out=base_out
        )

    layers = [Layer("input", "input", d_in, width, rule("input", d_in, width, d_in, base_width))]
    for i in range(depth):
        hidden = rule("hidden", width, width, base_width, base_width)
        branch = None
        if scaling is not None:
            # the branch multiplier sits on the block's output (Layer.branch); the learning
            # rate correction on the block's parameters
            correct = {"lr_sgd": scaling.lr_sgd, "lr_adam": scaling.lr_adam}
            if not lr_correction:
                correct = {}
            hidden = LayerRule(hidden.weight.scaled(**correct), hidden.bias.scaled(**correct))
            branch = scaling.multiplier
        layers.append(Layer(f"hidden{i}", "hidden", width, width, hidden, branch))
    layers.append(
        Layer("output", "output", width, d_out, rule("output", width, d_out, base_width, d_out))
    )
    return Model(kind, width, depth, parametrization, alpha, tuple(layers))


@dataclass(frozen=True)
class Architecture:
    """Everything that fixes a model except its size and the task's input and output sizes:
    sweeps and coordinate checks build every width and depth of a grid from one of these."""

    parametrization: str
    model: str = "mlp"
    alpha: float | None = None
    lr_correction: bool = True
    base_width: int = DEFAULT_BASE_WIDTH

    def build(self, width: int, depth: int, d_in: int, d_out: int) -> Model:
        return build_model(
            self.model,
            width=width,
            depth=depth,
            d_in=d_in,
            d_out=d_out,
            parametrization=self.parametrization,
            alpha=self.alpha,
            base_width=self.base_width,
            lr_correction=self.lr_correction,
        )


def init_params(
    model: Model, seeds: Sequence[int], *, dtype=torch.float64, requires_grad: bool = True
) -> dict[str, torch.Tensor]:
    """Parameters for len(seeds) runs: run r is drawn from torch.Generator(seeds[r]), uniform
    with the rule's std (nn.Linear's distribution). Equal seeds give equal parameters."""
    distinct = sorted(set(seeds))
    index = torch.tensor([distinct.index(s) for s in seeds])
    per_seed = [_draw(model, seed, dtype) for seed in distinct]
    params = {}
    for name in per_seed[0]:
        stacked = torch.stack([p[name] for p in per_seed])[index].contiguous()
        params[name] = stacked.requires_grad_(requires_grad)
    return params


def _draw(model: Model, seed: int, dtype) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(int(seed))
    shapes = model.shapes()
    draws = {}
    for name, rule in model.param_rules().items():
        unit = torch.rand(shapes[name], generator=generator, dtype=torch.float64) * 2 - 1
        draws[name] = (unit * (3**0.5 * rule.init_std)).to(dtype)
    return draws


def forward(
    model: Model,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    activations: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Outputs (R, B, d_out) for inputs (R, B, d_in); if `activations` is a dict, each layer's
    output (after the nonlinearity; the residual stream in a resmlp) is stored under its name."""
    h = x
    for layer in model.layers:
        w, b = params[f"{layer.name}.weight"], params[f"{layer.name}.bias"]
        rule = layer.rule
        if layer.branch is not None:  # residual block: h + L^-alpha * W relu(h)
            branch = rule.weight.multiplier * torch.bmm(torch.relu(h), w) + rule.bias.multiplier * b
            h = h + layer.branch * branch
        else:
            h = rule.weight.multiplier * torch.bmm(h, w) + rule.bias.multiplier * b
            if layer.role != "output" and model.kind == "mlp":
                h = torch.relu(h)
        if activations is not None:
            activations[layer.name] = h
    return h
