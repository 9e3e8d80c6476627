"""Trained denoisers: training time per model size, and solver overhead when the model costs
something.

Table 1 trains each DenoiserBudget of workbench.models.denoisers.BUDGETS (steps x width, the
rest fixed: batch 256, lr 3e-3, depth 3) on the exact ring, in this process (the times are of
real training, not read from the sweep cache): seconds, Adam steps per second, parameters.
The loss is the denoising one of Ho, Jain & Abbeel 2020 (DDPM, arXiv:2006.11239).

Table 2 takes the trained network of the default budget and solves from the same 4096 noise
draws with workbench `sample` and with diffusers' own scheduler loop (`peers.run_diffusers`)
driving the same DiffusionModel, on identical time grids (diffusers' timesteps, ending where
diffusers ends, as `peers.crosscheck` pairs them), at NFE 10 and 20. The model's own time is
that of the network's NFE forward calls, clocked by forward hooks inside each solve; what a
solve takes beyond it, per step, is its overhead (the smallest over the repeats: both numbers
come from the same solve, so load on a shared machine moves them alike). Notebook 01's target
(benchmarks/solvers.py, measured there with a trivial model): the workbench's per-step
overhead at most diffusers' (ratio <= 1); here it must hold when the model is a real network.
The solvers: DDIM (Song, Meng & Ermon 2020, arXiv:2010.02502), DPM-Solver++ 2M / 3M (Lu et al.
2022, arXiv:2211.01095), UniPC bh2 (Zhao et al. 2023, arXiv:2302.04867), DEIS tAB3 (Zhang &
Chen 2022, arXiv:2204.13902). The samples of the two loops agree to ~1e-6 (DPM-Solver++ casts
the sample to float32 inside diffusers' step(); the others to ~1e-14). DEIS misses the target:
its step builds Lagrange weights with numpy.polynomial objects (~1 ms a step with a trivial
model, against 0.2 ms for DPM-Solver++ 3M), a cost of the solver, not of this measurement.

Training, sampling and timing run on `best_device()` (CUDA when torch sees a GPU, else CPU):
samples/s is CUDA throughput on a GPU machine; without one the script says so. Timings on a
shared machine are noisy: each is the best of a few repeats, ratios come from the same run.

Run: python benchmarks/learned_models.py [--smoke]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from workbench.claims import readable
from workbench.diffusion import VPSchedule, sample
from workbench.diffusion.core import prior_noise
from workbench.diffusion.peers import T_MIN_DIFFUSERS, diffusers_times, run_diffusers
from workbench.models.denoisers import (
    BUDGETS,
    DEFAULT,
    DEFAULT_BUDGET,
    DENOISER_PROBLEMS,
    DenoiserBudget,
    TrainedDenoiser,
    best_device,
    train_denoiser,
)
from workbench.registry import check_choice

NFES = (10, 20)
SAMPLES = 4096
REPEATS = 7  # best of: the overhead is ~10% of a solve; load on a shared machine moves it
SMOKE = {  # a few seconds: tiny networks, one NFE, a small batch
    "budgets": (DenoiserBudget(60, 16), DenoiserBudget(60, 32)),
    "nfes": (10,),
    "samples": 512,
    "repeats": 1,
}
OVERHEAD_TARGET = 1.0  # notebook 01: workbench per-step overhead / diffusers' at most this


def _diffusers_scheduler(solver: str, steps: int):
    """diffusers' scheduler running the same algorithm as our `solver` (crosscheck's pairs)."""
    import diffusers

    if solver == "ddim":
        return diffusers.DDIMScheduler(clip_sample=False)
    if solver in ("dpmpp_2m", "dpmpp_3m"):
        order = 2 if solver == "dpmpp_2m" else 3
        return diffusers.DPMSolverMultistepScheduler(
            solver_order=order, final_sigmas_type="sigma_min"
        )
    if solver == "unipc_bh2":
        # diffusers lowers UniPC's final orders at every step count, ours below 15 steps
        return diffusers.UniPCMultistepScheduler(
            final_sigmas_type="sigma_min", lower_order_final=steps < 15
        )
    return diffusers.DEISMultistepScheduler(solver_order=3)


# our solver -> its options; DDIM ends as diffusers' set_alpha_to_one does (an x_0 prediction),
# the others one step to sigma_min (timestep 0)
SOLVERS = {"ddim": {}, "dpmpp_2m": {}, "dpmpp_3m": {}, "unipc_bh2": {}, "deis": {"order": 3}}


def _our_grid(solver: str, steps: int) -> list[float]:
    """diffusers' times for `steps` steps, ending where its scheduler for `solver` ends."""
    times = diffusers_times(_diffusers_scheduler(solver, steps), steps)
    return times if solver == "ddim" else [*times, T_MIN_DIFFUSERS]


def _our_solve(model, x_T, solver: str, grid) -> torch.Tensor:
    return sample(
        model, x_T, solver=solver, steps=None, grid=grid, denoise_to_zero=solver == "ddim",
        **SOLVERS[solver],
    ).x  # fmt: skip


def _paired_solves(model, x_T, solver: str, steps: int) -> dict:
    """Our solve and diffusers' loop of the same algorithm on the same grid, as callables
    (the grid is made outside: building diffusers' timesteps is no part of our solve; a fresh
    scheduler a solve, as diffusers is used, costs 0.2 ms: 0.02 ms a step at NFE 10)."""
    grid = _our_grid(solver, steps)
    return {
        "ours": lambda: _our_solve(model, x_T, solver, grid),
        "theirs": lambda: run_diffusers(_diffusers_scheduler(solver, steps), model, x_T, steps),
    }


def _synchronize(device: str) -> None:
    # CUDA runs asynchronously: a wall time means something only once the queue is drained
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class _NetworkClock:
    """Seconds and count of a network's forward calls, by forward hooks: the model's share of
    a solve measured inside that very solve, so load on a shared machine moves both alike
    (a hook costs microseconds a call; a step's overhead is ~0.1-1 ms)."""

    def __init__(self, network: torch.nn.Module, device: str):
        self.network, self.device = network, device
        self.seconds, self.calls, self._start = 0.0, 0, 0.0

    def _before(self, module, inputs) -> None:
        _synchronize(self.device)
        self._start = time.perf_counter()

    def _after(self, module, inputs, output) -> None:
        _synchronize(self.device)
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def run(self, solve):
        """solve()'s result, wall seconds and its network seconds and calls."""
        hooks = [self.network.register_forward_pre_hook(self._before),
                 self.network.register_forward_hook(self._after)]  # fmt: skip
        self.seconds, self.calls = 0.0, 0
        try:
            _synchronize(self.device)
            start = time.perf_counter()
            result = solve()
            _synchronize(self.device)
            return result, time.perf_counter() - start, self.seconds, self.calls
        finally:
            for hook in hooks:
                hook.remove()


def _timed(solves: dict, clock: _NetworkClock, repeats: int) -> dict[str, dict]:
    """Per solve: its result (an untimed first call: first calls pay for lazy initialization,
    3.8 s against 6 ms measured), the best of `repeats` wall seconds, the best network seconds,
    the smallest seconds outside the network and the network calls. The solves take turns in
    each repeat so that they share the machine's load."""
    out = {}
    for name, solve in solves.items():
        result, _, _, calls = clock.run(solve)
        out[name] = {"x": result, "seconds": [], "network": [], "outside": [], "calls": calls}
    for _ in range(repeats):
        for name, solve in solves.items():
            _, seconds, network, _ = clock.run(solve)
            out[name]["seconds"].append(seconds)
            out[name]["network"].append(network)
            out[name]["outside"].append(seconds - network)
    for timing in out.values():
        for key in ("seconds", "network", "outside"):
            timing[key] = min(timing[key])
    return out


def parameter_count(trained: TrainedDenoiser) -> int:
    return sum(p.numel() for p in trained.network.parameters())


def train_budgets(
    budgets=BUDGETS, *, problem: str = "ring", device: str | None = None, seed: int = 0
) -> dict[DenoiserBudget, TrainedDenoiser]:
    """Each budget trained in this process on `device` (default `best_device()`), with the
    cached set's fixed settings (denoisers.DEFAULT) and the DDPM linear schedule."""
    mixture = DENOISER_PROBLEMS[problem]()
    device = best_device() if device is None else device
    budgets = [b if isinstance(b, DenoiserBudget) else DenoiserBudget(*b) for b in budgets]
    schedule = VPSchedule.linear_ddpm()
    trained = {}
    for b in budgets:
        # the in-memory memo (flows' TRAINED) keeps each run's own seconds: a rerun in the same
        # process reports the time the training took, not a lookup's
        trained[b] = train_denoiser(mixture, schedule, steps=b.steps, width=b.width, seed=seed,
                                    device=device, desc=None, **DEFAULT)  # fmt: skip
    return trained


def training_table(trained: dict[DenoiserBudget, TrainedDenoiser]) -> pd.DataFrame:
    """Per budget: steps, width, parameters, training seconds, steps/s, final loss (the mean
    of the last tenth of the curve: one minibatch's loss is noisy)."""
    rows = []
    for budget, run in trained.items():
        tail = run.losses[-max(1, len(run.losses) // 10) :]
        rows.append(
            {
                "steps": budget.steps,
                "width": budget.width,
                "parameters": parameter_count(run),
                "seconds": run.seconds,
                "steps/s": budget.steps / run.seconds,
                "final loss": float(tail.mean()),
                "default": budget == DEFAULT_BUDGET,
            }
        )
    return pd.DataFrame(rows)


def solver_timing_table(
    trained: TrainedDenoiser,
    *,
    solvers=tuple(SOLVERS),
    nfes=NFES,
    samples: int = SAMPLES,
    repeats: int = REPEATS,
    seed: int = 0,
) -> pd.DataFrame:
    """Per solver and NFE: seconds of workbench `sample` and of diffusers' loop on the same
    network, noise and grid (best of `repeats`); the network's own seconds (its NFE forward
    calls inside the solves, the faster loop's); each loop's overhead in ms per step (its
    smallest time outside the network, over NFE steps: one call a step), their ratio
    (ours / diffusers'), whether it meets notebook 01's target (<= 1), workbench samples/s
    and the max |ours - diffusers| over the samples."""
    for solver in solvers:
        check_choice("solver", solver, tuple(SOLVERS))
    if not (isinstance(samples, int) and samples >= 1):
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    device = str(next(trained.network.parameters()).device)
    model = trained.model()
    x_T = prior_noise(model.schedule, samples, trained.network.config["dim"], seed)
    clock = _NetworkClock(trained.network, device)
    rows = []
    for nfe in nfes:
        for solver in solvers:
            timing = _timed(_paired_solves(model, x_T, solver, nfe), clock, repeats)
            ours, theirs = timing["ours"], timing["theirs"]
            if not ours["calls"] == theirs["calls"] == nfe:
                raise RuntimeError(f"{solver}: {ours['calls']} and {theirs['calls']} network "
                                   f"calls, expected NFE {nfe}")  # fmt: skip
            # one network call per step in every pair: steps = NFE
            our_overhead, their_overhead = ours["outside"] / nfe, theirs["outside"] / nfe
            rows.append(
                {
                    "solver": solver,
                    "NFE": nfe,
                    "workbench s": ours["seconds"],
                    "diffusers s": theirs["seconds"],
                    "model s": min(ours["network"], theirs["network"]),
                    "workbench overhead ms/step": our_overhead * 1e3,
                    "diffusers overhead ms/step": their_overhead * 1e3,
                    "overhead ratio": our_overhead / their_overhead,
                    "meets target": our_overhead <= OVERHEAD_TARGET * their_overhead,
                    "samples/s": samples / ours["seconds"],
                    "max |ours - diffusers|": (ours["x"] - theirs["x"]).abs().max().item(),
                }
            )
    return pd.DataFrame(rows)


def device_line(device: str) -> str:
    if device.startswith("cuda"):
        return f"device: {device} ({torch.cuda.get_device_name(device)}): samples/s is CUDA's"
    if torch.cuda.is_available():
        return f"device: {device} (a GPU is present but not used)"
    return "device: cpu; no GPU (torch.cuda.is_available() is False): CUDA throughput not measured"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny networks, in seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    size = SMOKE if args.smoke else {
        "budgets": BUDGETS, "nfes": NFES, "samples": SAMPLES, "repeats": REPEATS,
    }  # fmt: skip
    device = best_device()
    print(device_line(device))
    start = time.perf_counter()
    trained = train_budgets(size["budgets"], device=device, seed=args.seed)
    print("\nTraining time per model size (ring, batch 256, depth 3, trained in this run)")
    print(training_table(trained).to_string(index=False, formatters=_formatters()))
    # the default budget's network; in --smoke the largest of the tiny ones
    network = trained.get(DEFAULT_BUDGET, list(trained.values())[-1])
    table = solver_timing_table(
        network, nfes=size["nfes"], samples=size["samples"], repeats=size["repeats"],
        seed=args.seed,
    )  # fmt: skip
    print(
        f"\nSolvers on the trained MLP ({parameter_count(network)} parameters), "
        f"{size['samples']} samples, best of {size['repeats']}: workbench sample vs diffusers' "
        f"scheduler loop on the same network and grid"
    )
    print(table.to_string(index=False, formatters=_formatters()))
    print(
        f"target (notebook 01): workbench per-step overhead <= {OVERHEAD_TARGET:g} x diffusers'; "
        f"overhead = (a solve's seconds outside its network calls) / NFE. "
        f"Total {time.perf_counter() - start:.0f} s"
    )


def _formatters() -> dict:
    # readable() for every column: pandas applies a dict of formatters by column name
    names = ["seconds", "steps/s", "final loss", "workbench s", "diffusers s", "model s",
             "workbench overhead ms/step", "diffusers overhead ms/step", "overhead ratio",
             "samples/s", "max |ours - diffusers|", "default", "meets target"]  # fmt: skip
    return dict.fromkeys(names, readable)


if __name__ == "__main__":
    main()
