"""Shampoo: a Kronecker-factored preconditioner per tensor dimension, with grafting.

Gupta, Koren and Singer, "Shampoo: Preconditioned Stochastic Tensor Optimization" (2018):
for a matrix gradient G_t the statistics are L_t = sum_s G_s G_s^T and R_t = sum_s G_s^T G_s,
and the step is -lr L_t^{-1/4} G_t R_t^{-1/4}; a tensor of order k has one statistic per
dimension and the exponent -1/(2k). Anil, Gupta, Koren, Regan and Singer, "Scalable Second
Order Optimization for Deep Learning" (2020) made it practical: inverse roots recomputed only
every few steps, exponential moving averages of the statistics, and *grafting*: the Shampoo
direction keeps its shape but takes, per parameter tensor, the norm of a diagonal method's step
(Adam here, or SGD), which makes the learning rate transfer from that method.

The step for one parameter, with grad G at step t:

    S_i  <- beta2 S_i + (1 - beta2) G_(i) G_(i)^T     (beta2 = 1: the plain sums of the paper)
    every precondition_frequency steps: P_i = (S_i + epsilon I)^(-1 / inverse_root)
    D    = G x_1 P_1 x_2 P_2 ... x_k P_k              (mode products; L^-1/4 G R^-1/4 for k = 2)
    D    <- D * |graft(G)| / |D|                       (grafting, unless grafting="none")
    m    <- beta1 m + (1 - beta1) D,  p <- p - lr m / (1 - beta1^t)

Dimensions longer than ``max_preconditioner_dim`` are left unpreconditioned (identity factor).
"""

from __future__ import annotations

import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim._common import (
    PerParameterOptimizer,
    check_betas,
    check_lr,
    check_nonnegative,
    check_positive_int,
    mode_gram,
    mode_product,
    symmetric_power,
)
from workbench.registry import check_choice

GRAFTING = ("adam", "sgd", "none")


class Shampoo(PerParameterOptimizer):
    """Shampoo (Gupta et al. 2018) with Adam/SGD grafting (Anil et al. 2020).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (>= 0). Neither paper fixes one; 1e-3 as the grafted Adam's.
        betas: (beta1, beta2). beta1 is the momentum on the grafted direction (0.9, as in
            Anil et al.'s experiments); beta2 the statistics' decay: 1.0 sums them as in Gupta
            et al. (the default), < 1 is Anil et al.'s moving average.
        epsilon: added to each statistic before its inverse root (Gupta et al.'s eps I; 1e-6
            as the matrix epsilon of the reference implementations).
        precondition_frequency: recompute the inverse roots every this many steps (1, Gupta
            et al.; Anil et al. amortize the cost over tens to hundreds of steps). The first
            step always computes them.
        grafting: "adam" (the default: Anil et al.'s layer-wise grafting, here from Adam's
            second moment without momentum), "sgd" (the gradient's norm) or "none".
        graft_beta2, graft_epsilon: Adam grafting's second-moment decay and epsilon (0.999,
            1e-8, Adam's defaults).
        max_preconditioner_dim: dimensions longer than this get no factor (1024).
        inverse_root: override the root 2k of a tensor of order k (None: 2k as in the paper;
            2 makes a matrix's preconditioner L^-1/2 G R^-1/2).
        weight_decay: decoupled weight decay p <- p (1 - lr weight_decay) (0).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 1.0),
        epsilon: float = 1e-6,
        precondition_frequency: int = 1,
        grafting: str = "adam",
        graft_beta2: float = 0.999,
        graft_epsilon: float = 1e-8,
        max_preconditioner_dim: int = 1024,
        inverse_root: int | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        if inverse_root is not None:
            check_positive_int("inverse_root", inverse_root)
        defaults = {
            "lr": check_lr(lr),
            "betas": check_betas(betas, second_closed=True),
            "epsilon": check_nonnegative("epsilon", epsilon),
            "precondition_frequency": check_positive_int(
                "precondition_frequency", precondition_frequency
            ),
            "grafting": check_choice("grafting", grafting, GRAFTING),
            "graft_beta2": check_betas((0.0, graft_beta2))[1],
            "graft_epsilon": check_nonnegative("graft_epsilon", graft_epsilon),
            "max_preconditioner_dim": check_positive_int(
                "max_preconditioner_dim", max_preconditioner_dim
            ),
            "inverse_root": inverse_root,
            "weight_decay": check_nonnegative("weight_decay", weight_decay),
        }
        super().__init__(params, defaults)

    def preconditioner(self, param: torch.Tensor) -> list[torch.Tensor | None]:
        """The current inverse-root factor of each dimension of ``param`` (None: identity)."""
        return list(self.state[param]["roots"])

    def _update(self, p: torch.Tensor, group: dict, index: int) -> None:
        grad = p.grad
        state = self.state[p]
        if not state:
            self._init_state(state, grad, group)
        state["step"] += 1
        t = state["step"]
        beta1, beta2 = group["betas"]

        # Statistics of the raw gradient, one per preconditioned dimension.
        weight = 1.0 if beta2 == 1.0 else 1.0 - beta2
        for dim, statistic in enumerate(state["statistics"]):
            if statistic is not None:
                statistic.mul_(beta2).add_(mode_gram(grad, dim), alpha=weight)
        if (t - 1) % group["precondition_frequency"] == 0:
            root = group["inverse_root"] or 2 * grad.ndim
            state["roots"] = [
                None if s is None else symmetric_power(s, -1.0 / root, group["epsilon"])
                for s in state["statistics"]
            ]

        direction = grad
        for dim, root in enumerate(state["roots"]):
            if root is not None:
                direction = mode_product(direction, root, dim)
        direction = self._graft(direction, grad, state, group, t)

        if beta1 > 0:
            state["momentum"].mul_(beta1).add_(direction, alpha=1 - beta1)
            direction = state["momentum"] / (1 - beta1**t)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(direction, alpha=-group["lr"])

    @staticmethod
    def _init_state(state: dict, grad: torch.Tensor, group: dict) -> None:
        state["step"] = 0
        state["statistics"] = [
            torch.zeros(n, n, dtype=grad.dtype, device=grad.device)
            if n <= group["max_preconditioner_dim"]
            else None
            for n in grad.shape
        ]
        state["roots"] = [None] * grad.ndim
        if group["betas"][0] > 0:
            state["momentum"] = torch.zeros_like(grad)
        if group["grafting"] == "adam":
            state["graft_second_moment"] = torch.zeros_like(grad)

    @staticmethod
    def _graft(
        direction: torch.Tensor, grad: torch.Tensor, state: dict, group: dict, t: int
    ) -> torch.Tensor:
        """The Shampoo direction rescaled to the norm of the graft method's step."""
        if group["grafting"] == "none":
            return direction
        if group["grafting"] == "sgd":
            graft_norm = torch.linalg.vector_norm(grad)
        else:
            second = state["graft_second_moment"]
            second.mul_(group["graft_beta2"]).addcmul_(grad, grad, value=1 - group["graft_beta2"])
            denominator = (second / (1 - group["graft_beta2"] ** t)).sqrt_()
            graft_norm = torch.linalg.vector_norm(grad / denominator.add_(group["graft_epsilon"]))
        norm = torch.linalg.vector_norm(direction)
        # A zero direction (zero gradient) stays zero rather than becoming 0/0.
        return direction * torch.where(norm > 0, graft_norm / norm, torch.zeros_like(norm))
