"""The optimizers in workbench.optim: exact properties, theory on quadratics, bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from workbench.optim import (
    SOAP,
    FullMatrixPreconditioned,
    Muon,
    PSGDKron,
    Shampoo,
    newton_schulz,
    state_bytes,
    theory,
)
from workbench.optim.muon import NEWTON_SCHULZ_BAND, NEWTON_SCHULZ_MIN_RELATIVE_SIGMA
from workbench.optim.problems import KroneckerQuadratic, MatrixLeastSquares, TeacherStudentMLP
from workbench.optim.psgd import balance_factors, precondition, spectral_norm_lower_bound
from workbench.optim.race import train

# Each optimizer with small-problem options that visit every code path within a few steps
# (preconditioner refreshes at step 3, 6, ...).
OURS = {
    "shampoo": lambda params: Shampoo(params, lr=0.01, precondition_frequency=3),
    "shampoo_sgd_graft": lambda params: Shampoo(
        params, lr=0.01, precondition_frequency=3, grafting="sgd", betas=(0.0, 0.99)
    ),
    "soap": lambda params: SOAP(params, lr=0.01, precondition_frequency=3, precondition_1d=True),
    "psgd_kron": lambda params: PSGDKron(params, lr=0.01, precondition_frequency=2),
    "muon": lambda params: Muon(params, lr=0.01, weight_decay=0.1),
    "adafactor (torch)": lambda params: torch.optim.Adafactor(params, lr=0.01),
}


def _copies(params):
    return [p.detach().clone().requires_grad_(True) for p in params]


def _steps(problem, params, opt, n):
    for _ in range(n):
        problem.loss_and_grad(params)
        opt.step()


@pytest.mark.parametrize("name", OURS)
def test_state_dict_round_trip_continues_identically(name):
    """Save mid-run, load into a fresh optimizer on copied parameters: the same trajectory."""
    problem = TeacherStudentMLP(width=8, samples=32)  # matrices and biases, float64
    make = OURS[name]
    params = problem.init_params()
    opt = make(params)
    _steps(problem, params, opt, 7)
    saved_state = copy.deepcopy(opt.state_dict())
    resumed = _copies(params)
    midway = params[0].detach().clone()
    _steps(problem, params, opt, 8)

    fresh = make(resumed)
    fresh.load_state_dict(saved_state)
    _steps(problem, resumed, fresh, 8)
    for a, b in zip(params, resumed, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert not torch.equal(params[0], midway)  # it moved: the test can fail


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Shampoo(p, lr=-1.0), "lr must be a finite number >= 0"),
        (lambda p: Shampoo(p, epsilon=-1e-6), "epsilon must be"),
        (
            lambda p: Shampoo(p, grafting="adagrad"),
            "unknown grafting 'adagrad'; choose from adam, sgd",
        ),
        (lambda p: Shampoo(p, precondition_frequency=0), "precondition_frequency must be"),
        (lambda p: Shampoo(p, betas=(0.9, 1.5)), r"betas\[1\] must be in \[0, 1\]"),
        (lambda p: SOAP(p, lr=float("nan")), "lr must be a finite number"),
        (lambda p: SOAP(p, eps=-1.0), "eps must be"),
        (lambda p: SOAP(p, betas=(1.0, 0.95)), r"betas\[0\] must be in \[0, 1\)"),
        (lambda p: SOAP(p, shampoo_beta=2.0), "shampoo_beta must be"),
        (lambda p: PSGDKron(p, lr=-0.1), "lr must be"),
        (lambda p: PSGDKron(p, precondition_init_scale=0.0), "precondition_init_scale"),
        (lambda p: PSGDKron(p, update_rms_clip=-1.0), "update_rms_clip"),
        (lambda p: PSGDKron(p, seed=-3), "seed must be"),
        (lambda p: Muon(p, lr=-0.02), "lr must be"),
        (lambda p: Muon(p, adamw_eps=-1.0), "adamw_eps must be"),
        (lambda p: Muon(p, ns_steps=0), "ns_steps must be"),
        (lambda p: FullMatrixPreconditioned(p, torch.eye(3)), r"must be \(4, 4\)"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(make, message):
    params = [torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)]
    with pytest.raises(ValueError, match=message):
        make(params)


def test_muon_refuses_a_vector_forced_onto_muon():
    bias = torch.zeros(3, requires_grad=True)
    opt = Muon([{"params": [bias], "use_muon": True}])
    bias.grad = torch.ones(3)
    with pytest.raises(ValueError, match="use_muon=False"):
        opt.step()


# ------------------------------------------------------------------------- theory on quadratics


@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_gradient_descent_optimal_step_and_rate(kappa):
    problem = KroneckerQuadratic(rows=6, cols=5, kappa=kappa, rotated=True, seed=1)
    eigenvalues = problem.eigenvalues()
    assert float(eigenvalues.max() / eigenvalues.min()) == pytest.approx(kappa, rel=1e-12)
    best = theory.optimal_gd_step(eigenvalues)
    assert best == pytest.approx(2 / (1 + 1 / kappa), rel=1e-12)
    measured = theory.measured_gd_rate(problem, best)
    assert measured == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-4)
    # any other step is slower: below, the smallest eigenvalue; above, the largest
    too_large = best + 0.5 * (2 / float(eigenvalues.max()) - best)
    for lr in (0.9 * best, too_large):
        rate = theory.measured_gd_rate(problem, lr)
        assert rate > measured
        assert rate == pytest.approx(theory.gd_rate(eigenvalues, lr), rel=1e-4)


@pytest.mark.parametrize(
    "problem",
    [KroneckerQuadratic(kappa=1e4, rotated=True), MatrixLeastSquares(kappa=1e4)],
    ids=["kronecker-quadratic", "matrix-least-squares"],
)
def test_exact_inverse_hessian_converges_in_one_step(problem):
    assert theory.newton_step_loss(problem) < 1e-20
    # while gradient descent at its best step has barely started
    params = problem.init_params()
    initial = problem.loss_and_grad(params)
    eigenvalues = torch.linalg.eigvalsh(problem.hessian())
    FullMatrixPreconditioned(
        params,
        torch.eye(params[0].numel(), dtype=torch.float64),
        lr=theory.optimal_gd_step(eigenvalues),
    ).step()
    assert problem.loss_and_grad(params) / initial > 1e-3


@pytest.mark.parametrize("inverse_root", [4, 2])
def test_shampoo_preconditioner_is_the_exact_inverse_factors(inverse_root):
    """On a Kronecker-factored quadratic, Shampoo's factors are powers of A and B exactly."""
    problem = KroneckerQuadratic(rows=6, cols=5, kappa=300.0, rotated=True, seed=2)
    ours, exact = theory.shampoo_on_isotropic_probes(problem, inverse_root=inverse_root)
    for factor, truth in zip(ours, exact, strict=True):
        assert torch.allclose(factor, truth, rtol=1e-10, atol=0)
    if inverse_root == 2:  # L^-1/2 (x) R^-1/2 is H^-1 up to a scalar: Newton's direction
        product = torch.kron(*ours)
        inverse = torch.linalg.inv(problem.hessian())
        ratio = product / inverse
        assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-8)


def test_shampoo_with_root_two_takes_newtons_step():
    problem = KroneckerQuadratic(rows=8, cols=8, kappa=1e4, rotated=True)
    assert theory.kronecker_newton_loss(problem) < 1e-20


def test_shampoo_matrix_exponent_is_minus_one_over_twice_the_order():
    """Order-3 tensor: each factor is the -1/6 power of its statistic (Gupta et al.)."""
    g = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p = torch.zeros_like(g, requires_grad=True)
    opt = Shampoo([p], lr=1.0, betas=(0.0, 1.0), grafting="none", epsilon=0.0)
    p.grad = g
    opt.step()
    for dim, factor in enumerate(opt.preconditioner(p)):
        unfolded = g.movedim(dim, 0).reshape(g.shape[dim], -1)
        statistic = unfolded @ unfolded.T
        assert torch.allclose(torch.linalg.matrix_power(factor, -6), statistic, rtol=1e-8)


# ------------------------------------------------------------------------- rotation invariance

ROTATION_INVARIANT = ["sgd", "shampoo_sgd_graft", "soap", "soap_adam_betas", "muon"]


def _final(problem, name, lr, steps=120):
    if name == "shampoo_sgd_graft":
        params = problem.init_params()
        opt = Shampoo(params, lr=lr, grafting="sgd")
        initial = problem.loss_and_grad(params)
        _steps(problem, params, opt, steps)
        return problem.loss_and_grad(params) / initial
    return float(train(problem, name, lr, steps).losses[-1])


@pytest.mark.parametrize("name", ROTATION_INVARIANT)
def test_equivariant_methods_trace_the_same_losses_in_a_rotated_basis(name):
    """W -> U W V^T maps the problem onto itself; these methods commute with it."""
    lr = {"sgd": 1.0, "shampoo_sgd_graft": 0.5, "muon": 0.01}.get(name, 0.05)
    axis = _final(KroneckerQuadratic(kappa=1e3, rotated=False), name, lr)
    rotated = _final(KroneckerQuadratic(kappa=1e3, rotated=True), name, lr)
    assert rotated == pytest.approx(axis, rel=1e-6)


def test_adam_is_not_rotation_invariant():
    axis = _final(KroneckerQuadratic(kappa=1e4, rotated=False), "adam", 0.5)
    rotated = _final(KroneckerQuadratic(kappa=1e4, rotated=True), "adam", 0.5)
    assert rotated > 30 * axis


def _tuned_final(problem, name, steps=200, lr_log2=range(-8, 2)):
    return min(train(problem, name, 2.0**k, steps).final_loss for k in lr_log2)


def test_diagonal_wins_axis_aligned_and_kronecker_wins_rotated():
    """kappa = 1e4, each at its best learning rate on a grid, final loss after 200 steps.

    Axis-aligned, Adam's diagonal is already the right basis: it beats SOAP, which must
    estimate a basis (with either betas). Rotated, the Kronecker methods find the basis and
    Adam cannot. SOAP is compared with Adam's betas (0.9, 0.999): with its own (0.95, 0.95)
    its step barely shrinks with the gradient and it stalls near 1e-4 on this deterministic
    problem, rotated or not (see test_equivariant_methods...).
    """
    axis = KroneckerQuadratic(kappa=1e4, rotated=False)
    rotated = KroneckerQuadratic(kappa=1e4, rotated=True)
    adam_axis, adam_rotated = _tuned_final(axis, "adam"), _tuned_final(rotated, "adam")
    for soap in ("soap", "soap_adam_betas"):
        assert adam_axis < _tuned_final(axis, soap)
    for kronecker in ("shampoo", "soap_adam_betas"):
        assert _tuned_final(rotated, kronecker) < 1e-4 * adam_rotated
    # what the rotation costs Adam itself
    assert adam_rotated > 1e4 * adam_axis


# ------------------------------------------------------------------------------- Muon


@pytest.mark.parametrize("shape", [(32, 32), (16, 48), (48, 16)])
def test_newton_schulz_singular_values_land_in_the_band(shape):
    generator = torch.Generator().manual_seed(sum(shape))
    m, n = shape
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=generator, dtype=torch.float64))
    # singular values over two decades, the smallest above the documented relative floor
    sigma = torch.logspace(0, -2, k, dtype=torch.float64)
    g = (u * sigma) @ v.T
    assert float(sigma.min() / torch.linalg.matrix_norm(g)) >= NEWTON_SCHULZ_MIN_RELATIVE_SIGMA
    out = newton_schulz(g)
    s = torch.linalg.svdvals(out)
    low, high = NEWTON_SCHULZ_BAND
    assert low <= float(s.min()) and float(s.max()) <= high
    # same singular vectors as G: U^T X V is diagonal (the iteration is a matrix polynomial)
    core = u.T @ out @ v
    assert torch.allclose(core, torch.diag(torch.diagonal(core)), atol=1e-10)


def test_newton_schulz_band_is_tight():
    """The documented band is what the iteration reaches, not a loose bound."""
    # A diagonal matrix of unit Frobenius norm: the iteration acts on each entry separately.
    small = torch.logspace(
        math.log10(NEWTON_SCHULZ_MIN_RELATIVE_SIGMA), -1.5, 299, dtype=torch.float64
    )
    sigma = torch.cat([(1 - small.square().sum()).sqrt().reshape(1), small])
    s = torch.linalg.svdvals(newton_schulz(torch.diag(sigma)))
    low, high = NEWTON_SCHULZ_BAND
    assert low <= float(s.min()) < low + 0.01
    assert high - 0.02 < float(s.max()) <= high


def test_muon_sends_vectors_to_adamw():
    w = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = Muon([w, b], lr=0.02)
    w.grad, b.grad = torch.ones(4, 3, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    opt.step()
    # AdamW's first step moves every coordinate by its learning rate: 0.02 * 3e-4 / 0.02
    assert torch.allclose(b, torch.full_like(b, -3e-4), rtol=1e-6)
    assert set(opt.state[b]) == {"step", "exp_avg", "exp_avg_sq"}
    assert set(opt.state[w]) == {"momentum"}


# ------------------------------------------------------------------------------- PSGD pieces


def test_psgd_balancing_leaves_the_preconditioner_unchanged():
    generator = torch.Generator().manual_seed(0)
    factors = [
        torch.triu(torch.randn(5, 5, generator=generator, dtype=torch.float64)) * 30,
        torch.triu(torch.randn(4, 4, generator=generator, dtype=torch.float64)) / 30,
    ]
    x = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    before = precondition(factors, x)
    balance_factors(factors)
    norms = [float(q.abs().max()) for q in factors]
    assert norms[0] == pytest.approx(norms[1], rel=1e-12)
    assert torch.allclose(precondition(factors, x), before, rtol=1e-12)


def test_psgd_spectral_norm_lower_bound():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.randn(7, 7, generator=generator, dtype=torch.float64)
        matrix = x @ x.T
        exact = float(torch.linalg.matrix_norm(matrix, 2))
        bound = float(spectral_norm_lower_bound(matrix))
        assert 0.5 * exact <= bound <= exact * (1 + 1e-12)


def test_psgd_whitens_gradients_of_a_fixed_distribution():
    """With h ~ N(0, C) and no momentum, P -> C^-1/2: the fixed point of the PSGD fit."""
    generator = torch.Generator().manual_seed(0)
    left = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    right = torch.diag(torch.tensor([2.0, 0.5], dtype=torch.float64))
    p = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    opt = PSGDKron([p], lr=0.0, momentum=0.0, precondition_lr=0.01, update_rms_clip=None)
    for _ in range(12000):
        # gradient covariance (left^2) (x) (right^2): whitening gives left^-1 (x) right^-1
        p.grad = left @ torch.randn(3, 2, generator=generator, dtype=torch.float64) @ right
        opt.step()
    q1, q2 = opt.preconditioner_factors(p)
    whitening = torch.kron(q1.T @ q1, q2.T @ q2)
    target = torch.kron(torch.linalg.inv(left), torch.linalg.inv(right))
    # a stochastic fit: within 15% on the diagonal, nearly diagonal elsewhere
    ratio = torch.diagonal(whitening) / torch.diagonal(target)
    assert float(ratio.min()) > 0.85 and float(ratio.max()) < 1.15
    off_diagonal = whitening - torch.diag(torch.diagonal(whitening))
    assert float(off_diagonal.abs().max()) < 0.05 * float(whitening.abs().max())


# ------------------------------------------------------------------------------------ memory


def test_state_bytes_counts_what_each_method_keeps():
    problem = KroneckerQuadratic(rows=16, cols=8)
    floats = 8  # float64
    expected = {
        "sgd": 16 * 8 * floats,  # momentum buffer
        "muon": 16 * 8 * floats,
        "shampoo": (2 * 16 * 8 + 2 * (16 * 16 + 8 * 8)) * floats,  # m, v graft, L, R, roots
        "soap": (2 * 16 * 8 + 2 * (16 * 16 + 8 * 8)) * floats,  # m, v, statistics, bases
        "psgd_kron": (16 * 8 + 16 * 16 + 8 * 8) * floats,  # momentum, Q_1, Q_2
    }
    for name, count in expected.items():
        assert train(problem, name, 1e-3, 3).state_bytes == count, name
    adafactor = train(problem, "adafactor", 1e-3, 3).state_bytes
    assert adafactor < 16 * 8 * floats  # factored second moment: rows + columns, sublinear


def test_state_bytes_of_adam_matches_torch():
    p = torch.zeros(10, 3, requires_grad=True)
    opt = torch.optim.Adam([p])
    p.grad = torch.ones_like(p)
    opt.step()
    assert state_bytes(opt) == 2 * 30 * 4 + 4  # exp_avg, exp_avg_sq, a float32 step count
    assert not math.isnan(state_bytes(opt))


# ------------------------------------------------------------- SOAP's canonical eigenbasis


def _mixing(k: int, generator: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=torch.float64)).Q


def _rounding_rotates_null_spaces(monkeypatch, seed: int = 0):
    """torch.linalg.eigh and qr returning another orthonormal basis of each (numerically)
    zero eigenspace or column space (what another code path of the math library may
    return), the rest unchanged."""
    eigh, qr = torch.linalg.eigh, torch.linalg.qr
    generator = torch.Generator().manual_seed(seed)

    def rotated_eigh(matrix, *args, **kwargs):
        values, vectors = eigh(matrix, *args, **kwargs)
        null = values.abs() <= 1e-10 * values.abs().max()
        if int(null.sum()) > 1:
            vectors = vectors.clone()
            vectors[:, null] = vectors[:, null] @ _mixing(int(null.sum()), generator)
        return torch.return_types.linalg_eigh((values, vectors))

    def rotated_qr(matrix, *args, **kwargs):
        q, r = qr(matrix, *args, **kwargs)
        diagonal = r.diagonal().abs()
        null = diagonal <= 1e-10 * diagonal.max()
        if int(null.sum()) > 1:
            q = q.clone()
            q[:, null] = q[:, null] @ _mixing(int(null.sum()), generator)
        return torch.return_types.linalg_qr((q, r))

    monkeypatch.setattr(torch.linalg, "eigh", rotated_eigh)
    monkeypatch.setattr(torch.linalg, "qr", rotated_qr)


def test_soap_basis_of_a_rank_deficient_statistic_is_canonical(monkeypatch):
    """Range first (descending), then the identity's columns completing it, in order; the
    same after the power-iteration refreshes."""
    _rounding_rotates_null_spaces(monkeypatch)
    w = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    opt = SOAP([w], precondition_frequency=1)
    w.grad = torch.zeros(5, 3, dtype=torch.float64)
    w.grad[1, 0], w.grad[3, 1] = 3.0, -1.0  # left statistic diag(0, 9, 0, 1, 0) (x 0.05)
    e = torch.eye(5, dtype=torch.float64)
    for _ in range(3):  # the first basis from eigh, then two refreshes
        opt.step()
        left, right = opt.eigenbasis(w)
        torch.testing.assert_close(left, e[:, [1, 3, 0, 2, 4]], atol=1e-15, rtol=0)
        torch.testing.assert_close(right, torch.eye(3, dtype=torch.float64), atol=1e-15, rtol=0)


def _rank_deficient_losses(steps: int = 40) -> list[float]:
    """Least squares P (W X - Y) with W 8x4 and P a rotated rank-5 projection: every gradient
    has rank <= 4 and lies in P's range, so the left statistic has a null space at every
    refresh (3-dimensional for good, 4 at the first step)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, generator=generator, dtype=torch.float64)
    y = torch.randn(8, 4, generator=generator, dtype=torch.float64) @ x
    range_ = torch.linalg.qr(torch.randn(8, 5, generator=generator, dtype=torch.float64)).Q
    projection = range_ @ range_.T
    w = torch.zeros(8, 4, dtype=torch.float64, requires_grad=True)
    opt = SOAP([w], lr=2.0**-4, betas=(0.9, 0.999), precondition_frequency=5)
    losses = []
    for _ in range(steps):
        residual = projection @ (w.detach() @ x - y)
        losses.append(float(residual.square().mean()))
        w.grad = 2 * projection @ residual @ x.T / residual.numel()
        opt.step()
    return losses


def test_soap_does_not_depend_on_the_rounding_basis_of_the_null_space(monkeypatch):
    """Adam's diagonal is not invariant under a rotation of the null space: with eigh's and
    QR's bases kept, the rotation moves the losses ~3e-4; canonical, they agree to rounding."""
    reference = torch.tensor(_rank_deficient_losses(), dtype=torch.float64)
    _rounding_rotates_null_spaces(monkeypatch)
    rotated = torch.tensor(_rank_deficient_losses(), dtype=torch.float64)
    assert float(reference[-1]) < 0.1 * float(reference[0])  # the run went somewhere
    assert float(((rotated - reference).abs() / reference).max()) < 1e-9
