"""Problems the optimizers race on, generated in code and known exactly where possible.

``KroneckerQuadratic``  f(W) = 1/2 <W - W*, A (W - W*) B>: Hessian A (x) B with eigenvalues
    a_i b_j spread log-uniformly over [1/kappa, 1]. ``rotated=False`` makes A and B diagonal
    (axis-aligned: a diagonal preconditioner such as Adam's can be exact); ``rotated=True``
    conjugates them by random orthogonal U and V, and maps W* and the start W_0 along, so the
    rotated problem is the axis-aligned one seen in another basis, W -> U W V^T. A method that
    commutes with that change of basis (Shampoo, SOAP) traces identical losses on both.
``MatrixLeastSquares``  f(W) = 1/2 |A W B - C|^2 with A, B rectangular and C = A W* B:
    Hessian (A^T A) (x) (B B^T) in random bases, condition number kappa, minimum 0.
``TeacherStudentMLP``  a tanh MLP regressing a random teacher network on fixed Gaussian
    inputs, full batch: small, nonconvex, and with biases (one-dimensional parameters).

Every problem works in float64, is a pure function of its arguments (and seed), and reports
losses relative to the loss at its starting point.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.registry import Registry, check_choice

DTYPE = torch.float64


def random_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian with the signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=DTYPE))
    return q * torch.sign(torch.diagonal(r))


def log_spectrum(n: int, kappa: float) -> torch.Tensor:
    """n values from 1 down to 1/kappa, evenly spaced in log."""
    return torch.logspace(0.0, -math.log10(kappa), n, dtype=DTYPE)


class Problem(ABC):
    """A deterministic objective over a list of float64 parameter tensors."""

    name: str
    # Default target of a race, as loss / initial loss.
    target: float

    @abstractmethod
    def init_params(self) -> list[torch.Tensor]:
        """Fresh copies of the starting parameters (leaf tensors, requires_grad)."""

    @abstractmethod
    def loss_and_grad(self, params: list[torch.Tensor]) -> float:
        """The loss at ``params``; sets every parameter's ``.grad`` to its gradient."""

    @property
    def initial_loss(self) -> float:
        params = self.init_params()
        return self.loss_and_grad(params)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.init_params())


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)


def _check_kappa(kappa: float) -> float:
    if not (isinstance(kappa, (int, float)) and math.isfinite(kappa) and kappa >= 1):
        raise ValueError(f"kappa (condition number) must be a finite number >= 1, got {kappa!r}")
    return float(kappa)


@dataclass
class KroneckerQuadratic(Problem):
    """1/2 <E, A E B> with E = W - W*, a Kronecker-factored Hessian of condition number kappa."""

    rows: int = 16
    cols: int = 16
    kappa: float = 100.0
    rotated: bool = True
    seed: int = 0
    name: str = field(default="quadratic", init=False)
    target: float = field(default=1e-6, init=False)

    def __post_init__(self) -> None:
        self.kappa = _check_kappa(self.kappa)
        generator = torch.Generator().manual_seed(self.seed)
        # Half of log(kappa) on each side: eigenvalues a_i b_j fill [1/kappa, 1].
        self.a = log_spectrum(self.rows, math.sqrt(self.kappa))
        self.b = log_spectrum(self.cols, math.sqrt(self.kappa))
        u = random_orthogonal(self.rows, generator)
        v = random_orthogonal(self.cols, generator)
        optimum = torch.randn(self.rows, self.cols, generator=generator, dtype=DTYPE)
        start = optimum + torch.randn(self.rows, self.cols, generator=generator, dtype=DTYPE)
        if not self.rotated:  # the same draws, so both problems share the spectrum and start
            u, v = torch.eye(self.rows, dtype=DTYPE), torch.eye(self.cols, dtype=DTYPE)
        self.left_basis, self.right_basis = u, v
        self.A = (u * self.a) @ u.T
        self.B = (v * self.b) @ v.T
        self.optimum = u @ optimum @ v.T
        self.start = u @ start @ v.T

    def init_params(self) -> list[torch.Tensor]:
        return [_leaf(self.start)]

    def loss_and_grad(self, params: list[torch.Tensor]) -> float:
        (w,) = params
        error = w.detach() - self.optimum
        grad = self.A @ error @ self.B
        w.grad = grad
        return 0.5 * float((error * grad).sum())

    def hessian(self) -> torch.Tensor:
        """The (rows*cols)^2 Hessian in row-major vec(W) order: A (x) B."""
        return torch.kron(self.A, self.B)

    def eigenvalues(self) -> torch.Tensor:
        return torch.outer(self.a, self.b).flatten()


@dataclass
class MatrixLeastSquares(Problem):
    """1/2 |A W B - C|^2 with C = A W* B; Hessian (A^T A) (x) (B B^T) of condition kappa."""

    rows: int = 16
    cols: int = 16
    out_rows: int = 24
    out_cols: int = 24
    kappa: float = 100.0
    seed: int = 0
    name: str = field(default="least_squares", init=False)
    target: float = field(default=1e-6, init=False)

    def __post_init__(self) -> None:
        self.kappa = _check_kappa(self.kappa)
        if self.out_rows < self.rows or self.out_cols < self.cols:
            raise ValueError("out_rows >= rows and out_cols >= cols keep the minimizer unique")
        generator = torch.Generator().manual_seed(self.seed)
        # Singular values s with s^2 spanning [1/sqrt(kappa), 1] on each side.
        s_a = log_spectrum(self.rows, math.sqrt(self.kappa)).sqrt()
        s_b = log_spectrum(self.cols, math.sqrt(self.kappa)).sqrt()
        self.A = _with_singular_values(self.out_rows, self.rows, s_a, generator)
        self.B = _with_singular_values(self.out_cols, self.cols, s_b, generator).T
        self.optimum = torch.randn(self.rows, self.cols, generator=generator, dtype=DTYPE)
        self.C = self.A @ self.optimum @ self.B
        self.start = self.optimum + torch.randn(
            self.rows, self.cols, generator=generator, dtype=DTYPE
        )

    def init_params(self) -> list[torch.Tensor]:
        return [_leaf(self.start)]

    def loss_and_grad(self, params: list[torch.Tensor]) -> float:
        (w,) = params
        residual = self.A @ w.detach() @ self.B - self.C
        w.grad = self.A.T @ residual @ self.B.T
        return 0.5 * float(residual.square().sum())

    def hessian(self) -> torch.Tensor:
        return torch.kron(self.A.T @ self.A, self.B @ self.B.T)


def _with_singular_values(
    m: int, n: int, singular_values: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """A random (m, n) matrix, m >= n, with the given singular values."""
    u = random_orthogonal(m, generator)[:, :n]
    v = random_orthogonal(n, generator)
    return (u * singular_values) @ v.T


@dataclass
class TeacherStudentMLP(Problem):
    """A 2-hidden-layer tanh MLP fitting a random 1-hidden-layer teacher, full batch (MSE)."""

    inputs: int = 16
    width: int = 32
    outputs: int = 4
    samples: int = 256
    teacher_width: int = 32
    seed: int = 0
    name: str = field(default="mlp", init=False)
    target: float = field(default=1e-3, init=False)

    def __post_init__(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)

        def gaussian(*shape: int, fan_in: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator, dtype=DTYPE) / math.sqrt(fan_in)

        self.x = torch.randn(self.samples, self.inputs, generator=generator, dtype=DTYPE)
        teacher_in = gaussian(self.teacher_width, self.inputs, fan_in=self.inputs)
        teacher_out = gaussian(self.outputs, self.teacher_width, fan_in=self.teacher_width)
        # Scaled so the targets have unit variance whatever the sizes.
        y = torch.tanh(self.x @ teacher_in.T) @ teacher_out.T
        self.y = y / y.std()
        self.start = [
            gaussian(self.width, self.inputs, fan_in=self.inputs),
            torch.zeros(self.width, dtype=DTYPE),
            gaussian(self.width, self.width, fan_in=self.width),
            torch.zeros(self.width, dtype=DTYPE),
            gaussian(self.outputs, self.width, fan_in=self.width),
            torch.zeros(self.outputs, dtype=DTYPE),
        ]

    def init_params(self) -> list[torch.Tensor]:
        return [_leaf(p) for p in self.start]

    def forward(self, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2, w3, b3 = params
        h = torch.tanh(x @ w1.T + b1)
        h = torch.tanh(h @ w2.T + b2)
        return h @ w3.T + b3

    def loss_and_grad(self, params: list[torch.Tensor]) -> float:
        with torch.enable_grad():
            loss = 0.5 * (self.forward(params, self.x) - self.y).square().mean()
            grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        return loss.item()


PROBLEMS: Registry[type[Problem]] = Registry("problem")
PROBLEMS.add("quadratic", KroneckerQuadratic, label="quadratic")
PROBLEMS.add("least_squares", MatrixLeastSquares, label="least squares")
PROBLEMS.add("mlp", TeacherStudentMLP, label="MLP (teacher-student)")


def make_problem(name: str, **options) -> Problem:
    """A problem by registry name; options are its constructor's keyword arguments."""
    cls = PROBLEMS[name]
    valid = [f for f, spec in cls.__dataclass_fields__.items() if spec.init]
    for option in sorted(options):
        check_choice(f"{name} option", option, valid)
    return cls(**options)
