"""workbench.scaling's muP against the `mup` package (1.0.0), the reference implementation.

The same MLP is built twice: as torch modules (nn.Linear input and hidden layers, a MuReadout,
set_base_shapes against the base-width model) and as our batched rules. Asserted:
- per-parameter learning rates: ours x lr == the lr of the param_group MuAdam / MuSGD put the
  parameter in, exactly;
- the readout: MuReadout's output == our output layer's on the same weights (1e-13);
- the whole forward pass on mup's (rescaled) parameters, and five training steps with MuAdam /
  MuSGD against our batched optimizer from the same parameters and data (float64, 1e-10);
- the initialization scales set_base_shapes produces == our rules' init std (statistically);
- muP at base width is SP: identical rules, identical parameters for a seed, and MuAdam's
  groups all carry the global lr.
"""

from __future__ import annotations

import math

import mup
import pytest
import torch
from torch import nn

from workbench.scaling import build_model, forward, get_task, init_params, layer_rule
from workbench.scaling.training import DATA_SEED_OFFSET, BatchedTraining

BASE = 32
DEPTH = 2
LR = 0.01
TASK = get_task("markov")
DTYPE = torch.float64


def mup_mlp(width: int, d_in: int = TASK.d_in, d_out: int = TASK.d_out) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, width), nn.ReLU()]
    for _ in range(DEPTH):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(mup.MuReadout(width, d_out))
    return nn.Sequential(*layers).to(DTYPE)


def mup_model(width: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = mup_mlp(width)
    mup.set_base_shapes(model, mup_mlp(BASE), delta=mup_mlp(BASE * 2))
    return model


def our_names(model: nn.Sequential) -> dict[str, str]:
    """mup module parameter name -> our parameter name (same layer order)."""
    linear = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    ours = ["input"] + [f"hidden{i}" for i in range(DEPTH)] + ["output"]
    mapping = {}
    for index, name in zip(linear, ours, strict=True):
        mapping[f"{index}.weight"] = f"{name}.weight"
        mapping[f"{index}.bias"] = f"{name}.bias"
    return mapping


def ours(width: int):
    return build_model(
        width=width,
        depth=DEPTH,
        d_in=TASK.d_in,
        d_out=TASK.d_out,
        parametrization="mup",
        base_width=BASE,
    )


def our_params_from(model: nn.Sequential) -> dict[str, torch.Tensor]:
    """mup's parameters in our layout: (1, fan_in, fan_out) weights, (1, 1, fan_out) biases."""
    params = {}
    for name, p in model.named_parameters():
        ours_name = our_names(model)[name]
        value = p.detach().t() if p.ndim == 2 else p.detach().view(1, -1)
        params[ours_name] = value.unsqueeze(0).clone(memory_format=torch.contiguous_format)
    return params


def group_lrs(optimizer: torch.optim.Optimizer) -> dict[int, float]:
    return {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}


@pytest.mark.parametrize("width", [16, 32, 128, 512])
@pytest.mark.parametrize(
    ("ours_optimizer", "mup_optimizer"), [("adam", mup.MuAdam), ("sgd", mup.MuSGD)]
)
def test_per_parameter_learning_rates_equal_mup(width, ours_optimizer, mup_optimizer):
    model = mup_model(width)
    lrs = group_lrs(mup_optimizer(model.parameters(), lr=LR))
    multipliers = ours(width).lr_multipliers(ours_optimizer)
    names = our_names(model)
    for name, p in model.named_parameters():
        assert LR * multipliers[names[name]] == pytest.approx(lrs[id(p)], rel=1e-15), name
    # and they do scale: the hidden Adam lr halves per doubling, the readout SGD lr doubles
    if width != BASE:
        m = width / BASE
        if ours_optimizer == "adam":
            assert multipliers["hidden0.weight"] == pytest.approx(1 / m, rel=1e-15)
        else:
            assert multipliers["output.weight"] == pytest.approx(m, rel=1e-15)


@pytest.mark.parametrize("width", [16, 128])
def test_readout_equals_mureadout(width):
    torch.manual_seed(3)
    model = mup_model(width)
    readout = model[-1]
    x = torch.randn(7, width, dtype=DTYPE)
    expected = readout(x)
    layer = ours(width).layers[-1]
    w = readout.weight.detach().t().unsqueeze(0)
    b = readout.bias.detach().view(1, 1, -1)
    got = (
        layer.rule.weight.multiplier * torch.bmm(x.unsqueeze(0), w) + layer.rule.bias.multiplier * b
    )
    torch.testing.assert_close(got[0], expected, rtol=1e-13, atol=1e-13)
    assert layer.rule.weight.multiplier == pytest.approx(BASE / width, rel=1e-15)


@pytest.mark.parametrize("width", [16, 64])
def test_forward_pass_equals_mup_model(width):
    model = mup_model(width, seed=1)
    x = TASK.eval_set(DTYPE)[0][:64]
    expected = model(x)
    got = forward(ours(width), our_params_from(model), x.unsqueeze(0))[0]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    ("ours_optimizer", "mup_optimizer", "lr"),
    [("adam", mup.MuAdam, 0.01), ("sgd", mup.MuSGD, 0.05)],
)
@pytest.mark.parametrize("width", [16, 128])
def test_training_steps_equal_mup_optimizers(ours_optimizer, mup_optimizer, lr, width):
    """Five steps from the same parameters on the same minibatches: our batched update with our
    per-parameter multipliers against torch.optim.Adam / SGD inside MuAdam / MuSGD."""
    seed, batch, steps = 4, 16, 5
    model = mup_model(width, seed=2)
    initial = our_params_from(model)
    optimizer = mup_optimizer(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed + DATA_SEED_OFFSET)
    for _ in range(steps):
        x, y = TASK.sample(generator, batch, DTYPE)
        optimizer.zero_grad()
        TASK.losses(model(x).unsqueeze(0), y.unsqueeze(0)).sum().backward()
        optimizer.step()

    runs = BatchedTraining(
        ours(width),
        TASK,
        optimizer=ours_optimizer,
        lrs=[lr],
        seeds=[seed],
        batch_size=batch,
        initial=initial,
    )
    for _ in range(steps):
        runs.step(runs.losses())
    expected = our_params_from(model)
    for name, value in runs.params().items():
        torch.testing.assert_close(value.detach(), expected[name], rtol=1e-10, atol=1e-12, msg=name)
    moved = max(float((expected[n] - initial[n]).abs().max()) for n in expected)
    assert moved > 1e-3  # the comparison is not between two idle models


def test_init_scales_equal_set_base_shapes():
    """Sample std of mup's rescaled parameters at width 512 vs our rules' init std."""
    width = 512
    model = mup_model(width, seed=5)
    rules = ours(width).param_rules()
    names = our_names(model)
    for name, p in model.named_parameters():
        rule = rules[names[name]]
        n = p.numel()
        # std of a sample std of n uniform draws: ~ std * sqrt(0.8 / (4n)) (kurtosis 1.8)
        tolerance = 5 * math.sqrt(0.8 / (4 * n))
        assert float(p.detach().std()) == pytest.approx(rule.init_std, rel=tolerance), name


def test_mup_at_base_width_is_sp():
    """At the base width every muP rule is the SP rule, the seeded parameters coincide, and
    MuAdam / MuSGD give every parameter the global learning rate."""
    for role, fan_in, fan_out in (("input", 16, BASE), ("hidden", BASE, BASE), ("output", BASE, 8)):
        base = {"base_fan_in": fan_in, "base_fan_out": fan_out}
        assert layer_rule("mup", role, fan_in, fan_out, **base) == layer_rule(
            "sp", role, fan_in, fan_out
        )
    sp = build_model(width=BASE, depth=DEPTH, d_in=16, d_out=8, parametrization="sp")
    mu = build_model(width=BASE, depth=DEPTH, d_in=16, d_out=8, parametrization="mup")
    assert sp.param_rules() == mu.param_rules()
    p_sp, p_mu = init_params(sp, [0, 1]), init_params(mu, [0, 1])
    for name in p_sp:
        assert torch.equal(p_sp[name], p_mu[name])
    model = mup_model(BASE)
    for optimizer in (mup.MuAdam, mup.MuSGD):
        assert set(group_lrs(optimizer(model.parameters(), lr=LR)).values()) == {LR}
