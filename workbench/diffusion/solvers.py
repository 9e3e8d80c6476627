"""The solver registry: every solver one function with one signature.

    solver(ev, x, grid, opts) -> x at grid.ts[-1]

`ev(x, t)` returns the model's (x_0, eps) and counts one model call; `grid` carries ts, alphas,
sigmas and lambdas (lambda = log(alpha / sigma)); `opts` is a SolverOptions. Notation follows
DPM-Solver: h_i = lambda_i - lambda_{i-1} > 0 as the solve moves toward data.

Lower-order final steps: with `opts.lower_order_final` and fewer than 15 steps, multistep
solvers of order k use order min(k, steps left) at the end, as diffusers does (it stabilizes
few-step sampling; at 15+ steps the full order is kept).
"""

from __future__ import annotations

import torch

from workbench.diffusion.sampling import Evaluator, Grid, SolverOptions, register

LOWER_ORDER_FINAL_BELOW = 15


def _effective_order(i: int, grid: Grid, opts: SolverOptions, history: int) -> int:
    """The order of step i (1-based) of a multistep method given `history` stored outputs."""
    order = min(opts.order, history)
    if opts.lower_order_final and grid.steps < LOWER_ORDER_FINAL_BELOW:
        order = min(order, grid.steps - i + 1)
    return order


@register("ddim", orders=(1,))
def ddim(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """DDIM (eta = 0): x_{i} = alpha_i x0_hat + sigma_i eps_hat, the first-order exponential
    integrator; identical to Euler in the VE-equivalent sigma = sigma_t / alpha_t."""
    for i in range(1, grid.steps + 1):
        x0, eps = ev(x, grid.ts[i - 1])
        x = grid.alphas[i] * x0 + grid.sigmas[i] * eps
        if opts.callback:
            opts.callback(i, x)
    return x


@register("dpmpp_2m", orders=(1, 2), accepts_corrector=True)
def dpmpp_2m(ev: Evaluator, x: torch.Tensor, grid: Grid, opts: SolverOptions) -> torch.Tensor:
    """DPM-Solver++(2M): multistep second order in the data prediction (Lu et al. 2022)."""
    previous = None  # (x0_hat, h) of the last step
    for i in range(1, grid.steps + 1):
        x0, _ = ev(x, grid.ts[i - 1])
        h = grid.lambdas[i] - grid.lambdas[i - 1]
        order = _effective_order(i, grid, opts, 1 if previous is None else 2)
        if order == 1:
            d = x0
        else:
            r = previous[1] / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous[0]
        x = (grid.sigmas[i] / grid.sigmas[i - 1]) * x - grid.alphas[i] * torch.expm1(-h) * d
        previous = (x0, h)
        if opts.callback:
            opts.callback(i, x)
    return x
