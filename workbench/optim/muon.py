"""Muon: momentum orthogonalized by a Newton-Schulz iteration, AdamW for everything else.

Jordan, Jin, Boza, You, Cesista, Newhouse and Bernstein, "Muon: An optimizer for hidden layers
in neural networks" (2024). For a weight matrix the momentum M = U S V^T is replaced by
(approximately) its polar factor U V^T: every singular direction moves by the same amount,
the steepest-descent step under the spectral norm. The polar factor comes from five steps of
a quintic Newton-Schulz iteration X <- a X + b (X X^T) X + c (X X^T)^2 X tuned for speed
rather than exact convergence: its singular values land in a band around 1
(``NEWTON_SCHULZ_BAND``) instead of at 1. Parameters that are not matrices (biases, gains,
scalars) are trained by AdamW, as are any in a group with ``use_muon=False`` (Jordan et al.
advise that for embeddings and the output layer).
"""

from __future__ import annotations

import math

import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim._common import (
    PerParameterOptimizer,
    check_betas,
    check_fraction,
    check_lr,
    check_nonnegative,
    check_positive_int,
)

# Jordan et al.'s quintic coefficients: the largest slope at 0 (fast growth of small singular
# values) for which the iteration still maps [0, 1] into a band around 1.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# Where five steps put every singular value sigma of a matrix whose smallest sigma / |X|_F is
# at least NEWTON_SCHULZ_MIN_RELATIVE_SIGMA: the five-fold quintic maps [2e-3, 1] onto
# [0.6818, 1.2024] (its maximum is at sigma = 0.0041; tests/test_optim.py checks both ends).
# Smaller singular values grow by 3.4445^5 ~ 487 and stay below the band.
NEWTON_SCHULZ_BAND = (0.68, 1.21)
NEWTON_SCHULZ_MIN_RELATIVE_SIGMA = 2e-3
# Keller Jordan's ratio of AdamW's to Muon's learning rate (3e-4 / 0.02): with adamw_lr=None
# the AdamW parameters follow one learning-rate sweep instead of needing their own.
ADAMW_LR_RATIO = 3e-4 / 0.02


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximate polar factor U V^T of a matrix G = U S V^T (singular values in the band).

    G is scaled to unit Frobenius norm (so every singular value is <= 1) and iterated in its
    wide orientation, where X X^T is the smaller Gram matrix.
    """
    if g.ndim != 2:
        raise ValueError(f"newton_schulz needs a matrix, got shape {tuple(g.shape)}")
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    tall = g.shape[0] > g.shape[1]
    x = g.T if tall else g
    x = x / (torch.linalg.matrix_norm(x) + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(PerParameterOptimizer):
    """Muon (Jordan et al. 2024) for matrices, AdamW for the rest; defaults as theirs.

    Args:
        params: parameters or groups; a group may set ``use_muon`` (default: True for tensors
            with >= 2 dimensions, which are flattened to (rows, -1)).
        lr: Muon's learning rate (0.02).
        momentum: momentum coefficient (0.95), as an EMA of the gradient.
        nesterov: orthogonalize the Nesterov look-ahead g + momentum (m - g) (True).
        ns_steps: Newton-Schulz steps (5).
        weight_decay: decoupled weight decay for the Muon parameters (0).
        adamw_lr: AdamW's learning rate (None: lr * 3e-4 / 0.02, Jordan et al.'s pair).
        adamw_betas, adamw_eps, adamw_weight_decay: AdamW's (0.95, 0.95), 1e-8, 0.
    """

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        adamw_lr: float | None = None,
        adamw_betas: tuple[float, float] = (0.95, 0.95),
        adamw_eps: float = 1e-8,
        adamw_weight_decay: float = 0.0,
    ) -> None:
        if adamw_lr is not None:
            check_lr(adamw_lr)
        defaults = {
            "lr": check_lr(lr),
            "momentum": check_fraction("momentum", momentum),
            "nesterov": bool(nesterov),
            "ns_steps": check_positive_int("ns_steps", ns_steps),
            "weight_decay": check_nonnegative("weight_decay", weight_decay),
            "adamw_lr": adamw_lr,
            "adamw_betas": check_betas(adamw_betas),
            "adamw_eps": check_nonnegative("adamw_eps", adamw_eps),
            "adamw_weight_decay": check_nonnegative("adamw_weight_decay", adamw_weight_decay),
        }
        super().__init__(params, defaults)

    def _update(self, p: torch.Tensor, group: dict, index: int) -> None:
        if group.get("use_muon", p.ndim >= 2):
            self._muon_update(p, group)
        else:
            self._adamw_update(p, group)

    def _muon_update(self, p: torch.Tensor, group: dict) -> None:
        if p.ndim < 2:
            raise ValueError(
                f"Muon orthogonalizes matrices; a parameter of shape {tuple(p.shape)} needs a "
                "group with use_muon=False"
            )
        state = self.state[p]
        if not state:
            state["momentum"] = torch.zeros_like(p.grad)
        buffer = state["momentum"]
        buffer.lerp_(p.grad, 1 - group["momentum"])
        update = p.grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
        matrix = update.reshape(update.shape[0], -1)
        orthogonal = newton_schulz(matrix, group["ns_steps"]).reshape(p.shape)
        # Same RMS step size for tall matrices as for wide ones (Jordan et al.'s scaling).
        scale = math.sqrt(max(1.0, matrix.shape[0] / matrix.shape[1]))
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(orthogonal, alpha=-group["lr"] * scale)

    def _adamw_update(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p.grad)
            state["exp_avg_sq"] = torch.zeros_like(p.grad)
        state["step"] += 1
        t = state["step"]
        beta1, beta2 = group["adamw_betas"]
        lr = group["adamw_lr"] if group["adamw_lr"] is not None else group["lr"] * ADAMW_LR_RATIO
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].lerp_(p.grad.square(), 1 - beta2)
        denominator = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(group["adamw_eps"])
        if group["adamw_weight_decay"]:
            p.mul_(1 - lr * group["adamw_weight_decay"])
        p.addcdiv_(state["exp_avg"], denominator, value=-lr / (1 - beta1**t))
