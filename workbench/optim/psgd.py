"""PSGD-Kron: preconditioned SGD with a Kronecker-factored whitening preconditioner.

Li, "Preconditioned Stochastic Gradient Descent" (2015/2018) and "Preconditioner on Matrix Lie
Group for SGD" (2019). The preconditioner P = Q^T Q, Q = Q_1 (x) ... (x) Q_k with each Q_i upper
triangular (a Lie group: invertible triangular matrices with positive diagonal) or diagonal,
is fitted online to the criterion E[h^T P h + v^T P^-1 v]. With v ~ N(0, I) and h the
gradient (or momentum) its minimizer whitens the gradients, P = E[h h^T]^(-1/2), which is
Shampoo's target reached without any matrix root. One fitting step, per factor i:

    A = h x_1 Q_1 ... x_k Q_k,        B = v x_1 Q_1^-T ... x_k Q_k^-T
    E_i = A_(i) A_(i)^T - B_(i) B_(i)^T,  N_i = A_(i) A_(i)^T + B_(i) B_(i)^T
    Q_i <- Q_i - precondition_lr / ||N_i||_2 * triu(E_i) Q_i        (diagonal Q_i: diag(E_i))

(the spectral norm by Li's cheap lower bound; the relative step on the group keeps Q_i
invertible). The parameter step is p <- p - lr clip(P m_hat) with m_hat the bias-corrected
momentum and clip scaling the update down to RMS ``update_rms_clip`` when larger.

Randomness: the probe v for parameter j at step t is drawn from a generator seeded by
(seed, t, j), so a run is reproducible and a reloaded state dict continues it exactly.
"""

from __future__ import annotations

import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim._common import (
    PerParameterOptimizer,
    check_fraction,
    check_lr,
    check_nonnegative,
    check_positive_int,
    mode_gram,
    mode_product,
)

# Added to the normalizers so that an all-zero probe (zero gradient) gives a zero update.
_TINY = torch.finfo(torch.bfloat16).tiny


class PSGDKron(PerParameterOptimizer):
    """PSGD with Kronecker-factored preconditioners (Li 2018; defaults as in Li's Kron).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (1e-3).
        momentum: EMA coefficient of the gradient, bias corrected (0.9).
        precondition_lr: the preconditioner's own step size, relative (0.1).
        precondition_init_scale: Q starts as this times the identity (1.0).
        precondition_frequency: fit the preconditioner every this many steps, at steps
            k, 2k, ... (1: every step, Li's update probability 1).
        max_size_triangular: dimensions longer than this get a diagonal factor (8192).
        min_ndim_triangular: tensors of fewer dimensions get diagonal factors only (2: biases
            are diagonal, matrices triangular).
        momentum_into_precondition_update: fit P to the momentum rather than the raw
            gradient (True).
        update_rms_clip: scale the preconditioned update down to this RMS when larger (1.1;
            None disables).
        weight_decay: decoupled weight decay on tensors with >= 2 dimensions (0).
        seed: seed of the probe vectors (0).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.9,
        precondition_lr: float = 0.1,
        precondition_init_scale: float = 1.0,
        precondition_frequency: int = 1,
        max_size_triangular: int = 8192,
        min_ndim_triangular: int = 2,
        momentum_into_precondition_update: bool = True,
        update_rms_clip: float | None = 1.1,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not precondition_init_scale > 0:
            raise ValueError(
                f"precondition_init_scale must be > 0, got {precondition_init_scale!r}"
            )
        if update_rms_clip is not None and not update_rms_clip > 0:
            raise ValueError(f"update_rms_clip must be > 0 or None, got {update_rms_clip!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        defaults = {
            "lr": check_lr(lr),
            "momentum": check_fraction("momentum", momentum),
            "precondition_lr": check_nonnegative("precondition_lr", precondition_lr),
            "precondition_init_scale": float(precondition_init_scale),
            "precondition_frequency": check_positive_int(
                "precondition_frequency", precondition_frequency
            ),
            "max_size_triangular": check_positive_int("max_size_triangular", max_size_triangular),
            "min_ndim_triangular": check_positive_int("min_ndim_triangular", min_ndim_triangular),
            "momentum_into_precondition_update": bool(momentum_into_precondition_update),
            "update_rms_clip": update_rms_clip,
            "weight_decay": check_nonnegative("weight_decay", weight_decay),
            "seed": seed,
        }
        super().__init__(params, defaults)

    def preconditioner_factors(self, param: torch.Tensor) -> list[torch.Tensor]:
        """The factors Q_i of ``param``'s preconditioner (1-D tensors are diagonal factors)."""
        return list(self.state[param]["factors"])

    def _update(self, p: torch.Tensor, group: dict, index: int) -> None:
        grad = p.grad
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["momentum"] = torch.zeros_like(grad)
            state["factors"] = _initial_factors(grad, group)
        state["step"] += 1
        t = state["step"]
        beta = group["momentum"]

        state["momentum"].lerp_(grad, 1 - beta)
        momentum = state["momentum"] / (1 - beta**t) if beta > 0 else state["momentum"]
        if t % group["precondition_frequency"] == 0:
            target = momentum if group["momentum_into_precondition_update"] else grad
            probe = self.probe(grad, group["seed"], t, index)
            fit_factors(state["factors"], target, probe, group["precondition_lr"])
            balance_factors(state["factors"])

        update = precondition(state["factors"], momentum)
        if group["update_rms_clip"] is not None:
            rms = update.square().mean().sqrt()
            update.mul_(torch.clamp(group["update_rms_clip"] / (rms + 1e-6), max=1.0))
        if group["weight_decay"] and p.ndim >= 2:
            update.add_(p, alpha=group["weight_decay"])
        p.add_(update, alpha=-group["lr"])

    @staticmethod
    def probe(like: torch.Tensor, seed: int, step: int, index: int) -> torch.Tensor:
        """The probe vector v ~ N(0, I) of parameter ``index`` at ``step``."""
        generator = torch.Generator(device=like.device)
        generator.manual_seed((seed * 1_000_003 + step) * 10_007 + index)
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def _initial_factors(grad: torch.Tensor, group: dict) -> list[torch.Tensor]:
    """Identity factors whose Kronecker product is init_scale times the identity."""
    if grad.ndim == 0:
        return [torch.full((), group["precondition_init_scale"], dtype=grad.dtype)]
    scale = group["precondition_init_scale"] ** (1 / grad.ndim)
    factors = []
    for n in grad.shape:
        triangular = (
            grad.ndim >= group["min_ndim_triangular"] and 1 < n <= group["max_size_triangular"]
        )
        eye = torch.eye(n, dtype=grad.dtype, device=grad.device)
        factors.append(scale * (eye if triangular else torch.ones(n, dtype=grad.dtype)))
    return factors


def _apply(x: torch.Tensor, factors: list[torch.Tensor], transpose: bool = False) -> torch.Tensor:
    """x times Q_1 (x) ... (x) Q_k (or its transpose), one dimension at a time."""
    if x.ndim == 0:
        return x * factors[0]
    for dim, q in enumerate(factors):
        if q.ndim == 1:
            shape = [1] * x.ndim
            shape[dim] = -1
            x = x * q.reshape(shape)
        else:
            x = mode_product(x, q.T if transpose else q, dim)
    return x


def _apply_inverse_transpose(x: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
    """x times Q_1^-T (x) ... (x) Q_k^-T, by triangular solves."""
    if x.ndim == 0:
        return x / factors[0]
    for dim, q in enumerate(factors):
        if q.ndim == 1:
            shape = [1] * x.ndim
            shape[dim] = -1
            x = x / q.reshape(shape)
        else:
            # Q^-T along dim: solve Q^T y = fibre, i.e. y^T Q = fibre^T for the rows of x_(dim).
            moved = torch.movedim(x, dim, -1)
            solved = torch.linalg.solve_triangular(
                q, moved.reshape(-1, q.shape[0]), upper=True, left=False
            )
            x = torch.movedim(solved.reshape(moved.shape), -1, dim)
    return x


def precondition(factors: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """P x with P = Q^T Q."""
    return _apply(_apply(x, factors), factors, transpose=True)


def fit_factors(
    factors: list[torch.Tensor], target: torch.Tensor, probe: torch.Tensor, step_size: float
) -> None:
    """One PSGD step on every factor (in place), for the pair (target h, probe v)."""
    a = _apply(target, factors)
    b = _apply_inverse_transpose(probe, factors)
    if target.ndim == 0:
        q = factors[0]
        e, n = a * a - b * b, a * a + b * b
        q.sub_(step_size * e * q / (n.abs() + _TINY))
        return
    for dim, q in enumerate(factors):
        if q.ndim == 1:
            aa = _fibre_squares(a, dim)
            bb = _fibre_squares(b, dim)
            normalizer = (aa + bb).abs().max() + _TINY
            q.sub_(step_size * (aa - bb) * q / normalizer)
        else:
            aa, bb = mode_gram(a, dim), mode_gram(b, dim)
            normalizer = spectral_norm_lower_bound(aa + bb) + _TINY
            q.sub_((step_size / normalizer) * torch.triu(aa - bb) @ q)


def _fibre_squares(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The diagonal of the mode-dim Gram matrix: sum of squares over the other indices."""
    others = [d for d in range(x.ndim) if d != dim]
    return x.square().sum(dim=others) if others else x.square()


def spectral_norm_lower_bound(matrix: torch.Tensor) -> torch.Tensor:
    """Li's cheap lower bound on the spectral norm of a symmetric matrix.

    Two power-iteration steps from the row of largest norm: |M^2 r| / |M r| <= ||M||_2, and
    close to it when one eigenvalue dominates, which is all a step-size normalizer needs.
    """
    scale = matrix.abs().max()
    if scale == 0:
        return scale
    m = matrix / scale
    row = m[torch.argmax(m.square().sum(1))]
    once = m @ row
    return scale * torch.linalg.vector_norm(m @ once) / torch.linalg.vector_norm(once)


def balance_factors(factors: list[torch.Tensor]) -> None:
    """Equalize the factors' max-norms (their product, the preconditioner, is unchanged).

    Without it one factor can drift large and another small until they under- or overflow.
    """
    if len(factors) < 2:
        return
    norms = torch.stack([q.abs().max() for q in factors])
    mean = norms.prod() ** (1 / len(factors))
    for q, norm in zip(factors, norms, strict=True):
        q.mul_(mean / norm)
