"""Optimizers not in torch.optim, the problems they race on, and the race itself.

``Shampoo``, ``SOAP``, ``PSGDKron`` and ``Muon`` are ``torch.optim.Optimizer`` subclasses;
``FullMatrixPreconditioned`` is the exact-inverse-Hessian ideal they approximate. ``OPTIMIZERS``
is the registry the race and the notebook use (with torch's SGD, Adam and Adafactor), and
``PROBLEMS`` the registry of what they race on. Notebook 05's study (its sizes, sweeps and
race) is ``workbench.optim.study``, the sentences it writes from the numbers
``workbench.optim.findings`` and the papers' claims it checks ``workbench.optim.claims``.
"""

from workbench.optim._common import state_bytes
from workbench.optim.full_matrix import FullMatrixPreconditioned
from workbench.optim.muon import Muon, newton_schulz
from workbench.optim.problems import (
    PROBLEMS,
    KroneckerQuadratic,
    MatrixLeastSquares,
    TeacherStudentMLP,
    make_problem,
)
from workbench.optim.psgd import PSGDKron
from workbench.optim.registry import OPTIMIZERS, OptimizerSpec, make_optimizer, optimizer_spec
from workbench.optim.shampoo import Shampoo
from workbench.optim.soap import SOAP

__all__ = [
    "OPTIMIZERS",
    "PROBLEMS",
    "SOAP",
    "FullMatrixPreconditioned",
    "KroneckerQuadratic",
    "MatrixLeastSquares",
    "Muon",
    "OptimizerSpec",
    "PSGDKron",
    "Shampoo",
    "TeacherStudentMLP",
    "make_optimizer",
    "make_problem",
    "newton_schulz",
    "optimizer_spec",
    "state_bytes",
]
