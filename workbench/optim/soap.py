"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner.

Vyas, Morwani, Zhao, Shapira, Brandfonbrener, Janson and Kakade, "SOAP: Improving and
Stabilizing Shampoo using Adam" (2024). Shampoo with exponent 1/2 is (up to scale) Adafactor
run in the eigenbasis of its Kronecker factors; SOAP runs Adam there instead and refreshes the
basis only every ``precondition_frequency`` steps, which the second moments tolerate because
they keep adapting between refreshes. For a parameter with gradient G:

    G' = G x_i Q_i^T             (rotate into the eigenbasis, every dimension i)
    m  <- beta1 m + (1 - beta1) G         (first moment kept in the original basis)
    v  <- beta2 v + (1 - beta2) G'^2      (second moment in the eigenbasis)
    p  <- p - lr_t ((m x_i Q_i^T) / (sqrt(v) + eps)) x_i Q_i,  then p <- p (1 - lr wd)
    S_i <- shampoo_beta S_i + (1 - shampoo_beta) G_(i) G_(i)^T
    every precondition_frequency steps: Q_i <- QR(S_i Q_i), one power-iteration step
        (columns ordered by the estimated eigenvalues, and v permuted to match)

with lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t). As in the authors' implementation the first
step only collects statistics (Q_i from an exact eigendecomposition) and moves nothing, and
one-dimensional parameters are plain Adam unless ``precondition_1d``.

Every basis is canonical in the null space of its statistic (``canonical_basis``): a
rank-deficient S_i (a layer wider than its input, a gradient from a few samples) has a zero
eigenspace whose basis eigh and QR leave to rounding, and Adam's diagonal is not invariant
under a rotation there, so the run would depend on the math library's code path.
"""

from __future__ import annotations

import math

import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim._common import (
    PerParameterOptimizer,
    canonical_basis,
    check_betas,
    check_fraction,
    check_lr,
    check_nonnegative,
    check_positive_int,
    descending_eigenvectors,
    mode_gram,
    mode_product,
)


class SOAP(PerParameterOptimizer):
    """SOAP (Vyas et al. 2024); defaults are the paper's.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (3e-3).
        betas: Adam's (beta1, beta2) (0.95, 0.95).
        shampoo_beta: decay of the Kronecker statistics (None: beta2).
        eps: Adam's epsilon (1e-8).
        weight_decay: decoupled weight decay (0.01).
        precondition_frequency: steps between eigenbasis refreshes (10).
        max_precondition_dim: dimensions longer than this keep the identity basis (10000).
        precondition_1d: also rotate one-dimensional parameters (False: Adam for biases).
        correct_bias: Adam's bias correction (True).
    """

    def __init__(
        self,
        params,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.95, 0.95),
        shampoo_beta: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        precondition_frequency: int = 10,
        max_precondition_dim: int = 10000,
        precondition_1d: bool = False,
        correct_bias: bool = True,
    ) -> None:
        if shampoo_beta is not None:
            check_fraction("shampoo_beta", shampoo_beta)
        defaults = {
            "lr": check_lr(lr),
            "betas": check_betas(betas),
            "shampoo_beta": shampoo_beta,
            "eps": check_nonnegative("eps", eps),
            "weight_decay": check_nonnegative("weight_decay", weight_decay),
            "precondition_frequency": check_positive_int(
                "precondition_frequency", precondition_frequency
            ),
            "max_precondition_dim": check_positive_int(
                "max_precondition_dim", max_precondition_dim
            ),
            "precondition_1d": bool(precondition_1d),
            "correct_bias": bool(correct_bias),
        }
        super().__init__(params, defaults)

    def eigenbasis(self, param: torch.Tensor) -> list[torch.Tensor | None]:
        """The current basis Q_i of each dimension of ``param`` (None: identity)."""
        return list(self.state[param]["bases"])

    def _update(self, p: torch.Tensor, group: dict, index: int) -> None:
        grad = p.grad
        state = self.state[p]
        if not state:
            self._init_state(state, grad, group)
            return  # the first step only collects statistics, as in the reference code
        state["step"] += 1
        t = state["step"]
        beta1, beta2 = group["betas"]
        bases = state["bases"]

        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.lerp_(_rotate(grad, bases).square_(), 1 - beta2)
        normalized = _rotate(exp_avg, bases) / (exp_avg_sq.sqrt() + group["eps"])
        step_size = group["lr"]
        if group["correct_bias"]:
            step_size *= math.sqrt(1 - beta2**t) / (1 - beta1**t)
        p.add_(_rotate_back(normalized, bases), alpha=-step_size)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])

        self._accumulate(state, grad, group)
        if t % group["precondition_frequency"] == 0:
            self._refresh_bases(state)

    def _init_state(self, state: dict, grad: torch.Tensor, group: dict) -> None:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(grad)
        state["exp_avg_sq"] = torch.zeros_like(grad)
        rotated = grad.ndim > 1 or (grad.ndim == 1 and group["precondition_1d"])
        state["statistics"] = [
            torch.zeros(n, n, dtype=grad.dtype, device=grad.device)
            if rotated and n <= group["max_precondition_dim"]
            else None
            for n in grad.shape
        ]
        self._accumulate(state, grad, group)
        state["bases"] = [
            None if s is None else descending_eigenvectors(s) for s in state["statistics"]
        ]

    @staticmethod
    def _accumulate(state: dict, grad: torch.Tensor, group: dict) -> None:
        beta = group["shampoo_beta"] if group["shampoo_beta"] is not None else group["betas"][1]
        for dim, statistic in enumerate(state["statistics"]):
            if statistic is not None:
                statistic.lerp_(mode_gram(grad, dim), 1 - beta)

    @staticmethod
    def _refresh_bases(state: dict) -> None:
        """One power-iteration step and QR per factor, columns by estimated eigenvalue."""
        exp_avg_sq = state["exp_avg_sq"]
        bases = state["bases"]
        for dim, (statistic, basis) in enumerate(zip(state["statistics"], bases, strict=True)):
            if statistic is None:
                continue
            power = statistic @ basis
            estimates = (basis * power).sum(0)  # Rayleigh quotients q_j^T S q_j
            order = torch.argsort(estimates, descending=True)
            # v is indexed by eigenvector: it follows its column to the new position.
            exp_avg_sq = exp_avg_sq.index_select(dim, order)
            # QR's columns for a near-zero Rayleigh quotient span rounding: replaced by the
            # canonical completion, as in the first step's basis (and signs fixed).
            bases[dim] = canonical_basis(torch.linalg.qr(power[:, order]).Q, estimates[order])
        state["exp_avg_sq"] = exp_avg_sq


def _rotate(x: torch.Tensor, bases: list[torch.Tensor | None]) -> torch.Tensor:
    """x in the eigenbasis: Q_i^T along every dimension i that has a basis."""
    for dim, basis in enumerate(bases):
        if basis is not None:
            x = mode_product(x, basis.T, dim)
    return x


def _rotate_back(x: torch.Tensor, bases: list[torch.Tensor | None]) -> torch.Tensor:
    for dim, basis in enumerate(bases):
        if basis is not None:
            x = mode_product(x, basis, dim)
    return x
