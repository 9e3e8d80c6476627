"""The exact flow of a Gaussian mixture: velocity, divergence, likelihood, flow map, straightness.

Data x_0 ~ sum_k w_k N(mu_k, diag(s_k^2)) at t = 0, noise eps ~ N(0, I) at t = 1, and an
affine path x_t = alpha(t) x_0 + sigma(t) eps (any `NoiseSchedule`; `AffinePath` gives exact
derivatives). Given the component k, x_t is Gaussian with mean alpha mu_k and variance
v_k = alpha^2 s_k^2 + sigma^2, and the conditional velocity E[alpha' x_0 + sigma' eps | x_t, k]
is the affine flow between two Gaussians,

    u_k(x) = alpha' mu_k + (v_k' / 2 v_k) (x - alpha mu_k),
    v_k' / 2 = alpha alpha' s_k^2 + sigma sigma',

so the marginal velocity is u(x) = sum_k r_k(x) u_k(x) with r_k the responsibilities. Every
quantity is evaluated per component, which keeps it finite at both ends (sigma = 0 at the data
end, alpha = 0 at the noise end) where the forms through E[x_0 | x_t] divide 0 by 0.

The mixture is diagonal (all `GaussianMixture` supports), so each v_k is a vector and every
matrix here is diagonal per component; full covariances would need the mixture to carry them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp

from workbench.diffusion.core import check_x_T
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.toy.mixture import GaussianMixture

TOLERANCE = 1e-11  # rtol = atol of the ODE solves in t (as `reference_solution`'s)


def exact_velocity(
    mixture: GaussianMixture, path: NoiseSchedule, label: int | None = None
) -> DiffusionModel:
    """The marginal velocity u_t(x) = E[alpha' x_0 + sigma' eps | x_t = x] of the mixture
    (of p(x | label) if given) on `path`: a `DiffusionModel` with prediction "velocity",
    content-keyed by the mixture, the label and the path (so reference solutions memoize)."""
    target = mixture if label is None else mixture.condition(label)

    def velocity(x, t):
        resp, _, per_component, _ = _components(target, path, x, t)
        return (resp[..., None] * per_component).sum(1)

    name = "exact mixture velocity" + ("" if label is None else f" (label {label})")
    return DiffusionModel(velocity, "velocity", path, name, ("mixture velocity", mixture, label))


def velocity_divergence(
    mixture: GaussianMixture, path: NoiseSchedule, x: torch.Tensor, t, label: int | None = None
) -> torch.Tensor:
    """(N,) div_x u_t(x) in closed form.

    u = (sigma'/sigma) x + (alpha' - sigma' alpha / sigma) E[x_0 | x_t], and Tweedie's second
    identity gives d E[x_0 | x_t] / dx = (alpha / sigma^2) Cov[x_0 | x_t]; by the law of total
    covariance Cov[x_0 | x_t] = sum_k r_k C_k + sum_k r_k (m_k - m)(m_k - m)^T with C_k, m_k
    the component posterior covariance and mean. The within part gives sum_k r_k tr(du_k/dx)
    (= sum_k r_k sum_d v_k' / 2 v_k), the between part sum_k r_k (g_k - g).(u_k - u), where
    g_k = -(x - alpha mu_k) / v_k is the component score and g, u the responsibility-weighted
    means: the same trace, written without the 1 / sigma^3 that is 0 / 0 at the data end.
    """
    target = mixture if label is None else mixture.condition(label)
    resp, scores, per_component, traces = _components(target, path, x, t)
    mean_score = (resp[..., None] * scores).sum(1, keepdim=True)
    mean_velocity = (resp[..., None] * per_component).sum(1, keepdim=True)
    between = ((scores - mean_score) * (per_component - mean_velocity)).sum(-1)
    return (resp * (traces + between)).sum(1)


def _components(mixture: GaussianMixture, path: NoiseSchedule, x: torch.Tensor, t):
    """Per component at (x, t): responsibilities (N, K), scores g_k (N, K, D), velocities u_k
    (N, K, D) and the traces of du_k/dx (K,)."""
    t = torch.as_tensor(t, dtype=DTYPE)
    alpha, sigma = path.alpha(t), path.sigma(t)
    d_alpha, d_sigma = path.derivatives(t)
    prior_var = mixture.stds**2  # (K, D)
    variances = alpha**2 * prior_var + sigma**2
    rates = (alpha * d_alpha * prior_var + sigma * d_sigma) / variances  # v_k' / 2 v_k
    diff = x[:, None, :] - alpha * mixture.means
    resp = mixture.responsibilities(x, alpha, sigma)
    return resp, -diff / variances, d_alpha * mixture.means + rates * diff, rates.sum(-1)


def flow_log_likelihood(
    mixture: GaussianMixture,
    path: NoiseSchedule,
    x0: torch.Tensor,
    label: int | None = None,
) -> torch.Tensor:
    """(N,) log p(x0) by the instantaneous change of variables along the exact flow.

    Integrates dx/dt = u and d delta/dt = div u from the data end t_min to the noise end t_max
    (one adaptive solve, see `_solve_in_t`), then log p(x0) = log p_tmax(x_T) + delta. The
    density at t_max is the source N(0, sigma(t_max)^2 I) on a path that ends in pure noise
    (alpha(t_max) = 0), the exact noised mixture otherwise. The answer is the log density at
    t_min: mixture.log_prob(x0) when the path starts at the clean data, as the rectified path
    does (a path with sigma(t_min) > 0 gives the slightly noised density there).
    """
    target = mixture if label is None else mixture.condition(label)
    velocity = exact_velocity(target, path)

    def divergence(x, t, _):
        return velocity_divergence(target, path, x, t)

    x_end, delta = _solve_in_t(velocity, x0, path.t_min, path.t_max, divergence)
    alpha_end, sigma_end = path.alpha(path.t_max), path.sigma(path.t_max)
    return target.noised_log_prob(x_end, alpha_end, sigma_end) + delta


def flow_map(model: DiffusionModel, x: torch.Tensor, t_from: float, t_to: float) -> torch.Tensor:
    """The model's probability-flow ODE solution at t_to from x at t_from, either direction
    (t_from > t_to runs toward the data); the exact 1-rectified coupling of noise x1 is
    (flow_map(model, x1, t_max, t_min), x1)."""
    t_from, t_to = float(t_from), float(t_to)
    x = check_x_T(x).to(DTYPE)
    if t_to == t_from:
        return x.clone()
    return _solve_in_t(model.as_prediction("velocity"), x, t_from, t_to)[0]


def straightness(model: DiffusionModel, x1: torch.Tensor) -> float:
    """S = E int |dx/dt - (x_1 - x_0)|^2 dt along the model's ODE trajectories from noise x1.

    x_0 is the endpoint of x1's trajectory at the data end; the interval is the path's
    [t_min, t_max] (on which a straight trajectory moves at the constant (x_1 - x_0) / length).
    Since int v dt = x_1 - x_0 exactly, S = E int |v|^2 dt - E|x_1 - x_0|^2 / length: the
    kinetic energy rides along the ODE solve as one more state, so the quadrature is the
    solver's own (adaptive DOP853 at `TOLERANCE`: absolute error ~1e-10, measured against the
    single-Gaussian closed form in the tests; a fixed Gauss-Legendre rule in t converged only
    to ~1e-4 on the ring, whose trajectories near a mode boundary turn sharply late). S = 0
    exactly when every trajectory is a straight line run at constant speed.
    """
    path = model.schedule
    velocity = model.as_prediction("velocity")

    def kinetic(x, t, v):
        return (v**2).sum(-1)

    x0, energy = _solve_in_t(velocity, x1, path.t_max, path.t_min, kinetic)
    length = path.t_max - path.t_min
    x1 = x1.to(DTYPE)
    # energy was accumulated from t_max down to t_min, hence its sign
    return float((-energy - ((x1 - x0) ** 2).sum(-1) / length).mean())


def _solve_in_t(velocity: DiffusionModel, x, t_from: float, t_to: float, rate=None):
    """(x at t_to, int_t_from^t_to rate dt) along dx/dt = velocity(x, t) from x at t_from.

    `rate(x, t, v) -> (N,)` is integrated beside the points (a log-density change, a kinetic
    energy); scipy DOP853 (8th order, adaptive) in float64 at TOLERANCE, as the reference
    solutions are.
    """
    x = check_x_T(x).to(DTYPE)
    n, size = x.shape[0], x.numel()

    def rhs(t, state):
        points = torch.from_numpy(state[:size]).reshape(x.shape)
        v = velocity(points, t)
        extra = rate(points, t, v).numpy() if rate is not None else np.zeros(0)
        return np.concatenate([v.reshape(-1).numpy(), extra])

    start = np.concatenate([x.reshape(-1).numpy(), np.zeros(n if rate is not None else 0)])
    solution = solve_ivp(
        rhs, (t_from, t_to), start, method="DOP853", rtol=TOLERANCE, atol=TOLERANCE
    )
    if not solution.success:
        raise RuntimeError(f"the exact flow's ODE solve failed: {solution.message}")
    end = solution.y[:, -1]
    return torch.from_numpy(end[:size]).reshape(x.shape), torch.from_numpy(end[size:])


def transport_cost(x_data: torch.Tensor, x_noise: torch.Tensor) -> float:
    """E |x_1 - x_0|^2 of a coupling given as paired samples (row i of each is one pair)."""
    x_data, x_noise = torch.as_tensor(x_data, dtype=DTYPE), torch.as_tensor(x_noise, dtype=DTYPE)
    if x_data.shape != x_noise.shape or x_data.ndim != 2 or x_data.shape[0] == 0:
        raise ValueError(
            "x_data and x_noise must be paired samples of the same shape (N, D) with N >= 1, "
            f"got {tuple(x_data.shape)} and {tuple(x_noise.shape)}"
        )
    return float(((x_noise - x_data) ** 2).sum(-1).mean())


def average_velocity(model: DiffusionModel, z: torch.Tensor, r: float, t: float) -> torch.Tensor:
    """MeanFlow's average velocity u(z, r, t) = (1 / (t - r)) int_r^t v(z_tau, tau) dtau along
    the trajectory through z at time t, exactly: (z - z_r) / (t - r) with z_r the flow map to r.

    So z_r = z - (t - r) u (one step of any length is exact), and at r = t it is v(z, t)."""
    r, t = float(r), float(t)
    for name, value in (("r", r), ("t", t)):
        if not (math.isfinite(value) and model.schedule.t_min <= value <= model.schedule.t_max):
            raise ValueError(
                f"{name}={value:g} is outside the path's range "
                f"[{model.schedule.t_min:g}, {model.schedule.t_max:g}]"
            )
    z = check_x_T(z).to(DTYPE)
    if r == t:
        return model.as_prediction("velocity")(z, t)
    return (z - flow_map(model, z, t, r)) / (t - r)
