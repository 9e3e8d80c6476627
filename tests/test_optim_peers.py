"""SOAP, PSGD-Kron, Shampoo and Muon's iteration against pytorch_optimizer on the same inputs.

Where the peer's defaults differ from ours, a test names the difference: it sets the peer's
option to ours and the two agree, and it shows the difference at the peer's default.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
import pytorch_optimizer.optimizer.psgd as peer_psgd  # noqa: E402
from pytorch_optimizer.optimizer.utils.matrix import zero_power_via_newton_schulz_5  # noqa: E402

from workbench.optim import SOAP, PSGDKron, Shampoo, newton_schulz  # noqa: E402

DTYPE = torch.float64


def _problem(seed: int = 0):
    """A well-conditioned matrix least squares with a bias-like vector riding along."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.eye(6, dtype=DTYPE) + 0.3 * torch.randn(6, 6, generator=generator, dtype=DTYPE)
    b = torch.eye(6, dtype=DTYPE) + 0.3 * torch.randn(6, 6, generator=generator, dtype=DTYPE)
    c = torch.randn(6, 6, generator=generator, dtype=DTYPE)

    def set_grads(w, v):
        w.grad = a.T @ (a @ w.detach() @ b - c) @ b.T
        v.grad = w.detach().sum(0) - 1.0 + 0.1 * v.detach()

    return set_grads


def _run(make, steps: int = 30):
    set_grads = _problem()
    w = torch.zeros(6, 6, dtype=DTYPE, requires_grad=True)
    v = torch.zeros(6, dtype=DTYPE, requires_grad=True)
    opt = make([w, v])
    for _ in range(steps):
        set_grads(w, v)
        opt.step()
    return torch.cat([w.detach().flatten(), v.detach()])


def _max_difference(a, b) -> float:
    return float((a - b).abs().max())


# ------------------------------------------------------------------------------------- SOAP


def test_soap_matches_the_peer_with_eigenbases_from_the_first_step():
    """No refresh within the run: the two differ only by rounding.

    The first gradient is exactly diagonal in its own eigenbasis; the off-diagonal rounding
    (~1e-17) divided by Adam's eps (1e-8) is why agreement is 1e-9, not 1e-15.
    """
    ours = _run(lambda p: SOAP(p, lr=0.01, precondition_frequency=1000))
    theirs = _run(lambda p: pytorch_optimizer.SOAP(p, lr=0.01, precondition_frequency=1000))
    assert _max_difference(ours, theirs) < 1e-9
    assert float(ours.abs().max()) > 0.1  # the runs went somewhere


def _qr_in_float32(monkeypatch):
    qr = torch.linalg.qr

    def qr32(a, *args, **kwargs):
        q, r = qr(a.to(torch.float32), *args, **kwargs)
        return torch.return_types.linalg_qr((q.to(a.dtype), r.to(a.dtype)))

    monkeypatch.setattr(torch.linalg, "qr", qr32)


def test_soap_basis_refresh_differs_from_the_peer_only_by_its_float32_qr(monkeypatch):
    """pytorch_optimizer casts the power-iteration QR to float32; ours keeps the dtype."""
    make_ours = lambda p: SOAP(p, lr=0.01, precondition_frequency=3)  # noqa: E731
    make_theirs = lambda p: pytorch_optimizer.SOAP(p, lr=0.01, precondition_frequency=3)  # noqa: E731
    ours, theirs = _run(make_ours), _run(make_theirs)
    default_difference = _max_difference(ours, theirs)
    assert 1e-8 < default_difference < 1e-4  # float32 QR: visible, small
    _qr_in_float32(monkeypatch)
    assert _max_difference(_run(make_ours), theirs) < 1e-9


# ------------------------------------------------------------------------------------- Kron


@pytest.fixture
def replayed_probes(monkeypatch):
    """Record our probe vectors, and make the peer's torch.randn_like return them in order."""
    recorded: list[torch.Tensor] = []
    probe = PSGDKron.probe

    def recording(like, seed, step, index):
        v = probe(like, seed, step, index)
        recorded.append(v.clone())
        return v

    monkeypatch.setattr(PSGDKron, "probe", staticmethod(recording))

    def replay():
        queue = iter(list(recorded))
        monkeypatch.setattr(torch, "randn_like", lambda x, dtype=None: next(queue).to(dtype))
        np.random.seed(0)  # noqa: NPY002  (the peer balances on a random 1% of steps)

    return replay


def _solve_in_float64(x, a):
    rows = x.reshape(-1, x.size(-1))
    return torch.linalg.solve_triangular(a, rows, upper=True, left=False).reshape_as(x)


def _peer_kron(probability: float):
    return lambda p: pytorch_optimizer.Kron(
        p,
        lr=0.01,
        pre_conditioner_update_probability=probability,
        precondition_dtype=torch.float64,  # peer default: float32
    )


@pytest.mark.parametrize("frequency", [1, 3])
def test_psgd_kron_matches_the_peer(replayed_probes, monkeypatch, frequency):
    """Same probes, the peer's triangular solves in float64: identical to rounding.

    Named differences: the peer fits its preconditioner with probability p per step (ours:
    every `frequency` steps; p = 1/frequency is the same schedule), keeps it in float32 by
    default, and solves its triangular systems in float32 always.
    """
    ours = _run(lambda p: PSGDKron(p, lr=0.01, precondition_frequency=frequency))
    replayed_probes()
    theirs_float32_solves = _run(_peer_kron(1 / frequency))
    replayed_probes()
    monkeypatch.setattr(peer_psgd, "solve_triangular_right", _solve_in_float64)
    theirs = _run(_peer_kron(1 / frequency))
    assert _max_difference(ours, theirs) < 1e-12
    assert 1e-12 < _max_difference(ours, theirs_float32_solves) < 1e-6
    assert float(ours.abs().max()) > 0.1


def test_psgd_kron_peer_default_schedule_decays_where_ours_does_not():
    schedule = peer_psgd.precondition_update_prob_schedule()
    assert float(schedule(0)) == 1.0 and float(schedule(499)) == 1.0  # = our frequency 1
    assert float(schedule(1500)) == pytest.approx(np.exp(-1.0), rel=1e-6)
    assert float(schedule(10_000)) == pytest.approx(0.03)  # every ~33rd step, late in training


# ------------------------------------------------------------------------------------ Shampoo


def test_shampoo_without_grafting_or_momentum_is_the_peers_shampoo():
    """pytorch_optimizer.Shampoo is Gupta et al.'s algorithm: statistics start at eps I.

    The vector's statistic (a sum of rank-one terms) has eigenvalues near eps = 1e-6, where
    eps^-1/2 = 1e3 amplifies the rounding difference between the peer's SVD and our eigh.
    """
    ours = _run(lambda p: Shampoo(p, lr=0.01, betas=(0.0, 1.0), grafting="none", epsilon=1e-6))
    theirs = _run(lambda p: pytorch_optimizer.Shampoo(p, lr=0.01, matrix_eps=1e-6))
    assert _max_difference(ours[:36], theirs[:36]) < 1e-13  # the matrix
    assert _max_difference(ours[36:], theirs[36:]) < 1e-10  # the vector
    assert float(ours.abs().max()) > 0.1


def test_shampoo_first_roots_are_computed_at_step_one_unlike_the_peer():
    """With a preconditioning interval k the peer's roots stay zero (no step) until step k."""

    def first_steps(make):
        set_grads = _problem()
        w = torch.zeros(6, 6, dtype=DTYPE, requires_grad=True)
        v = torch.zeros(6, dtype=DTYPE, requires_grad=True)
        opt = make([w, v])
        moved = []
        for _ in range(3):
            set_grads(w, v)
            before = w.detach().clone()
            opt.step()
            moved.append(bool((w.detach() != before).any()))
        return moved

    ours = first_steps(
        lambda p: Shampoo(p, lr=0.01, betas=(0.0, 1.0), grafting="none", precondition_frequency=3)
    )
    theirs = first_steps(
        lambda p: pytorch_optimizer.Shampoo(p, lr=0.01, preconditioning_compute_steps=3)
    )
    assert ours == [True, True, True]
    assert theirs == [False, False, True]


# ---------------------------------------------------------------------------- Newton-Schulz


@pytest.mark.parametrize("shape", [(8, 8), (5, 12), (12, 5)])
def test_newton_schulz_matches_the_peer_in_float64(shape):
    """Same quintic and coefficients. Named differences: the peer iterates in bfloat16 unless
    told otherwise, and divides by max(|G|_F, eps) where Jordan et al. divide by |G|_F + eps.
    """
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    theirs = zero_power_via_newton_schulz_5(g, dtype=DTYPE)
    assert _max_difference(newton_schulz(g, eps=0.0), theirs) < 1e-12
    # the eps placement: our input is scaled by |G| / (|G| + 1e-7), a 1e-8 relative change
    assert 1e-10 < _max_difference(newton_schulz(g), theirs) < 1e-6
    bfloat16 = zero_power_via_newton_schulz_5(g).to(DTYPE)
    assert 1e-4 < _max_difference(newton_schulz(g), bfloat16) < 0.1
