"""What the optimizers share: argument checks with readable errors, and Kronecker algebra.

A tensor of order k is preconditioned one dimension at a time: the mode-i product multiplies
every fibre along dimension i by a matrix (for a matrix G: M @ G for i = 0, G @ M.T for i = 1),
and the mode-i statistic is the Gram matrix of the mode-i unfolding (G @ G.T, G.T @ G).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch.optim import Optimizer

# ----------------------------------------------------------------------------------- checks


def check_lr(lr: float) -> float:
    if isinstance(lr, torch.Tensor):
        raise ValueError("lr must be a Python float, got a tensor")
    if isinstance(lr, bool) or not (isinstance(lr, numbers.Real) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    return float(lr)


def check_nonnegative(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_fraction(name: str, value: float, *, closed: bool = False) -> float:
    """A decay rate in [0, 1) (or [0, 1] when ``closed``: 1 means a plain sum)."""
    upper_ok = value <= 1 if closed else value < 1
    if not (isinstance(value, (int, float)) and 0 <= value and upper_ok):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_betas(betas: Sequence[float], *, second_closed: bool = False) -> tuple[float, float]:
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return (
        check_fraction("betas[0]", betas[0]),
        check_fraction("betas[1]", betas[1], closed=second_closed),
    )


def check_real_tensor(optimizer: str, grad: torch.Tensor) -> None:
    if grad.is_sparse:
        raise ValueError(f"{optimizer} does not support sparse gradients")
    if torch.is_complex(grad):
        raise ValueError(f"{optimizer} does not support complex parameters")


def evaluate_closure(closure) -> float | None:
    """The loss an optimizer's ``step(closure)`` returns: the closure's, with gradients on."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class PerParameterOptimizer(Optimizer):
    """An optimizer whose step updates each parameter on its own: ``_update(p, group, index)``.

    ``step`` evaluates the closure, refuses sparse and complex gradients, and calls
    ``_update`` for every parameter that has a gradient; ``index`` is the parameter's position
    across all groups (PSGD seeds its probe vectors with it).
    """

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    check_real_tensor(type(self).__name__, p.grad)
                    self._update(p, group, index)
                index += 1
        return loss

    def _update(self, p: torch.Tensor, group: dict, index: int) -> None:
        raise NotImplementedError


# ------------------------------------------------------------------------- Kronecker algebra


def mode_product(x: torch.Tensor, matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` with every fibre along ``dim`` multiplied by ``matrix`` (new size matrix.shape[0])."""
    if x.ndim == 2:  # the common case, without tensordot's reshapes (a third of a step's time)
        return matrix @ x if dim == 0 else x @ matrix.T
    return torch.movedim(torch.tensordot(matrix, x, dims=([1], [dim])), 0, dim)


def mode_gram(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Gram matrix of the mode-``dim`` unfolding: sum over all other indices of x_i x_j."""
    if x.ndim == 2:
        return x @ x.T if dim == 0 else x.T @ x
    others = [d for d in range(x.ndim) if d != dim]
    return torch.tensordot(x, x, dims=(others, others))


def symmetric_power(matrix: torch.Tensor, power: float, epsilon: float = 0.0) -> torch.Tensor:
    """(matrix + epsilon I)^power of a symmetric PSD matrix, by eigendecomposition.

    Eigenvalues below zero (rounding) are clamped to zero before epsilon is added, so a
    rank-deficient statistic with epsilon > 0 has a finite inverse root.
    """
    if not bool(torch.isfinite(matrix).all()):  # NaN gradients: NaN out (the race's
        return torch.full_like(matrix, math.nan)  # "diverged"), not eigh's LinAlgError
    eigenvalues, vectors = torch.linalg.eigh(matrix)
    scaled = (eigenvalues.clamp_min(0) + epsilon) ** power
    return (vectors * scaled) @ vectors.T


NULL_RTOL = 1e-10  # eigenvalues at most this times the largest count as zero (rounding)


def descending_eigenvectors(matrix: torch.Tensor, rtol: float = NULL_RTOL) -> torch.Tensor:
    """Eigenvectors of a symmetric PSD matrix as columns, largest eigenvalue first, in the
    canonical basis of ``canonical_basis`` (NaN for a non-finite matrix, which eigh would
    refuse with a LinAlgError).

    eigh's basis of a zero eigenspace is whatever rounding left it, and changes with the
    math library's code path; Adam in that basis (SOAP) then differs from run to run.
    """
    if not bool(torch.isfinite(matrix).all()):
        return torch.full_like(matrix, math.nan)
    eigenvalues, vectors = torch.linalg.eigh(matrix)
    return canonical_basis(vectors.flip(1), eigenvalues.flip(0), rtol)


def canonical_basis(
    vectors: torch.Tensor, eigenvalues: torch.Tensor, rtol: float = NULL_RTOL
) -> torch.Tensor:
    """Orthonormal columns ``vectors`` (eigenvalue estimates ``eigenvalues``, descending) with
    the null space made canonical: the leading columns whose eigenvalue exceeds ``rtol`` times
    the largest are kept, the rest are replaced by the identity's columns in order,
    Gram-Schmidt against the kept ones and each other (skipping near-dependent columns), and
    every column is signed so its largest-magnitude entry is positive.

    The result depends on the matrix alone, not on the rounding that chose eigh's (or QR's)
    basis of its null space. Non-finite input is returned unchanged.
    """
    if not (bool(torch.isfinite(vectors).all()) and bool(torch.isfinite(eigenvalues).all())):
        return vectors
    n = vectors.shape[1]
    if n == 0:
        return vectors
    largest = float(eigenvalues[0])
    rank = int((eigenvalues > rtol * largest).sum()) if largest > 0 else 0
    basis = vectors[:, :rank]
    if rank < n:
        basis = _complete_from_identity(basis, vectors.shape[0])
    peaks = basis.abs().argmax(0)
    signs = torch.sign(basis[peaks, torch.arange(n, device=basis.device)])
    return basis * torch.where(signs == 0, torch.ones_like(signs), signs)


def _complete_from_identity(basis: torch.Tensor, n: int) -> torch.Tensor:
    """``basis`` (orthonormal columns) extended to n columns with the identity's columns.

    A column whose residual is below 0.5 / sqrt(n) is skipped: while the basis is incomplete
    the residuals' squares sum to at least 1 over the n columns (and only shrink as the basis
    grows), so some column always clears the threshold and the loop completes the basis.
    """
    threshold = 0.5 / math.sqrt(n)
    columns = [basis[:, j] for j in range(basis.shape[1])]
    current = basis
    for i in range(n):
        if len(columns) == n:
            break
        e = torch.zeros(n, dtype=basis.dtype, device=basis.device)
        e[i] = 1.0
        for _ in range(2):  # twice is enough (Kahan): orthogonal to rounding
            e = e - current @ (current.T @ e)
        norm = torch.linalg.vector_norm(e)
        if float(norm) > threshold:
            columns.append(e / norm)
            current = torch.stack(columns, 1)
    return torch.stack(columns, 1)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in tensors of an optimizer's per-parameter state (lists and dicts included)."""

    def size(value) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(size(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(size(v) for v in value)
        return 0

    return sum(size(state) for state in optimizer.state.values())
