"""workbench.scaling: rules, batched optimizers against torch.optim, sweeps, optima, coordinate
checks, tasks and bad input. (The muP rules against the `mup` package: test_scaling_mup.py.)"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scratch
import torch
from torch import nn

from workbench import sweep
from workbench.scaling import (
    PARAMETRIZATIONS,
    build_model,
    coordinate_check,
    drift_octaves,
    fit_optimum,
    forward,
    get_task,
    init_params,
    layer_rule,
    lr_sweep,
    optimal_lr,
    optimum_table,
    residual_scaling,
    slope_table,
    transfer_penalty,
)
from workbench.scaling.coord_check import SLOPE_THRESHOLD, verdict_of
from workbench.scaling.optimizers import ATAN2_A, BETAS
from workbench.scaling.tasks import markov_chain, markov_entropy
from workbench.scaling.training import DATA_SEED_OFFSET, BatchedTraining

DTYPE = torch.float64
TASK = get_task("markov")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    with scratch.sweep_cache(tmp_path / "cache", monkeypatch):
        yield


def small(parametrization="mup", width=24, depth=2, **kw):
    return build_model(
        width=width,
        depth=depth,
        d_in=TASK.d_in,
        d_out=TASK.d_out,
        parametrization=parametrization,
        **kw,
    )


# ------------------------------------------------------------------------------ rules
def test_sp_is_pytorch_default_init():
    """SP draws like nn.Linear: weight and bias uniform(+-1/sqrt(fan_in)); multiplier 1."""
    rule = layer_rule("sp", "hidden", 400, 300)
    assert rule.weight.init_std == pytest.approx(1 / math.sqrt(3 * 400), rel=1e-15)
    assert rule.bias.init_std == rule.weight.init_std
    assert (rule.weight.multiplier, rule.weight.lr_sgd, rule.weight.lr_adam) == (1, 1, 1)
    torch.manual_seed(0)
    linear = nn.Linear(400, 300).double()
    model = build_model(width=400, depth=1, d_in=400, d_out=3, parametrization="sp")
    ours = init_params(model, [0], requires_grad=False)["hidden0.weight"]
    assert float(ours.abs().max()) <= 1 / math.sqrt(400)
    assert float(ours.std()) == pytest.approx(float(linear.weight.detach().std()), rel=0.01)


def test_mup_scaling_exponents():
    """Doubling the width: hidden Adam lr / 2, readout multiplier / 2, input SGD lr x 2,
    hidden SGD lr unchanged, readout init std and hidden bias std unchanged."""

    def rules(width):
        base = {"base_fan_in": 32, "base_fan_out": 32}
        return (
            layer_rule("mup", "input", 10, width, base_fan_in=10, base_fan_out=32),
            layer_rule("mup", "hidden", width, width, **base),
            layer_rule("mup", "output", width, 5, base_fan_in=32, base_fan_out=5),
        )

    (i1, h1, o1), (i2, h2, o2) = rules(64), rules(128)
    assert h2.weight.lr_adam / h1.weight.lr_adam == pytest.approx(0.5, rel=1e-15)
    assert o2.weight.multiplier / o1.weight.multiplier == pytest.approx(0.5, rel=1e-15)
    assert i2.weight.lr_sgd / i1.weight.lr_sgd == pytest.approx(2.0, rel=1e-15)
    assert h2.weight.lr_sgd == h1.weight.lr_sgd == 1.0
    assert o2.weight.init_std == pytest.approx(o1.weight.init_std, rel=1e-15)
    assert h2.bias.init_std == pytest.approx(h1.bias.init_std, rel=1e-15)
    assert h2.weight.init_std / h1.weight.init_std == pytest.approx(2**-0.5, rel=1e-15)


def test_umup_rules_are_unit_scaled():
    for role, fan_in, fan_out in (("input", 16, 256), ("hidden", 256, 256), ("output", 256, 8)):
        rule = layer_rule("umup", role, fan_in, fan_out)
        assert rule.weight.init_std == 1.0
        assert rule.bias.lr_adam == rule.bias.lr_sgd == rule.bias.init_std == 0.0  # bias-free
    assert layer_rule("umup", "hidden", 256, 256).weight.multiplier == pytest.approx(1 / 16)
    assert layer_rule("umup", "hidden", 256, 256).weight.lr_adam == pytest.approx(1 / 16)
    assert layer_rule("umup", "input", 16, 256).weight.lr_adam == pytest.approx(1 / 16)
    assert layer_rule("umup", "output", 256, 8).weight.multiplier == pytest.approx(1 / 256)
    assert layer_rule("umup", "output", 256, 8).weight.lr_adam == 1.0


def test_ntk_rules():
    rule = layer_rule("ntk", "hidden", 100, 100)
    assert (rule.weight.init_std, rule.weight.multiplier) == (1.0, pytest.approx(0.1))
    assert rule.bias.init_std == 0.0


@pytest.mark.parametrize(
    ("alpha", "adam", "sgd"), [(0.0, -1.0, -1.0), (0.5, -0.5, 0.0), (1.0, 0.0, 1.0)]
)
def test_residual_scaling_exponents(alpha, adam, sgd):
    for depth in (1, 4, 32):
        scaling = residual_scaling(alpha, depth)
        assert scaling.multiplier == pytest.approx(depth**-alpha, rel=1e-15)
        assert scaling.lr_adam == pytest.approx(depth**adam, rel=1e-15)
        assert scaling.lr_sgd == pytest.approx(depth**sgd, rel=1e-15)


def test_resmlp_corrects_only_the_residual_blocks():
    plain = small("mup", depth=16, model="resmlp", alpha=0.5, lr_correction=False)
    corrected = small("mup", depth=16, model="resmlp", alpha=0.5)
    adam_plain, adam = plain.lr_multipliers("adam"), corrected.lr_multipliers("adam")
    for name in adam:
        ratio = 0.25 if name.startswith("hidden") else 1.0  # 16**-0.5 on blocks only
        assert adam[name] == pytest.approx(ratio * adam_plain[name], rel=1e-15), name
    assert all(layer.branch == pytest.approx(0.25) for layer in corrected.layers[1:-1])
    assert corrected.layers[0].branch is None and corrected.layers[-1].branch is None


def test_resmlp_forward_is_the_residual_recursion():
    model = small("sp", depth=3, model="resmlp", alpha=1.0)
    params = init_params(model, [0])
    x = TASK.eval_set(DTYPE)[0][:5].unsqueeze(0)
    h = torch.bmm(x, params["input.weight"]) + params["input.bias"]
    for i in range(3):
        branch = torch.bmm(torch.relu(h), params[f"hidden{i}.weight"]) + params[f"hidden{i}.bias"]
        h = h + branch / 3
    expected = torch.bmm(h, params["output.weight"]) + params["output.bias"]
    torch.testing.assert_close(forward(model, params, x), expected, rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------- batched optimizers vs torch
def reference_training(model, optimizer_name, lr, seed, steps, batch, loss_scale=1.0):
    """One run with torch.optim on per-tensor leaves, per-parameter lr from the rules."""
    initial = init_params(model, [seed], requires_grad=False)
    params = {k: v[0].clone().requires_grad_(True) for k, v in initial.items()}
    multipliers = model.lr_multipliers(optimizer_name)
    groups = [{"params": [p], "lr": lr * multipliers[k]} for k, p in params.items()]
    optimizer = torch.optim.SGD(groups) if optimizer_name == "sgd" else torch.optim.Adam(groups)
    generator = torch.Generator().manual_seed(seed + DATA_SEED_OFFSET)
    for _ in range(steps):
        x, y = TASK.sample(generator, batch, DTYPE)
        optimizer.zero_grad()
        views = {k: p.unsqueeze(0) for k, p in params.items()}
        loss = TASK.losses(forward(model, views, x.unsqueeze(0)), y.unsqueeze(0)).sum()
        (loss_scale * loss).backward()
        optimizer.step()
    return {k: p.detach() for k, p in params.items()}


def batched_training(model, optimizer, lrs, seeds, steps, batch, loss_scale=1.0):
    runs = BatchedTraining(model, TASK, optimizer=optimizer, lrs=lrs, seeds=seeds, batch_size=batch)
    for _ in range(steps):
        runs.step(loss_scale * runs.losses())
    return {k: v.detach() for k, v in runs.params().items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("parametrization", ["sp", "mup", "umup", "ntk"])
def test_batched_optimizers_equal_torch_optim(optimizer, parametrization):
    """Three runs (different lrs and seeds) in one batch, each against torch.optim alone."""
    model = small(parametrization, width=48)
    lrs, seeds = [0.003, 0.02, 0.05], [0, 1, 0]
    if parametrization == "umup" and optimizer == "adam":
        lrs = [0.1, 0.3, 0.5]
    batched = batched_training(model, optimizer, lrs, seeds, steps=6, batch=8)
    for r, (lr, seed) in enumerate(zip(lrs, seeds, strict=True)):
        reference = reference_training(model, optimizer, lr, seed, steps=6, batch=8)
        for name, value in reference.items():
            torch.testing.assert_close(batched[name][r], value, rtol=1e-12, atol=1e-14)
    initial = init_params(model, seeds, requires_grad=False)
    assert float((batched["hidden0.weight"] - initial["hidden0.weight"]).abs().max()) > 1e-4


def atan2_reference(model, lr, seed, steps, batch, loss_scale=1.0):
    """Adam-atan2 written out per tensor from the formula (Everett et al. 2024)."""
    initial = init_params(model, [seed], requires_grad=False)
    params = {k: v[0].clone().requires_grad_(True) for k, v in initial.items()}
    multipliers = model.lr_multipliers("adam_atan2")
    m = {k: torch.zeros_like(p) for k, p in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    generator = torch.Generator().manual_seed(seed + DATA_SEED_OFFSET)
    b1, b2 = BETAS
    for t in range(1, steps + 1):
        x, y = TASK.sample(generator, batch, DTYPE)
        views = {k: p.unsqueeze(0) for k, p in params.items()}
        loss = loss_scale * TASK.losses(forward(model, views, x.unsqueeze(0)), y.unsqueeze(0)).sum()
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for (k, p), g in zip(params.items(), grads, strict=True):
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g * g
                m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
                p -= lr * multipliers[k] * ATAN2_A * torch.atan2(m_hat, torch.sqrt(v_hat))
    return {k: p.detach() for k, p in params.items()}


def test_adam_atan2_matches_its_formula_and_is_scale_invariant():
    model = small("mup", width=40)
    batched = batched_training(model, "adam_atan2", [0.01, 0.03], [0, 1], steps=5, batch=8)
    for r, (lr, seed) in enumerate(((0.01, 0), (0.03, 1))):
        reference = atan2_reference(model, lr, seed, steps=5, batch=8)
        for name, value in reference.items():
            torch.testing.assert_close(batched[name][r], value, rtol=1e-12, atol=1e-14)
    # no epsilon: scaling the loss by 1e-12 leaves atan2's trajectory unchanged, not Adam's
    tiny = batched_training(model, "adam_atan2", [0.01], [0], steps=5, batch=8, loss_scale=1e-12)
    for name in tiny:
        torch.testing.assert_close(tiny[name][0], batched[name][0], rtol=1e-9, atol=1e-12)
    adam = batched_training(model, "adam", [0.01], [0], steps=5, batch=8)
    adam_tiny = batched_training(model, "adam", [0.01], [0], steps=5, batch=8, loss_scale=1e-12)
    start = init_params(model, [0], requires_grad=False)["hidden0.weight"][0]
    moved = float((adam["hidden0.weight"][0] - start).abs().max())
    moved_tiny = float((adam_tiny["hidden0.weight"][0] - start).abs().max())
    assert moved_tiny < 0.1 * moved  # Adam's eps swamps a gradient of 1e-12 scale


def test_runs_in_a_batch_are_independent():
    model = small("sp", width=32)
    together = batched_training(model, "adam", [0.001, 0.01, 0.1], [0, 1, 2], steps=4, batch=8)
    alone = batched_training(model, "adam", [0.01], [1], steps=4, batch=8)
    for name in alone:
        torch.testing.assert_close(together[name][1], alone[name][0], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- sweeps
LRS = [2.0**k for k in range(-10, 5, 2)]  # 2^-10 ... 2^4: the top ones diverge under SP


def test_lr_sweep_rows_columns_and_divergence():
    df = lr_sweep(
        parametrization="sp", widths=[16, 32], lrs=LRS, seeds=(0, 1), steps=12, progress=False
    )
    assert len(df) == 2 * len(LRS) * 2
    configuration = "parametrization optimizer task model alpha lr_correction steps batch_size"
    assert list(df.columns[:10]) == [*configuration.split(), "width", "depth"]
    assert {"lr", "seed", "final_loss", "diverged", "diverged_step", "curve"} <= set(df.columns)
    assert df[["width", "lr", "seed"]].drop_duplicates().shape[0] == len(df)
    assert (df.depth == 2).all() and (df.task == "markov").all()
    assert all(len(c) == 12 for c in df.curve)

    blown = df[df.diverged]
    assert len(blown) > 0 and blown.lr.min() >= 2.0**0  # only the large learning rates
    assert np.isinf(blown.final_loss).all()
    for _, row in blown.iterrows():
        assert np.isnan(row.curve[row.diverged_step + 1 :]).all()
    healthy = df[~df.diverged]
    assert (healthy.lr <= 1.0).all() and np.isfinite(healthy.final_loss).all()
    assert df[df.lr >= 4.0].diverged.all()  # Adam at lr >= 4 under SP: every run
    assert all(np.isfinite(c).all() for c in healthy.curve)
    # a diverging neighbour changes nothing for the others (runs are independent)
    calm = lr_sweep(
        parametrization="sp", widths=[16, 32], lrs=LRS[:3], seeds=(0, 1), steps=12, progress=False
    )
    merged = calm.merge(df, on=["width", "lr", "seed"], suffixes=("", "_all"))
    np.testing.assert_allclose(merged.final_loss, merged.final_loss_all, rtol=1e-5)


def test_lr_sweep_is_cached(monkeypatch):
    kwargs = dict(parametrization="mup", widths=[16], lrs=[0.01, 0.1], steps=5, progress=False)
    first = lr_sweep(**kwargs)
    steps = []
    original = BatchedTraining.step

    def counted(self, losses):
        steps.append(1)
        return original(self, losses)

    # patched on the class, not in a module namespace, so the code fingerprint is unchanged
    monkeypatch.setattr(BatchedTraining, "step", counted)
    sweep.clear_memory_cache()
    again = lr_sweep(**kwargs)
    assert steps == []  # served from the disk cache
    pd.testing.assert_frame_equal(first, again)
    lr_sweep(**{**kwargs, "steps": 6})
    assert len(steps) == 6  # another config trains


def test_lr_sweep_depths_and_residual_models():
    df = lr_sweep(
        parametrization="mup",
        widths=[16],
        depths=[1, 3],
        lrs=[0.01],
        steps=4,
        model="resmlp",
        alpha=0.5,
        progress=False,
    )
    assert sorted(df.depth) == [1, 3] and (df.alpha == 0.5).all() and (df.model == "resmlp").all()


# ----------------------------------------------------------------------------- optimum
def synthetic(centre: float, widths=(32,), depths=(2,), seeds=(0, 1), lo=-10, hi=0, curv=0.05):
    rows = []
    for width in widths:
        for depth in depths:
            for k in range(lo, hi + 1):
                for seed in seeds:
                    c = centre(width, depth) if callable(centre) else centre
                    loss = math.exp(curv * (k - c) ** 2 + 0.1)
                    rows.append(
                        {
                            "width": width,
                            "depth": depth,
                            "lr": 2.0**k,
                            "seed": seed,
                            "final_loss": loss,
                            "diverged": False,
                        }
                    )
    return pd.DataFrame(rows)


def test_optimal_lr_recovers_a_parabola_exactly():
    df = synthetic(lambda w, d: -5.3 - math.log2(w / 32), widths=(32, 64, 128))
    optima = optimal_lr(df)
    assert list(optima.index) == [32, 64, 128] and optima.index.name == "width"
    np.testing.assert_allclose(optima.log2_lr, [-5.3, -6.3, -7.3], atol=1e-9)
    np.testing.assert_allclose(optima.lr, 2.0 ** np.array([-5.3, -6.3, -7.3]), rtol=1e-9)
    np.testing.assert_allclose(optima.loss, math.exp(0.1), rtol=1e-9)
    assert (optima.edge == "").all() and (optima.n_fit == 5).all()
    assert drift_octaves(optima) == pytest.approx(2.0, abs=1e-9)


def test_optimal_lr_flags_edges_instead_of_extrapolating():
    low = optimal_lr(synthetic(-14.0)).iloc[0]
    assert (low.edge, low.lr, low.n_fit) == ("low", 2.0**-10, 0)
    high = optimal_lr(synthetic(3.0)).iloc[0]
    assert (high.edge, high.lr) == ("high", 1.0)
    df = synthetic(-3.0)
    df.loc[df.lr >= 2.0**-2, ["final_loss", "diverged"]] = [np.inf, True]
    stable_edge = optimal_lr(df).iloc[0]
    assert (stable_edge.edge, stable_edge.lr) == ("divergence", 2.0**-3)


def test_optimal_lr_ignores_diverged_runs_and_indexes_depth():
    df = synthetic(lambda w, d: -4.0 - 0.5 * math.log2(d), depths=(2, 8, 32))
    df.loc[df.lr == 2.0**0, ["final_loss", "diverged"]] = [np.inf, True]
    optima = optimal_lr(df)
    assert optima.index.names == ["width", "depth"]
    np.testing.assert_allclose(optima.log2_lr, [-4.5, -5.5, -6.5], atol=1e-9)


def test_a_seed_that_diverges_disqualifies_its_learning_rate():
    df = synthetic(-5.0)
    df.loc[(df.lr == 2.0**-5) & (df.seed == 1), ["final_loss", "diverged"]] = [np.inf, True]
    assert optimal_lr(df).iloc[0].grid_lr != 2.0**-5


def test_fit_optimum_when_everything_diverged():
    result = fit_optimum(np.array([0.1, 1.0]), np.array([np.inf, np.inf]))
    assert result["edge"] == "all diverged" and math.isnan(result["lr"])


def test_transfer_penalty_reads_the_target_curve_at_the_source_optimum():
    df = synthetic(lambda w, d: -5.0 if w == 32 else -7.0, widths=(32, 64))
    penalty = transfer_penalty(df, source=32, target=64)
    assert penalty == pytest.approx(math.exp(0.05 * 4) - 1, rel=1e-9)  # 2 octaves off
    assert transfer_penalty(df, source=64, target=64) == pytest.approx(0.0, abs=1e-12)
    df.loc[(df.width == 64) & (df.lr >= 2.0**-6), ["final_loss", "diverged"]] = [np.inf, True]
    assert transfer_penalty(df, source=32, target=64) == math.inf  # diverges there
    with pytest.raises(ValueError, match="target width 128 is not in the sweep"):
        transfer_penalty(df, source=32, target=128)
    with pytest.raises(ValueError, match="unknown axis 'seed'; choose from width, depth"):
        transfer_penalty(df, source=32, target=64, axis="seed")


def test_optimum_table_has_one_column_per_sweep_and_the_drift():
    a = synthetic(lambda w, d: -5.0 - math.log2(w / 32), widths=(32, 64))
    b = synthetic(-4.0, widths=(32, 64))
    table = optimum_table({"A": a, "B": b})
    assert list(table.columns) == ["A", "B"] and list(table.index) == [32, 64, "drift"]
    np.testing.assert_allclose(table.loc[[32, 64], "A"].astype(float), [-5.0, -6.0], atol=1e-9)
    assert table.loc["drift", "A"] == pytest.approx(1.0) and table.loc["drift", "B"] < 1e-9
    edged = optimum_table({"C": synthetic(3.0)})
    assert edged.loc["edge", "C"] == "32: high"


# ------------------------------------------------------------------------ coord check
def test_coordinate_check_verdicts_sp_grows_mup_flat():
    sp = coordinate_check(parametrization="sp")
    mu = coordinate_check(parametrization="mup")
    assert sp.verdict == "growing" and mu.verdict == "flat"
    assert sp.verdicts["output"] == "growing" and sp.verdicts["hidden1"] == "growing"
    assert set(mu.verdicts.values()) == {"flat"}
    steepest_sp = sp.steepest.set_index("layer").slope
    assert steepest_sp["output"] > 0.5  # SP's logits grow ~ width after one Adam step
    assert mu.steepest.slope.abs().max() <= SLOPE_THRESHOLD
    assert np.isfinite(sp.table.rms).all() and (sp.table.rms > 0).all()
    assert len(sp.table) == 5 * 4 * 5  # widths x layers x (steps + 1)


def test_coordinate_check_slope_is_the_log_log_fit():
    check = coordinate_check(parametrization="umup", widths=(32, 128), lr=0.5, steps=1)
    row = check.slopes[(check.slopes.layer == "hidden0") & (check.slopes.step == 1)].iloc[0]
    rms = check.table[(check.table.layer == "hidden0") & (check.table.step == 1)].rms.to_numpy()
    assert row.slope == pytest.approx(math.log2(rms[1] / rms[0]) / 2, rel=1e-12)
    assert verdict_of(0.3) == "growing" and verdict_of(-0.3) == "shrinking"
    assert verdict_of(0.1) == "flat"
    table = slope_table({"u-muP": check})
    assert table.loc["verdict", "u-muP"] == check.verdict
    assert table.loc["hidden0", "u-muP"] == pytest.approx(row.slope, rel=1e-12)


# ------------------------------------------------------------------------------ tasks
def test_markov_entropy_is_the_bayes_loss():
    """The true transition probabilities as the predictor: their cross-entropy on samples is
    the stated conditional entropy, to Monte Carlo error."""
    transitions, pi = markov_chain()
    torch.testing.assert_close(transitions.sum(-1), torch.ones(64, dtype=DTYPE))
    torch.testing.assert_close(pi @ _pair_moves(transitions), pi, rtol=0, atol=1e-12)
    x, y = TASK.sample(torch.Generator().manual_seed(0), 200_000)
    context = x[:, :8].argmax(-1) * 8 + x[:, 8:].argmax(-1)
    nll = -torch.log(transitions[context, y])
    assert float(nll.mean()) == pytest.approx(markov_entropy(), abs=4 * float(nll.std()) / 447)
    assert TASK.irreducible_loss == markov_entropy()


def _pair_moves(transitions):
    moves = torch.zeros(64, 64, dtype=DTYPE)
    for context in range(64):
        moves[context, (context % 8) * 8 : (context % 8) * 8 + 8] = transitions[context]
    return moves


def test_tasks_shapes_and_teacher_has_zero_loss():
    for name in ("teacher_student", "spirals", "markov"):
        task = get_task(name)
        x, y = task.sample(torch.Generator().manual_seed(0), 64)
        assert x.shape == (64, task.d_in) and torch.isfinite(x).all()
        assert y.shape == ((64, task.d_out) if task.loss == "mse" else (64,))
    teacher = get_task("teacher_student")
    x, y = teacher.eval_set()
    assert float(teacher.losses(y.unsqueeze(0), y.unsqueeze(0))) == 0.0
    assert float(y.std()) == pytest.approx(1.0, abs=0.1)  # unit output variance by construction


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lrs": [0.1, -0.01]}, "finite and > 0"),
        ({"lrs": [0.0]}, "finite and > 0"),
        ({"lrs": [float("nan")]}, "finite and > 0"),
        ({"lrs": []}, "at least one"),
        ({"parametrization": "mu-p"}, "choose from sp, ntk, mup, umup"),
        ({"optimizer": "adamw"}, "choose from sgd, adam, adam_atan2"),
        ({"task": "mnist"}, "choose from teacher_student, spirals, markov"),
        ({"model": "cnn"}, "choose from mlp, resmlp"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"widths": []}, "widths must be a non-empty"),
        ({"widths": [0]}, "widths must be a non-empty"),
        ({"depths": [2.5]}, "depths must be a non-empty"),
        ({"alpha": 0.5}, "model='resmlp' only"),
        ({"model": "resmlp", "alpha": 2.0}, "alpha must be a number in"),
        ({"seeds": ()}, "at least one seed"),
    ],
)
def test_bad_sweep_input_is_refused(kwargs, message):
    args = {"parametrization": "mup", "widths": [16], "lrs": [0.01], "steps": 2, "progress": False}
    with pytest.raises(ValueError, match=message):
        lr_sweep(**{**args, **kwargs})


def test_bad_rule_and_check_input_is_refused():
    with pytest.raises(ValueError, match="unknown layer role 'middle'"):
        layer_rule("sp", "middle", 4, 4)
    with pytest.raises(ValueError, match="fan_in must be a positive integer"):
        layer_rule("sp", "hidden", 0, 4)
    with pytest.raises(ValueError, match="at least two widths"):
        coordinate_check(parametrization="sp", widths=(32,))
    with pytest.raises(ValueError, match="finite and > 0"):
        coordinate_check(parametrization="sp", lr=-1.0)
    with pytest.raises(ValueError, match="one seed per run"):
        BatchedTraining(small(), TASK, optimizer="adam", lrs=[0.1, 0.2], seeds=[0])
    assert set(PARAMETRIZATIONS) == {"sp", "ntk", "mup", "umup"}
