"""Problems, training runs, the learning-rate sweep and the race table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.optim import findings
from workbench.optim.claims import OPTIMIZER_CLAIMS, labelled_text, verdict_table
from workbench.optim.problems import (
    PROBLEMS,
    KroneckerQuadratic,
    MatrixLeastSquares,
    TeacherStudentMLP,
    make_problem,
)
from workbench.optim.race import (
    DIVERGED_ABOVE,
    final_loss,
    finishing_order,
    lr_sweep,
    octaves_table,
    race,
    race_metrics,
    race_table,
    steps_to_target,
    sweep_cell,
    train,
)
from workbench.optim.registry import OPTIMIZERS, make_optimizer
from workbench.optim.study import OptimizerStudy, RaceSetup, race_setups, run_race, study_size
from workbench.sweep import clear_memory_cache


@pytest.fixture(autouse=True)
def _private_sweep_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "sweeps"))


# ------------------------------------------------------------------------------------ problems


@pytest.mark.parametrize("rotated", [False, True])
def test_quadratic_spectrum_and_gradient(rotated):
    problem = KroneckerQuadratic(rows=6, cols=4, kappa=250.0, rotated=rotated)
    hessian = problem.hessian()
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert float(eigenvalues.max()) == pytest.approx(1.0, rel=1e-12)
    assert float(eigenvalues.min()) == pytest.approx(1 / 250.0, rel=1e-10)
    assert torch.allclose(eigenvalues, problem.eigenvalues().sort().values, rtol=1e-10)
    assert rotated == (not torch.allclose(hessian, torch.diag(torch.diagonal(hessian))))
    params = problem.init_params()
    loss = problem.loss_and_grad(params)
    error = (params[0].detach() - problem.optimum).reshape(-1)
    assert loss == pytest.approx(0.5 * float(error @ hessian @ error), rel=1e-12)
    assert torch.allclose(params[0].grad.reshape(-1), hessian @ error, rtol=1e-12)


def test_rotated_quadratic_is_the_axis_aligned_one_in_another_basis():
    axis = KroneckerQuadratic(kappa=100.0, rotated=False)
    rotated = KroneckerQuadratic(kappa=100.0, rotated=True)
    u, v = rotated.left_basis, rotated.right_basis
    assert torch.allclose(u.T @ rotated.start @ v, axis.start, atol=1e-12)
    assert torch.allclose(u.T @ rotated.optimum @ v, axis.optimum, atol=1e-12)
    assert torch.allclose(u.T @ rotated.A @ u, axis.A, atol=1e-12)
    assert axis.initial_loss == pytest.approx(rotated.initial_loss, rel=1e-12)


def test_least_squares_hessian_condition_and_minimum():
    problem = MatrixLeastSquares(rows=5, cols=4, out_rows=7, out_cols=6, kappa=400.0)
    eigenvalues = torch.linalg.eigvalsh(problem.hessian())
    assert float(eigenvalues.max() / eigenvalues.min()) == pytest.approx(400.0, rel=1e-8)
    at_optimum = [problem.optimum.clone().requires_grad_(True)]
    assert problem.loss_and_grad(at_optimum) < 1e-25
    params = problem.init_params()
    problem.loss_and_grad(params)
    error = (params[0].detach() - problem.optimum).reshape(-1)
    assert torch.allclose(params[0].grad.reshape(-1), problem.hessian() @ error, rtol=1e-10)


def test_mlp_gradient_matches_finite_differences():
    problem = TeacherStudentMLP(width=8, samples=16)
    params = problem.init_params()
    problem.loss_and_grad(params)
    generator = torch.Generator().manual_seed(0)
    directions = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(params, directions, strict=True))
    h = 1e-6

    def shifted(sign):
        moved = [
            (p.detach() + sign * h * d).requires_grad_(True)
            for p, d in zip(params, directions, strict=True)
        ]
        return problem.loss_and_grad(moved)

    numeric = (shifted(1) - shifted(-1)) / (2 * h)
    assert numeric == pytest.approx(analytic, rel=1e-7)
    assert [p.ndim for p in params] == [2, 1, 2, 1, 2, 1]  # matrices and biases


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "rosenbrock",
            {},
            "unknown problem 'rosenbrock'; choose from quadratic, least_squares, mlp",
        ),
        (
            "quadratic",
            {"condition": 10},
            "unknown quadratic option 'condition'; choose from rows, cols",
        ),
        ("quadratic", {"kappa": 0.5}, r"kappa \(condition number\) must be a finite number >= 1"),
        ("least_squares", {"out_rows": 3}, "out_rows >= rows"),
    ],
)
def test_bad_problems_are_refused(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_problem(name, **options)


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; choose from sgd, adam"):
        make_optimizer("lion", [torch.zeros(2, requires_grad=True)], 1e-3)
    with pytest.raises(ValueError, match="adam has no preconditioning frequency"):
        make_optimizer("adam", [torch.zeros(2, requires_grad=True)], 1e-3, frequency=5)


# ------------------------------------------------------------------------------------ training


def test_final_loss_and_steps_to_target():
    losses = np.array([1.0, 0.5, 1e-2, 1e-3, 1e-4, 1e-4, 1e-5, 1e-6, 1e-6, 1e-6, 1e-7])
    assert steps_to_target(losses, 1e-3) == 3
    assert steps_to_target(losses, 1e-9) is None
    assert final_loss(losses, diverged=False) == pytest.approx(1e-7)  # last 10% of 10 steps
    assert final_loss(losses, diverged=True) == math.inf


def test_a_diverging_run_stops_and_says_so():
    problem = KroneckerQuadratic(kappa=100.0)
    trace = train(problem, "sgd", 8.0, steps=200)  # lr * lambda_max = 8: unstable
    assert trace.diverged and trace.final_loss == math.inf
    assert len(trace.losses) < 201
    assert trace.losses[-1] > DIVERGED_ABOVE or not np.isfinite(trace.losses[-1])
    assert np.isfinite(trace.losses[:-1]).all()


def test_the_sweep_keeps_going_past_divergence_and_is_pure():
    rows = sweep_cell(
        "quadratic", "sgd", steps=40, kappa=100.0, rotated=True, lr_log2_min=-2, lr_log2_max=3
    )
    assert [r["lr_log2"] for r in rows] == [-2, -1, 0, 1, 2, 3]
    diverged = [r["diverged"] for r in rows]
    assert diverged == [False, False, False, False, True, True]  # 4 and 8 exceed 2(1+0.9)
    assert all(r["final_loss"] == math.inf for r in rows if r["diverged"])
    again = sweep_cell(
        "quadratic", "sgd", steps=40, kappa=100.0, rotated=True, lr_log2_min=-2, lr_log2_max=3
    )
    for a, b in zip(rows, again, strict=True):
        assert np.array_equal(a["losses"], b["losses"])


def test_lr_sweep_tunes_each_optimizer_and_caches():
    sweep = lr_sweep(
        "quadratic", ["sgd", "adam"], 30, kappa=100.0, rotated=True, lr_log2=(-4, 1), progress=False
    )
    assert sweep.optimizers == ["sgd", "adam"]
    for name in sweep.optimizers:
        runs = sweep.runs(name)
        assert [r.lr_log2 for r in runs] == list(range(-4, 2))
        best = min(r.final_loss for r in runs)
        assert sweep.tuned(name).final_loss == best
    with pytest.raises(ValueError, match=r"outside the swept range 2\^-4..2\^1"):
        sweep.run("adam", 5)
    with pytest.raises(ValueError, match="unknown optimizer in this sweep 'muon'; choose from"):
        sweep.runs("muon")
    again = lr_sweep(
        "quadratic", ["sgd", "adam"], 30, kappa=100.0, rotated=True, lr_log2=(-4, 1), progress=False
    )
    assert np.array_equal(again.tuned("adam").losses, sweep.tuned("adam").losses)
    table = sweep.table(target=1e-2)
    assert list(table.columns) == [
        "tuned lr",
        "final loss",
        "steps to target",
        "state bytes",
        "octaves within 10x",
    ]
    for name in sweep.optimizers:
        best = sweep.tuned(name).final_loss
        within = [r.lr_log2 for r in sweep.runs(name) if r.final_loss <= 10 * best]
        assert table.loc[name, "octaves within 10x"] == len(within) >= 1


def test_finishing_order_puts_the_unfinished_last():
    table = pd.DataFrame(
        {"steps to target": [None, 30, 12, None], "final loss": [1e-3, 1e-8, 1e-9, 1e-5]},
        index=["a", "b", "c", "d"],
    )
    assert finishing_order(table) == "c < b < d < a"
    assert findings.steps_text(None, 200) == "more than 200 steps"
    assert findings.steps_text(float("nan"), 200) == "more than 200 steps"
    assert findings.steps_text(41.0, 200) == "41 steps"


def test_frequency_only_reaches_the_methods_that_have_one():
    sweep = lr_sweep(
        "quadratic",
        ["adam", "soap"],
        12,
        kappa=10.0,
        rotated=True,
        frequency=100,
        lr_log2=(-3, -3),
        progress=False,
    )
    cells = sweep.rows.set_index("optimizer").frequency
    assert cells["adam"] is None or math.isnan(cells["adam"])
    assert cells["soap"] == 100
    default = lr_sweep(
        "quadratic", ["soap"], 12, kappa=10.0, rotated=True, lr_log2=(-3, -3), progress=False
    )
    # SOAP's basis refresh at step 10 (its default) changes the run; every 100 steps does not
    assert not np.array_equal(default.tuned("soap").losses, sweep.tuned("soap").losses)


def test_race_times_every_optimizer_and_tabulates():
    problem = KroneckerQuadratic(kappa=100.0)
    lrs = {name: 2.0**-3 for name in OPTIMIZERS}
    traces = race(problem, lrs, steps=25, progress=False)
    for trace in traces.values():
        assert trace.seconds is not None and np.all(np.diff(trace.seconds) > 0)
        assert trace.step_seconds > 0
    param_bytes = problem.n_params * 8
    table = race_table(traces, target=1e-2, param_bytes=param_bytes)
    assert table.loc["adam", "step overhead vs adam"] == 1.0
    assert table.loc["sgd", "state / params"] == 1.0  # one momentum buffer
    assert table.loc["adafactor", "state / params"] < 0.2  # factored: rows + columns
    assert table.loc["shampoo", "state bytes"] > table.loc["adam", "state bytes"]
    # seconds to target is the cumulative clock at the step that reached it
    for name, row in table.iterrows():
        if row["steps to target"] is not None and not math.isnan(row["steps to target"]):
            trace = traces[name]
            assert row["seconds to target"] == trace.seconds[int(row["steps to target"])]


def test_study_rotation_table_and_cost():
    study = OptimizerStudy(steps=40, lr_log2=(-4, -1), optimizers=("adam", "soap", "sgd"))
    table = study.rotation_table((1e3,))
    assert list(table.columns) == [(1e3, "axis-aligned"), (1e3, "rotated")]
    cost = study.rotation_cost(1e3)
    assert cost["sgd"] == pytest.approx(1.0, rel=1e-9)
    assert cost["soap"] == pytest.approx(1.0, rel=1e-6)
    assert abs(cost["adam"] - 1) > 0.01
    assert study.sweep(1e3, True) is study.sweep(1e3, True)  # kept in memory
    assert study.seconds_per_step("adam", None, 1e3, True) > 0


def test_a_sweep_in_worker_processes_gives_the_same_runs(tmp_path, monkeypatch):
    """Cells are pure functions of their parameters: where they run does not matter."""
    options = {"kappa": 100.0, "rotated": True, "lr_log2": (-3, -2), "progress": False}
    here = lr_sweep("quadratic", ["soap", "psgd_kron"], 15, **options)
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "elsewhere"))  # nothing cached there
    clear_memory_cache()  # nor in memory: the second sweep must run its cells
    there = lr_sweep("quadratic", ["soap", "psgd_kron"], 15, backend="processes:1", **options)
    for name in here.optimizers:
        for a, b in zip(here.runs(name), there.runs(name), strict=True):
            assert np.array_equal(a.losses, b.losses)
    assert len(list((tmp_path / "elsewhere").glob("*.json"))) == 2  # computed there, stored


def test_study_records_ids_and_selects_the_invariant_methods():
    study = OptimizerStudy(steps=40, lr_log2=(-4, -1), optimizers=("adam", "soap", "sgd"))
    assert study.basis_invariant(1e3) == ["sgd", "soap"]
    metrics = study.rotation_metrics((1e3,))
    assert list(metrics)[:2] == ["kappa1000.axis-aligned.adam", "kappa1000.axis-aligned.soap"]
    table = study.rotation_table((1e3,))
    assert metrics["kappa1000.rotated.sgd"] == {
        "log10_final_loss": np.log10(table[(1e3, "rotated")]["sgd"])
    }
    # an equal study shares the memoized sweeps (content keys, not identity)
    same = OptimizerStudy(steps=40, lr_log2=(-4, -1), optimizers=("adam", "soap", "sgd"))
    assert same.sweep(1e3, True) is study.sweep(1e3, True)


def test_race_setups_are_keyed_by_id_with_labels():
    setups = race_setups(study_size(True))
    assert list(setups) == ["quadratic", "least_squares", "mlp"]
    assert [s.label for s in setups.values()] == [
        "quadratic (rotated, kappa 1e3)",
        "least squares (kappa 1e3)",
        "MLP (teacher-student)",
    ]
    assert [s.steps for s in setups.values()] == [40, 40, 40]
    assert study_size(False).mlp_steps == 300 and study_size(False).lr_log2 == (-12, 2)
    assert OPTIMIZERS.label("soap_adam_betas") == "SOAP (Adam's betas)"
    assert PROBLEMS.options()["least squares"] == "least_squares"


def test_race_metrics_octaves_and_findings():
    setup = RaceSetup("quadratic", 30, 1e2, True)
    study = OptimizerStudy(steps=30, lr_log2=(-4, 0), optimizers=("sgd", "adam", "shampoo"))
    sweep = study.sweep(1e2, True)
    result = run_race(setup, sweep)
    metrics = race_metrics(result.table)
    assert set(metrics) == {"sgd", "adam", "shampoo"}
    for name, row in metrics.items():
        assert row["tuned_lr_log2"] == sweep.tuned_lr_log2(name)
        assert row["state_bytes"] == result.traces[name].state_bytes
        assert row["steps_to_target"] == result.traces[name].steps_to(result.target)
    octaves = octaves_table({"quadratic": sweep})
    assert octaves.loc["adam", "quadratic"] == sweep.near_optimal_octaves("adam")
    text = findings.momentum_paragraph(result.table, 30, 1e2, study_rotation(sweep), 1e2)
    assert "Polyak's optimal heavy-ball momentum 0.669" in text and "10^2" in text


def _race_table(steps: dict[str, float | None]) -> pd.DataFrame:
    """A race table with the columns the prose reads, steps to target as given."""
    names = list(steps)
    return pd.DataFrame(
        {
            "steps to target": [steps[n] for n in names],
            "seconds to target": [None if steps[n] is None else 0.01 * steps[n] for n in names],
            "final loss": [1e-3] * len(names),
            "step overhead vs adam": [1.0] * len(names),
            "state / params": [2.0] * len(names),
        },
        index=names,
    )


MLP_OPTIMIZERS = ("sgd", "adam", "adafactor", "shampoo", "soap", "soap_adam_betas")


def test_the_prose_reads_right_when_no_target_is_reached():
    """SMOKE's 40 steps reach no target: the sentences say so instead of breaking."""
    table = _race_table(dict.fromkeys(MLP_OPTIMIZERS))
    rotation = pd.DataFrame(
        {
            (1e3, basis): pd.Series(1e-2, index=list(OPTIMIZERS))
            for basis in ("axis-aligned", "rotated")
        }
    )
    momentum = findings.momentum_paragraph(table, 40, 1e3, rotation, 1e3)
    assert "SGD with momentum 0.9 needs more than 40 steps and Adam more than 40 steps." in momentum
    mlp = findings.mlp_paragraph(table, 40)
    assert "cannot tell whether the fewer-iterations claim holds" in mlp
    assert "cannot be compared" in mlp
    assert findings.finishing_paragraph(table, 40) == (
        "No optimizer reaches the target within 40 steps."
    )
    for text in (momentum, mlp):
        assert "not reached in" not in text and "e-0" not in text


def test_the_prose_orders_and_names_the_finishers():
    steps = dict.fromkeys(MLP_OPTIMIZERS) | {
        "adam": 184.0,
        "shampoo": 98.0,
        "soap_adam_betas": 87.0,
    }
    table = _race_table(steps)
    assert findings.finishing_paragraph(table, 300) == (
        "Steps to the target, fastest first: SOAP (Adam's betas) (87), "
        "Shampoo (Adam grafting) (98), Adam (184). Not reached within 300 steps: "
        "SGD (momentum 0.9), Adafactor, SOAP."
    )
    mlp = findings.mlp_paragraph(table, 300)
    assert "SOAP with Adam's betas needs 87 steps, Shampoo 98 steps and Adam 184 steps" in mlp
    assert "the fewer-iterations claim holds on this toy" in mlp
    assert "reaches the target in 0.473 times Adam's wall clock" in mlp


def study_rotation(sweep):
    """A one-kappa rotation table with the same sweep in both bases (enough for the prose)."""
    column = sweep.table(1e-6)["final loss"]
    return pd.DataFrame({(1e2, "axis-aligned"): column, (1e2, "rotated"): column})


def _baseline(profile: str) -> dict:
    path = Path(__file__).parent / "baselines" / "05_optimizers.json"
    metrics = json.loads(path.read_text())["profiles"][profile]
    return {name: entry["value"] for name, entry in metrics.items()}


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_every_claim_reads_a_metric_the_notebook_records(profile):
    values = _baseline(profile)
    for claim in OPTIMIZER_CLAIMS:
        assert set(claim.metrics()) <= set(values), claim.claim


def test_the_verdict_of_the_full_baseline():
    table = verdict_table(_baseline("full"))
    does_not_hold = table.index[table["verdict"] == "does not hold"].tolist()
    claims = [OPTIMIZER_CLAIMS[i - 1].claim for i in does_not_hold]
    # Muon's rounding, Shampoo's per-step cost, PSGD-Kron and Muon slower than Adam on the MLP
    assert [c.split(":")[0].split(" (")[0] for c in claims] == [
        "Muon commutes with rotations",
        "Shampoo's runtime per step is comparable to Adam's",
        "A preconditioner fitted on a Lie group",
        "Muon is about 2x as compute-efficient as AdamW",
    ]
    assert table.loc[15, "measured"] == "163 < 184 (race.mlp.adam.steps_to_target)"
    # ids shown as labels, metric names left as they are
    assert table.loc[9, "measured"] == (
        "SGD (momentum 0.9), SOAP, SOAP (Adam's betas) (includes SOAP)"
    )
    assert labelled_text("psgd_kron, race.mlp.adam.steps_to_target") == (
        "PSGD-Kron, race.mlp.adam.steps_to_target"
    )
