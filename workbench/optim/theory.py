"""Exact statements about preconditioning on quadratics, and their measurement.

Gradient descent on f(x) = 1/2 (x - x*)^T H (x - x*) multiplies the error's component along
an eigenvector of H with eigenvalue lambda by (1 - lr lambda) per step. The worst component
contracts slowest; the step that balances the two extreme ones, lr* = 2 / (lambda_max +
lambda_min), gives the best worst-case rate (kappa - 1) / (kappa + 1), kappa = lambda_max /
lambda_min. A preconditioner P turns H into P H: with P = H^-1 the rate is 0 (Newton: one
step), and a Kronecker-factored P can equal H^-1 exactly when H is Kronecker-factored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.optim.full_matrix import FullMatrixPreconditioned
from workbench.optim.problems import KroneckerQuadratic, Problem
from workbench.optim.shampoo import Shampoo


def optimal_gd_step(eigenvalues: torch.Tensor) -> float:
    """2 / (lambda_max + lambda_min)."""
    return float(2.0 / (eigenvalues.max() + eigenvalues.min()))


def gd_rate(eigenvalues: torch.Tensor, lr: float) -> float:
    """The worst-case per-step contraction max |1 - lr lambda| of gradient descent."""
    return float((1 - lr * eigenvalues).abs().max())


def optimal_gd_rate(kappa: float) -> float:
    """(kappa - 1) / (kappa + 1): gd_rate at the optimal step."""
    return (kappa - 1) / (kappa + 1)


def polyak_rate(kappa: float) -> float:
    """Heavy-ball momentum's optimal rate (sqrt(kappa) - 1) / (sqrt(kappa) + 1) per step (at
    momentum polyak_rate(kappa)^2)."""
    return float((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1))


def measured_gd_rate(problem: KroneckerQuadratic, lr: float, decades: float = 8.0) -> float:
    """Per-step contraction of |W - W*| under torch's SGD, measured at the end of a run.

    The start has a component along every eigenvector, so the error's norm ends up
    contracting at the rate of the slowest component, max |1 - lr lambda|. The run is long
    enough for the predicted rate to shrink the error by ``decades`` powers of ten (by then
    faster components have died out; further would reach rounding near W*), and the rate is
    read from its last quarter.
    """
    predicted = gd_rate(problem.eigenvalues(), lr)
    if not 0 < predicted < 1:
        raise ValueError(f"gradient descent does not converge at lr={lr} (rate {predicted})")
    steps = min(200_000, int(np.ceil(decades * np.log(10) / -np.log(predicted))))
    (w,) = params = problem.init_params()
    opt = torch.optim.SGD(params, lr=lr)
    errors = np.empty(steps + 1)
    for step in range(steps + 1):
        errors[step] = float(torch.linalg.matrix_norm(w.detach() - problem.optimum))
        if step < steps:
            problem.loss_and_grad(params)
            opt.step()
    tail = errors[-(steps // 4) - 1 :]
    return float((tail[-1] / tail[0]) ** (1 / (len(tail) - 1)))


def gd_table(kappas: tuple[float, ...], seed: int = 0) -> pd.DataFrame:
    """Optimal step, predicted and measured rate of gradient descent per condition number."""
    rows = []
    for kappa in kappas:
        problem = KroneckerQuadratic(rows=6, cols=5, kappa=kappa, rotated=True, seed=seed)
        step = optimal_gd_step(problem.eigenvalues())
        rows.append(
            {
                "kappa": kappa,
                "optimal step 2/(lmax+lmin)": step,
                "predicted rate (k-1)/(k+1)": optimal_gd_rate(kappa),
                "measured rate": measured_gd_rate(problem, step),
            }
        )
        rows[-1]["measured / predicted - 1"] = (
            rows[-1]["measured rate"] / rows[-1]["predicted rate (k-1)/(k+1)"] - 1
        )
    return pd.DataFrame(rows).set_index("kappa")


def gd_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """What notebook 05 records of ``gd_table``: rows measured_rate and rate_relative_error
    (|measured / predicted - 1|), one column per condition number, "kappa<k>"."""
    metrics = pd.DataFrame(
        {
            "measured_rate": table["measured rate"],
            "rate_relative_error": table["measured / predicted - 1"].abs(),
        }
    ).T
    return metrics.rename(columns=lambda kappa: f"kappa{kappa:.0f}")


# Step sizes the scan measures on notebook 05's kappa-10 probe (stable below 2 / lambda_max = 2)
GD_SCAN_STEPS = (0.2, 0.6, 1.0, 1.4, 1.7, 1.87, 1.93, 1.97)


@dataclass(frozen=True)
class GDStepScan:
    """Gradient descent's contraction per step against its step size: measured at ``lrs``,
    and the theory max |1 - lr lambda| over [0, 2 / lambda_max]."""

    eigenvalues: np.ndarray
    lrs: np.ndarray
    measured: np.ndarray
    points: int = 400

    @property
    def stable(self) -> float:
        """The largest stable step: beyond it the largest component grows."""
        return float(2 / self.eigenvalues.max())

    @property
    def best(self) -> float:
        return float(2 / (self.eigenvalues.max() + self.eigenvalues.min()))

    @property
    def grid(self) -> np.ndarray:
        return np.linspace(0.0, self.stable, self.points)

    @property
    def theory(self) -> np.ndarray:
        """max |1 - lr lambda| at each step size of ``grid``."""
        return np.abs(1 - np.outer(self.grid, self.eigenvalues)).max(axis=1)


def gd_step_scan(problem: KroneckerQuadratic, lrs: tuple[float, ...] = GD_SCAN_STEPS) -> GDStepScan:
    """Measured contraction at each of ``lrs`` and at the optimal step, in increasing order."""
    steps = np.array(sorted([*lrs, optimal_gd_step(problem.eigenvalues())]))
    measured = np.array([measured_gd_rate(problem, lr) for lr in steps])
    return GDStepScan(problem.eigenvalues().numpy(), steps, measured)


def newton_step_loss(problem: Problem) -> float:
    """Loss after one step preconditioned by the exact inverse Hessian, relative to the start."""
    params = problem.init_params()
    initial = problem.loss_and_grad(params)
    FullMatrixPreconditioned(params, torch.linalg.inv(problem.hessian()), lr=1.0).step()
    return problem.loss_and_grad(params) / initial


def shampoo_on_isotropic_probes(
    problem: KroneckerQuadratic, inverse_root: int = 4, epsilon: float = 1e-30
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Shampoo's factors after gradients at W* + e_i e_j^T for every (i, j), and the exact ones.

    Those gradients are G_ij = A e_i e_j^T B, so the statistics are exactly
    L = sum G G^T = tr(B^2) A^2 and R = sum G^T G = tr(A^2) B^2: Shampoo's factors L^(-1/r),
    R^(-1/r) must equal tr(B^2)^(-1/r) A^(-2/r) and tr(A^2)^(-1/r) B^(-2/r). With r = 2 their
    Kronecker product is H^-1 / sqrt(tr(A^2) tr(B^2)). Returns (Shampoo's, exact).
    """
    w = problem.init_params()[0]
    shampoo = Shampoo(
        [w],
        lr=0.0,
        betas=(0.0, 1.0),
        epsilon=epsilon,
        grafting="none",
        inverse_root=inverse_root,
        precondition_frequency=problem.rows * problem.cols,  # roots again after the last probe
    )
    for i in range(problem.rows):
        for j in range(problem.cols):
            probe = torch.zeros_like(problem.optimum)
            probe[i, j] = 1.0
            w.grad = problem.A @ probe @ problem.B
            shampoo.step()
    w.grad = torch.zeros_like(w)  # one more step recomputes the roots from all the probes
    shampoo.step()
    trace_a2 = float((problem.A @ problem.A).trace())
    trace_b2 = float((problem.B @ problem.B).trace())
    exact = [
        trace_b2 ** (-1 / inverse_root) * _spd_power(problem.A, -2 / inverse_root),
        trace_a2 ** (-1 / inverse_root) * _spd_power(problem.B, -2 / inverse_root),
    ]
    return shampoo.preconditioner(w), exact


def shampoo_factor_error(problem: KroneckerQuadratic, inverse_root: int = 4) -> float:
    """Largest relative difference between Shampoo's factors and the exact ones (see above)."""
    ours, exact = shampoo_on_isotropic_probes(problem, inverse_root)
    return max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(ours, exact, strict=True))


def _spd_power(matrix: torch.Tensor, power: float) -> torch.Tensor:
    eigenvalues, vectors = torch.linalg.eigh(matrix)
    return (vectors * eigenvalues**power) @ vectors.T


def kronecker_newton_loss(problem: KroneckerQuadratic) -> float:
    """Loss after one step with Shampoo's inverse-root-2 factors from isotropic probes.

    The factors' product is H^-1 / sqrt(tr(A^2) tr(B^2)), so the step with lr equal to that
    square root is Newton's step: the loss after it is zero up to rounding.
    """
    (left, right), _ = shampoo_on_isotropic_probes(problem, inverse_root=2)
    lr = float(((problem.A @ problem.A).trace() * (problem.B @ problem.B).trace()).sqrt())
    params = problem.init_params()
    initial = problem.loss_and_grad(params)
    with torch.no_grad():
        params[0] -= lr * left @ params[0].grad @ right
    return problem.loss_and_grad(params) / initial
