"""SGD, Adam and Adam-atan2 over batched parameters, with a learning rate per run.

Each update is one function with the same signature, `update(param, grad, state, lr, step)`,
applied in place to a tensor whose leading dimension indexes runs; `lr` broadcasts against it
(shape (R, 1, 1)), so R runs with R learning rates advance in one call. The formulas follow
torch.optim.SGD (no momentum) and torch.optim.Adam (defaults) operation for operation, which
the tests check to float64 round-off.

Adam-atan2 (Everett et al. 2024, "Scaling Exponents Across Parameterizations and
Optimizers") replaces m_hat / (sqrt(v_hat) + eps) by a * atan2(m_hat, b * sqrt(v_hat)): no
epsilon, so the update is exactly invariant to the gradient's scale and bounded by a * pi/2.
a = 1.27 ~ 4/pi makes the first step (|m_hat| = sqrt(v_hat)) equal Adam's; b = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.registry import Registry

BETAS = (0.9, 0.999)
EPS = 1e-8
ATAN2_A = 1.27
ATAN2_B = 1.0

Update = Callable[[torch.Tensor, torch.Tensor, dict, torch.Tensor, int], None]


def sgd_update(param, grad, state, lr, step) -> None:
    param.addcmul_(lr, grad, value=-1.0)


def _moments(grad, state, step):
    beta1, beta2 = BETAS
    if not state:
        state["m"] = torch.zeros_like(grad)
        state["v"] = torch.zeros_like(grad)
    state["m"].lerp_(grad, 1 - beta1)  # torch.optim.Adam's update of the first moment
    state["v"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    return state["m"], state["v"], 1 - beta1**step, 1 - beta2**step


# The updates are memory-bound (R x P elements, a few flops each): every temporary tensor and
# every pass costs, so the bias corrections are folded into scalars and one buffer is reused.


def adam_update(param, grad, state, lr, step) -> None:
    # m_hat / (sqrt(v_hat) + eps) = (sqrt(c2) / c1) * m / (sqrt(v) + eps * sqrt(c2))
    m, v, correction1, correction2 = _moments(grad, state, step)
    root2 = correction2**0.5
    update = v.sqrt().add_(EPS * root2)
    torch.div(m, update, out=update)
    param.sub_(update.mul_(lr), alpha=root2 / correction1)


def adam_atan2_update(param, grad, state, lr, step) -> None:
    # atan2(m_hat, b sqrt(v_hat)) = atan2(m, b sqrt(v) c1 / sqrt(c2)): both scaled by c1 > 0
    m, v, correction1, correction2 = _moments(grad, state, step)
    update = v.sqrt().mul_(ATAN2_B * correction1 / correction2**0.5)
    torch.atan2(m, update, out=update)
    param.sub_(update.mul_(lr), alpha=ATAN2_A)


@dataclass(frozen=True)
class BatchedOptimizer:
    """An update and the learning-rate rule a parametrization applies to it: "sgd", or "adam"
    for updates invariant to the gradient's scale (Adam and Adam-atan2 share one rule)."""

    update: Update
    family: str


# SCALING_: notebook 05's optimizers are workbench.optim.registry's OPTIMIZERS
SCALING_OPTIMIZERS: Registry[BatchedOptimizer] = Registry("optimizer")
SCALING_OPTIMIZERS.add("sgd", BatchedOptimizer(sgd_update, "sgd"), label="SGD")
SCALING_OPTIMIZERS.add("adam", BatchedOptimizer(adam_update, "adam"), label="Adam")
SCALING_OPTIMIZERS.add(
    "adam_atan2", BatchedOptimizer(adam_atan2_update, "adam"), label="Adam-atan2"
)
