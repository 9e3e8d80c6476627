"""Smoke test of benchmarks/learned_models.py's tables at tiny sizes: the values they report
(parameter counts, agreement of the two sampling loops, one network call per NFE), not the
timings, which depend on the machine."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learned_models.py"
_spec = importlib.util.spec_from_file_location("learned_models_benchmark", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

TINY = (bench.DenoiserBudget(30, 8), bench.DenoiserBudget(30, 16))
# the same algorithm in both loops: DPM-Solver++ loses digits to diffusers' float32 cast of the
# sample inside step() (4e-7 on the trained default at NFE 10, 1.5e-5 on this barely trained
# one; 1e-4 as tests/test_diffusers_crosscheck.py); the others agree to float64 rounding (3e-14)
FLOAT32_CAST = {"dpmpp_2m", "dpmpp_3m"}


@pytest.fixture(scope="module")
def trained():
    return bench.train_budgets(TINY, device="cpu")


def mlp_parameters(width: int, depth: int = 3, dim: int = 2, frequencies: int = 4) -> int:
    """VelocityMLP's parameter count: [x, t, sin/cos features] -> depth x width -> dim."""
    features = dim + 1 + 2 * frequencies
    return (features + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * dim


def test_training_table_counts_parameters_and_rates(trained):
    table = bench.training_table(trained)
    assert list(table.steps) == [30, 30] and list(table.width) == [8, 16]
    assert list(table.parameters) == [mlp_parameters(8), mlp_parameters(16)]  # 258, 770
    assert (table.seconds > 0).all()
    for row in table.itertuples():
        assert math.isclose(row[5] * row.seconds, row.steps, rel_tol=1e-12)  # steps/s
    assert not table.default.any()
    assert table["final loss"].map(math.isfinite).all()


def test_solver_table_loops_agree(trained):
    network = trained[TINY[-1]]
    table = bench.solver_timing_table(network, nfes=(5, 8), samples=64, repeats=1)
    assert list(table.NFE) == [5] * 5 + [8] * 5
    assert list(table.solver) == list(bench.SOLVERS) * 2
    for row in table.itertuples():
        difference = row[-1]
        assert difference <= (1e-4 if row.solver in FLOAT32_CAST else 1e-10), row.solver
    assert (table["model s"] > 0).all()
    ratio = table["workbench overhead ms/step"] / table["diffusers overhead ms/step"]
    assert ((ratio - table["overhead ratio"]).abs() <= 1e-12 * ratio.abs()).all()
    assert table["meets target"].map(lambda v: isinstance(v, bool)).all()


def test_bad_input_is_one_line_value_error(trained):
    network = trained[TINY[0]]
    with pytest.raises(ValueError, match="solver"):
        bench.solver_timing_table(network, solvers=("heun",), nfes=(5,), samples=8)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        bench.solver_timing_table(network, nfes=(5,), samples=0)


def test_device_line_says_when_there_is_no_gpu():
    line = bench.device_line(bench.best_device())
    if bench.torch.cuda.is_available():
        assert "CUDA" in line
    else:
        assert "no GPU" in line and "not measured" in line
