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

The ODE solves run in the rectified time u = sigma / (alpha + sigma) for z = x / (alpha + sigma),
as `reference_solution`'s do at infinite log-SNR: there every affine path is the rectified one,
dz/du = E[eps - x_0 | x_t], on a finite interval and without d sigma / dt (infinite at t = 0 on
the VP path; the velocity in t needs only sigma sigma', finite there, see `_levels`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp

from workbench.diffusion.core import ModelOutputError, check_x_T, model_data_and_noise
from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.reference import reference_solution
from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.toy.mixture import GaussianMixture

TOLERANCE = 1e-11  # rtol = atol of the ODE solves (as `reference_solution`'s)
LIMIT_STEP = 1e-12  # how far inside the path a one-sided limit is taken (see `_levels`)


def exact_velocity(
    mixture: GaussianMixture, path: NoiseSchedule, label: int | None = None
) -> DiffusionModel:
    """The marginal velocity u_t(x) = E[alpha' x_0 + sigma' eps | x_t = x] of the mixture
    (of p(x | label) if given) on `path`: a `DiffusionModel` with prediction "velocity",
    content-keyed by the mixture, the label and the path (so reference solutions memoize)."""
    target = _target(mixture, label)

    def velocity(x, t):
        return _conditional_mean(target, x, *_levels(path, t))

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
    return _mean_and_divergence(_target(mixture, label), x, *_levels(path, t))[1]


def _target(mixture: GaussianMixture, label: int | None) -> GaussianMixture:
    return mixture if label is None else mixture.condition(label)


def _levels(path: NoiseSchedule, t) -> tuple[torch.Tensor, ...]:
    """(alpha, sigma, alpha', sigma sigma') at t: the velocity needs sigma' only through
    sigma sigma' = (sigma^2)' / 2, which stays finite where sigma' does not (the VP path's
    t = 0, sigma ~ sqrt(beta_min t)). There, 0 * inf is replaced by its value LIMIT_STEP inside
    the path: sigma sigma' is smooth in t, so that one-sided limit is off by ~1e-12 relative."""
    t = torch.as_tensor(t, dtype=DTYPE)
    alpha, sigma = path.alpha(t), path.sigma(t)
    d_alpha, d_sigma = path.derivatives(t)
    sigma_rate = sigma * d_sigma
    if not bool(torch.isfinite(sigma_rate)):
        inside = t + LIMIT_STEP if float(t) - path.t_min < path.t_max - float(t) else t - LIMIT_STEP
        sigma_rate = path.sigma(inside) * path.derivatives(inside)[1]
    return alpha, sigma, d_alpha, sigma_rate


def _components(mixture: GaussianMixture, x, alpha, sigma, rate_x0, sigma_rate_eps):
    """Per component, for W = rate_x0 x_0 + rate_eps eps given x_t = x, with sigma_rate_eps =
    sigma rate_eps (the velocity for the path's alpha', sigma', the rectified-time drift
    eps - x_0 for -1, 1): responsibilities (N, K), scores g_k (N, K, D), E[W | x, k] (N, K, D)
    and the traces of its Jacobian (K,)."""
    prior_var = mixture.stds**2  # (K, D)
    variances = alpha**2 * prior_var + sigma**2
    gains = (alpha * rate_x0 * prior_var + sigma_rate_eps) / variances  # v_k' / 2 v_k
    diff = x[:, None, :] - alpha * mixture.means
    resp = mixture.responsibilities(x, alpha, sigma)
    return resp, -diff / variances, rate_x0 * mixture.means + gains * diff, gains.sum(-1)


def _conditional_mean(mixture: GaussianMixture, x, *levels) -> torch.Tensor:
    resp, _, means, _ = _components(mixture, x, *levels)
    return (resp[..., None] * means).sum(1)


def _mean_and_divergence(mixture: GaussianMixture, x, *levels):
    """E[W | x_t = x] (N, D) and its divergence (N,) (W as in `_components`)."""
    resp, scores, means, traces = _components(mixture, x, *levels)
    mean_score = (resp[..., None] * scores).sum(1, keepdim=True)
    mean = (resp[..., None] * means).sum(1, keepdim=True)
    between = ((scores - mean_score) * (means - mean)).sum(-1)
    return mean[:, 0], (resp * (traces + between)).sum(1)


def flow_log_likelihood(
    mixture: GaussianMixture,
    path: NoiseSchedule,
    x0: torch.Tensor,
    label: int | None = None,
) -> torch.Tensor:
    """(N,) log p(x0) by the instantaneous change of variables along the exact flow.

    Integrates the flow and d delta = div from the data end t_min to the noise end t_max (in
    the rectified time, see the module: dz/du = E[eps - x_0 | x_t] with its divergence in z),
    then log p(x0) = log p_tmax(x_T) + delta + D log((alpha + sigma)(t_max) / (... )(t_min)).
    The density at t_max is the source N(0, sigma(t_max)^2 I) on a path that ends in pure
    noise (alpha(t_max) = 0), the exact noised mixture otherwise (VP). The answer is the log
    density at t_min: mixture.log_prob(x0) when the path starts at the clean data (rectified,
    VP, cosine); CondOT's sigma_min > 0 gives the data blurred by N(0, sigma_min^2) there.
    """
    target = _target(mixture, label)

    def field(x, t, scale):  # dz/du = E[eps - x_0 | x_t = x] and its divergence in z
        alpha, sigma = path.alpha(t), path.sigma(t)
        drift, divergence = _mean_and_divergence(target, x, alpha, sigma, -1.0, sigma)
        return drift, scale * divergence

    x_end, delta = _solve_in_u(path, field, x0, path.t_min, path.t_max, with_rate=True)
    alpha_end, sigma_end = path.alpha(path.t_max), path.sigma(path.t_max)
    log_scales = torch.log(_scale(path, path.t_max)) - torch.log(_scale(path, path.t_min))
    source = target.noised_log_prob(x_end, alpha_end, sigma_end)
    return source + delta + x_end.shape[1] * log_scales


def flow_map(model: DiffusionModel, x: torch.Tensor, t_from: float, t_to: float) -> torch.Tensor:
    """The model's probability-flow ODE solution at t_to from x at t_from, either direction.

    Toward the data (t_to < t_from) it is `reference_solution` (memoized for content-keyed
    models); toward the noise the same ODE in the same variables at the same tolerance. The
    exact 1-rectified coupling of noise x1 is (flow_map(model, x1, t_max, t_min), x1).
    """
    t_from, t_to = float(t_from), float(t_to)
    x = check_x_T(x).to(DTYPE)
    if t_to < t_from:
        return reference_solution(model, x, t_start=t_from, t_end=t_to)
    if t_to == t_from:
        return x.clone()
    return _solve_in_u(model.schedule, _model_field(model), x, t_from, t_to)[0]


def straightness(model: DiffusionModel, x1: torch.Tensor) -> float:
    """S = E int |dx/dt - (x_1 - x_0)|^2 dt along the model's ODE trajectories from noise x1.

    x_0 is the endpoint of x1's trajectory at the data end; the interval is the path's
    [t_min, t_max] (on which a straight trajectory moves at the constant (x_1 - x_0) / length).
    Since int v dt = x_1 - x_0 exactly, S = E int |v|^2 dt - E|x_1 - x_0|^2 / length: the
    kinetic energy rides along the ODE solve as one more state, so the quadrature is the
    solver's own (adaptive DOP853 at TOLERANCE: absolute error ~1e-13 against the single-Gaussian
    closed form; a fixed 32-node Gauss-Legendre rule in t converged only to ~1e-4 on the ring,
    whose trajectories near a mode boundary turn late and sharply). S = 0 exactly when every
    trajectory is a straight line run at constant speed. Where sigma' is infinite (the VP
    path's t = 0) dt/du = 0 and the energy's rate is 0; a velocity model cannot be converted
    to (x_0, eps) there (`to_data_and_noise` divides inf by inf), a data model can.
    """
    path = model.schedule
    x1 = check_x_T(x1).to(DTYPE)

    def field(x, t, scale):  # dz/du and the kinetic energy's rate |dx/dt|^2 dt/du
        alpha, sigma = path.alpha(t), path.sigma(t)
        d_alpha, d_sigma = path.derivatives(t)
        x0, eps = _model_data_and_noise(model, x, t, alpha, sigma)
        dt_du = scale**2 / (alpha * d_sigma - sigma * d_alpha)
        if not dt_du > 0:  # sigma' = inf (VP at t = 0): dt/du = 0 and dx/dt finite there
            return eps - x0, torch.zeros(x.shape[0], dtype=DTYPE)
        return eps - x0, ((d_alpha * x0 + d_sigma * eps) ** 2).sum(-1) * dt_du

    x0, energy = _solve_in_u(path, field, x1, path.t_max, path.t_min, with_rate=True)
    length = path.t_max - path.t_min
    # the energy was accumulated from the noise end down to the data end, hence its sign
    return float((-energy - ((x1 - x0) ** 2).sum(-1) / length).mean())


def _model_field(model: DiffusionModel):
    """dz/du = eps - x_0 from the model's output (see `_solve_in_u`)."""
    path = model.schedule

    def field(x, t, scale):
        x0, eps = _model_data_and_noise(model, x, t, path.alpha(t), path.sigma(t))
        return eps - x0, None

    return field


def _model_data_and_noise(model: DiffusionModel, x, t, alpha, sigma):
    """The model's (x_0, eps), refused in one line where they are not finite."""
    x0, eps = model_data_and_noise(model, x, t, model.schedule, alpha, sigma)
    if not bool(torch.isfinite(x0).all() and torch.isfinite(eps).all()):
        hint = ""
        if model.prediction == "velocity" and not bool(
            torch.isfinite(model.schedule.derivatives(t)[1])
        ):
            hint = (
                ": a velocity gives no (x_0, eps) where d sigma / dt is infinite (the VP path's "
                "t = 0); solve with a data-prediction model there (mixture.denoiser(path))"
            )
        raise ModelOutputError(
            f"{model.name} gives NaN or infinite (x_0, eps) at t={float(t):g}{hint}"
        )
    return x0, eps


def _scale(path: NoiseSchedule, t) -> torch.Tensor:
    return path.alpha(t) + path.sigma(t)


def _solve_in_u(path: NoiseSchedule, field, x, t_from: float, t_to: float, with_rate=False):
    """(x at t_to, int rate du) along the flow from x at t_from, in the rectified time
    u = sigma / (alpha + sigma) for z = x / (alpha + sigma).

    `field(x, t, alpha + sigma) -> (dz/du = E[eps - x_0 | x_t = x], rate)`, the rate (N,) a
    quantity integrated beside the points when `with_rate` (a log-density change, a kinetic
    energy; one model call gives both). scipy DOP853 (8th order, adaptive) in float64 at
    TOLERANCE, as `reference_solution`.
    """
    x = check_x_T(x).to(DTYPE)
    n, size = x.shape[0], x.numel()
    extra = n if with_rate else 0

    def rhs(u, state):
        t = _time_of_u(path, u)
        scale = _scale(path, t)
        points = scale * torch.from_numpy(state[:size]).reshape(x.shape)
        drift, rate = field(points, t, scale)
        drift = drift.reshape(-1).numpy()
        return np.concatenate([drift, rate.numpy()]) if with_rate else drift

    def u_of(t):
        return float(path.sigma(t) / _scale(path, t))

    start = np.concatenate([(x / _scale(path, t_from)).reshape(-1).numpy(), np.zeros(extra)])
    solution = solve_ivp(
        rhs, (u_of(t_from), u_of(t_to)), start, method="DOP853", rtol=TOLERANCE, atol=TOLERANCE
    )
    if not solution.success:
        raise RuntimeError(f"the exact flow's ODE solve failed: {solution.message}")
    end = solution.y[:, -1]
    x_end = _scale(path, t_to) * torch.from_numpy(end[:size]).reshape(x.shape)
    return x_end, torch.from_numpy(end[size:])


def _time_of_u(path: NoiseSchedule, u: float) -> torch.Tensor:
    # u = 1 / (1 + e^lambda): lambda = log((1 - u) / u), +-inf at the ends exactly
    lam = math.log1p(-u) - math.log(u) if 0 < u < 1 else (math.inf if u <= 0 else -math.inf)
    return path.t_of_lambda(torch.tensor(lam, dtype=DTYPE))


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
