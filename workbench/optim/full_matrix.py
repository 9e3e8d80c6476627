"""The ideal the structured preconditioners approximate: one fixed full matrix P.

p <- p - lr P g over all parameters flattened into one vector (in parameter order). With P the
exact inverse Hessian of a quadratic and lr = 1 this is Newton's method: one step lands on the
minimizer whatever the condition number, which is the bar Shampoo, SOAP and PSGD are measured
against. Storing P costs n^2 numbers for n parameters, which is why nobody trains with it.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim._common import check_lr, evaluate_closure


class FullMatrixPreconditioned(Optimizer):
    """Gradient descent preconditioned by a fixed symmetric (n, n) matrix.

    Args:
        params: the parameters, in the order P's rows refer to (a single group).
        preconditioner: the (n, n) matrix, n the total number of parameter entries.
        lr: step size (1.0: Newton's step when P is the inverse Hessian).
    """

    def __init__(self, params, preconditioner: torch.Tensor, lr: float = 1.0) -> None:
        super().__init__(params, {"lr": check_lr(lr)})
        if len(self.param_groups) != 1:
            raise ValueError("FullMatrixPreconditioned takes a single parameter group")
        n = sum(p.numel() for p in self.param_groups[0]["params"])
        if preconditioner.shape != (n, n):
            raise ValueError(
                f"preconditioner must be ({n}, {n}) for {n} parameter entries, "
                f"got {tuple(preconditioner.shape)}"
            )
        self.preconditioner = preconditioner

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        (group,) = self.param_groups
        params = group["params"]
        grad = torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params]
        )
        direction = self.preconditioner.to(grad) @ grad
        offset = 0
        for p in params:
            p.add_(direction[offset : offset + p.numel()].reshape(p.shape), alpha=-group["lr"])
            offset += p.numel()
        return loss
