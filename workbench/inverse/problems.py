"""Linear inverse problems on a Gaussian-mixture prior, with every exact answer in closed form.

Prior p(x_0) = sum_k w_k N(mu_k, S_k) (a `GaussianMixture`, S_k diagonal); observation
y = A x_0 + n, n ~ N(0, R).

The posterior. Each component is a linear-Gaussian model, so its update is the Kalman one,
    G_k = S_k A^T (A S_k A^T + R)^-1,  m_k = mu_k + G_k (y - A mu_k),  P_k = S_k - G_k A S_k,
and the component weights become pi_k ∝ w_k N(y; A mu_k, A S_k A^T + R). P_k is full (A mixes
coordinates), so the posterior is a `FullCovarianceMixture`, not a `GaussianMixture`.

The exact guidance term. Noising x_t = alpha x_0 + sigma eps, the per-component posterior of x_0
given x_t is Gaussian, N(m_k(x_t), C_k) with C_k = diag(s^2 sigma^2 / (alpha^2 s^2 + sigma^2)),
and the responsibilities r_k(x_t) are the noised mixture's. Hence exactly
    p_t(y | x_t) = sum_k r_k(x_t) N(y; A m_k(x_t), A C_k A^T + R).
Its gradient follows without differentiating: p(x_0 | x_t) ∝ p(x_0) N(x_t; alpha x_0, sigma^2),
whose x_t-gradient is alpha x_0 / sigma^2 up to an x_0-free term, so
    grad_x log p_t(y | x_t) = (alpha / sigma^2) (E[x_0 | x_t, y] - E[x_0 | x_t]),
and E[x_0 | x_t, y] is again a Kalman update per component, reweighted by the likelihood.
`exact_guidance` uses this form; the tests check it against finite differences of
`log_likelihood`. E[x_0 | x_t, y] is also the exact posterior's denoiser: the score of
p_t(x_t | y) is score_t + grad log p_t(y | x_t), and Tweedie turns it into that conditional mean,
so `posterior_model` is a data-prediction `DiffusionModel` whose ODE solve samples p(x_0 | y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from workbench.diffusion.models import DiffusionModel
from workbench.diffusion.schedules import NoiseSchedule, VPSchedule
from workbench.registry import Registry
from workbench.toy.mixture import DTYPE, GaussianMixture

LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------ Gaussian helpers
def gaussian_log_density(residual: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """log N(residual; 0, covariance), batched over leading dimensions (Cholesky, stable)."""
    chol = torch.linalg.cholesky(covariance)
    solved = torch.linalg.solve_triangular(chol, residual.unsqueeze(-1), upper=False)
    mahalanobis = (solved.squeeze(-1) ** 2).sum(-1)
    log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (mahalanobis + log_det + residual.shape[-1] * LOG_2PI)


def _solve(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """matrix^-1 rhs for symmetric positive-definite matrices (batched)."""
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(matrix))


# ------------------------------------------------------------------ full-covariance mixture
class FullCovarianceMixture:
    """sum_k w_k N(m_k, P_k) with full covariances: the exact posterior of an inverse problem.

    Args: means (K, D), covariances (K, D, D) symmetric positive definite, weights (K,) >= 0.
    """

    def __init__(self, means: torch.Tensor, covariances: torch.Tensor, weights: torch.Tensor):
        means = torch.as_tensor(means, dtype=DTYPE)
        covariances = torch.as_tensor(covariances, dtype=DTYPE)
        weights = torch.as_tensor(weights, dtype=DTYPE)
        k, d = means.shape
        if covariances.shape != (k, d, d):
            raise ValueError(
                f"covariances must have shape ({k}, {d}, {d}), got {covariances.shape}"
            )
        if weights.shape != (k,) or not bool((weights >= 0).all()) or not weights.sum() > 0:
            raise ValueError("weights must be (K,) non-negative and not all zero")
        # symmetrized: a Kalman update's round-off leaves P_k asymmetric at 1e-17
        self.covariances = 0.5 * (covariances + covariances.transpose(1, 2))
        self.means, self.weights = means, weights / weights.sum()
        self._chol = torch.linalg.cholesky(self.covariances)  # fails loudly if not SPD

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> torch.Tensor:
        return self.weights @ self.means

    def content_key(self):
        return ("FullCovarianceMixture", self.means, self.covariances, self.weights)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(seed))
        components = torch.multinomial(self.weights, int(n), replacement=True, generator=generator)
        noise = torch.randn(int(n), self.dim, generator=generator, dtype=DTYPE)
        return self.means[components] + (self._chol[components] @ noise[..., None]).squeeze(-1)

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K): log w_k + log N(x; m_k, P_k)."""
        residual = x[:, None, :] - self.means
        return torch.log(self.weights) + gaussian_log_density(residual, self.covariances)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.component_log_probs(torch.as_tensor(x, dtype=DTYPE)), -1)

    def noised(self, alpha: float, sigma: float) -> FullCovarianceMixture:
        """The law of alpha x_0 + sigma eps."""
        eye = torch.eye(self.dim, dtype=DTYPE)
        return FullCovarianceMixture(
            alpha * self.means, alpha**2 * self.covariances + sigma**2 * eye, self.weights
        )

    def denoise(self, x: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """E[x_0 | x_t] for scalar alpha, sigma: per component m + alpha P V^-1 (x - alpha m)."""
        noised = self.noised(float(alpha), float(sigma))
        resp = torch.softmax(noised.component_log_probs(x), -1)  # (N, K)
        innovation = (x[:, None, :] - noised.means)[..., None]  # (N, K, D, 1)
        gain_input = _solve(noised.covariances, innovation).squeeze(-1)  # V^-1 (x - alpha m)
        means = self.means + alpha * torch.einsum("kij,nkj->nki", self.covariances, gain_input)
        return (resp[..., None] * means).sum(1)


# ------------------------------------------------------------------ the problem
@dataclass(eq=False)
class InverseProblem:
    """prior, y = A x_0 + n with n ~ N(0, R), and the schedule of the diffusion prior."""

    prior: GaussianMixture
    operator: torch.Tensor  # A, (M, D)
    noise_covariance: torch.Tensor  # R, (M, M)
    observation: torch.Tensor  # y, (M,)
    schedule: NoiseSchedule
    name: str = "inverse problem"

    def __post_init__(self) -> None:
        self.operator = torch.as_tensor(self.operator, dtype=DTYPE)
        self.noise_covariance = torch.as_tensor(self.noise_covariance, dtype=DTYPE)
        self.observation = torch.as_tensor(self.observation, dtype=DTYPE).reshape(-1)
        a, r, y = self.operator, self.noise_covariance, self.observation
        if a.ndim != 2 or a.shape[1] != self.prior.dim:
            raise ValueError(f"A must have shape (M, {self.prior.dim}), got {tuple(a.shape)}")
        m = a.shape[0]
        if r.shape != (m, m) or not torch.allclose(r, r.T):
            raise ValueError(f"R must be a symmetric ({m}, {m}) matrix, got shape {tuple(r.shape)}")
        if not bool(torch.linalg.eigvalsh(r).min() > 0):
            raise ValueError(
                "R must be positive definite (a noise-free observation is not supported)"
            )
        if y.shape != (m,) or not bool(torch.isfinite(y).all()):
            raise ValueError(f"y must hold {m} finite values, got {y.tolist()}")
        for value, what in ((a, "A"), (r, "R")):
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{what} must be finite")

    def content_key(self):
        return (
            "InverseProblem",
            self.prior,
            self.operator,
            self.noise_covariance,
            self.observation,
            self.schedule,
        )

    # ---------------------------------------------------------------- clean posterior
    @cached_property
    def posterior(self) -> FullCovarianceMixture:
        """p(x_0 | y), exactly (Kalman update per component)."""
        a, r, y = self.operator, self.noise_covariance, self.observation
        prior_cov = torch.diag_embed(self.prior.stds**2)  # (K, D, D)
        innovation_cov = a @ prior_cov @ a.T + r  # (K, M, M)
        gain = prior_cov @ a.T @ torch.linalg.inv(innovation_cov)  # (K, D, M)
        residual = y - self.prior.means @ a.T  # (K, M)
        means = self.prior.means + (gain @ residual[..., None]).squeeze(-1)
        covariances = prior_cov - gain @ a @ prior_cov
        log_weights = torch.log(self.prior.weights) + gaussian_log_density(residual, innovation_cov)
        return FullCovarianceMixture(means, covariances, torch.softmax(log_weights, 0))

    def posterior_samples(self, n: int, seed: int = 0) -> torch.Tensor:
        return self.posterior.sample(n, seed)

    def noised_posterior_samples(self, n: int, t: float, seed: int = 0) -> torch.Tensor:
        """Exact draws of p_t(x_t | y): x_0 ~ p(x_0 | y), x_t = alpha x_0 + sigma eps."""
        alpha, sigma = self.levels(t)
        return self.posterior.noised(alpha, sigma).sample(n, seed)

    def noised_prior_samples(self, n: int, t: float, seed: int = 0) -> torch.Tensor:
        alpha, sigma = self.levels(t)
        return self.prior.noised(alpha, sigma).sample(n, seed)

    def levels(self, t: float) -> tuple[float, float]:
        t = float(t)
        if not self.schedule.t_min <= t <= self.schedule.t_max:
            raise ValueError(
                f"t must be in [{self.schedule.t_min:g}, {self.schedule.t_max:g}], got {t:g}"
            )
        return float(self.schedule.alpha(t)), float(self.schedule.sigma(t))

    # ---------------------------------------------------------------- noised likelihood
    def _component_posteriors(self, x: torch.Tensor, alpha, sigma):
        """Per component: responsibilities r_k(x_t) (N, K), means m_k(x_t) (N, K, D) and
        diagonal covariances C_k (K, D) of p(x_0 | x_t, k)."""
        prior_var = self.prior.stds**2
        noised_var = alpha**2 * prior_var + sigma**2
        means = self.prior.means + (alpha * prior_var / noised_var) * (
            x[:, None, :] - alpha * self.prior.means
        )
        covariances = prior_var * sigma**2 / noised_var
        resp_log = torch.log_softmax(self.prior.component_log_probs(x, alpha, sigma), -1)
        return resp_log, means, covariances

    def _likelihood_terms(self, x: torch.Tensor, alpha, sigma):
        """log r_k + log N(y; A m_k, A C_k A^T + R) (N, K), and the pieces that made it."""
        a, r, y = self.operator, self.noise_covariance, self.observation
        resp_log, means, covariances = self._component_posteriors(x, alpha, sigma)
        innovation_cov = (a * covariances[:, None, :]) @ a.T + r  # (K, M, M)
        residual = y - means @ a.T  # (N, K, M)
        log_terms = resp_log + gaussian_log_density(residual, innovation_cov)
        return log_terms, means, covariances, innovation_cov, residual

    def log_likelihood(self, x: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """(N,) log p_t(y | x_t), exactly."""
        x = self._points(x)
        return torch.logsumexp(self._likelihood_terms(x, alpha, sigma)[0], -1)

    def conditional_mean(self, x: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """(N, D) E[x_0 | x_t, y]: the exact posterior denoiser."""
        x = self._points(x)
        log_terms, means, covariances, innovation_cov, residual = self._likelihood_terms(
            x, alpha, sigma
        )
        weights = torch.softmax(log_terms, -1)  # p(k | x_t, y)
        solved = _solve(innovation_cov, residual.unsqueeze(-1)).squeeze(-1)  # (N, K, M)
        updated = means + covariances * (solved @ self.operator)  # m_k + C_k A^T S^-1 v
        return (weights[..., None] * updated).sum(1)

    def exact_guidance(self, x: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """(N, D) grad_x log p_t(y | x_t) = (alpha / sigma^2)(E[x_0 | x_t, y] - E[x_0 | x_t])."""
        x = self._points(x)
        difference = self.conditional_mean(x, alpha, sigma) - self.prior.denoise(x, alpha, sigma)
        return alpha / sigma**2 * difference

    def log_observation_likelihood(self, x0: torch.Tensor, extra_variance=0.0) -> torch.Tensor:
        """(N,) log N(y; A x_0, R + extra_variance A A^T) (TFG's smoothed predictor when the
        extra variance is sigma-bar^2; DPS's plain one at 0)."""
        a = self.operator
        covariance = self.noise_covariance + extra_variance * (a @ a.T)
        return gaussian_log_density(self.observation - x0 @ a.T, covariance)

    def likelihood_gradient_x0(self, x0: torch.Tensor, extra_variance=0.0) -> torch.Tensor:
        """(N, D) grad_{x_0} log N(y; A x_0, R + extra A A^T) = A^T S^-1 (y - A x_0)."""
        a = self.operator
        covariance = self.noise_covariance + extra_variance * (a @ a.T)
        residual = self.observation - x0 @ a.T  # (N, M)
        return _solve(covariance, residual.T).T @ a

    # ---------------------------------------------------------------- as diffusion models
    @cached_property
    def prior_model(self) -> DiffusionModel:
        return self.prior.denoiser(self.schedule)

    @cached_property
    def posterior_model(self) -> DiffusionModel:
        """The exact posterior as a data-prediction model: x_t, t -> E[x_0 | x_t, y]."""

        def fn(x, t):
            return self.conditional_mean(x, self.schedule.alpha(t), self.schedule.sigma(t))

        return DiffusionModel(
            fn, "data", self.schedule, f"exact posterior ({self.name})", ("posterior", self)
        )

    def _points(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=DTYPE)
        if x.ndim != 2 or x.shape[1] != self.prior.dim:
            raise ValueError(f"x must have shape (N, {self.prior.dim}), got {tuple(x.shape)}")
        return x


# ------------------------------------------------------------------ named problems
def inpaint_problem() -> InverseProblem:
    """Observe the first coordinate of the 8-mode ring, x = 0 +- 0.1: two modes survive,
    (0, 2) and (0, -2)."""
    return InverseProblem(
        GaussianMixture.ring(),
        [[1.0, 0.0]],
        [[0.1**2]],
        [0.0],
        VPSchedule.linear_ddpm(),
        "inpaint x",
    )


def blur_problem() -> InverseProblem:
    """Observe the average (x + y) / 2 of the ring = 1 +- 0.1: the modes (2, 0) and (0, 2)."""
    return InverseProblem(
        GaussianMixture.ring(),
        [[0.5, 0.5]],
        [[0.1**2]],
        [1.0],
        VPSchedule.linear_ddpm(),
        "blur (average)",
    )


def noisy_problem() -> InverseProblem:
    """Observe all of two_class() with noise std 0.5 at y = (0.3, 0.2): a posterior that
    mixes the four overlapping modes with new weights."""
    return InverseProblem(
        GaussianMixture.two_class(),
        torch.eye(2, dtype=DTYPE),
        0.5**2 * torch.eye(2, dtype=DTYPE),
        [0.3, 0.2],
        VPSchedule.linear_ddpm(),
        "noisy measurement",
    )


PROBLEMS: Registry = Registry("inverse problem")
PROBLEMS.add("inpaint", inpaint_problem, label="inpaint one coordinate (ring)")
PROBLEMS.add("blur", blur_problem, label="blur-like average (ring)")
PROBLEMS.add("noisy", noisy_problem, label="noisy full measurement (two classes)")


def get_problem(name: str) -> InverseProblem:
    return PROBLEMS[name]()
