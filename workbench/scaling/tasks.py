"""Tasks generated in code (no downloads) for learning-rate sweeps.

Every task draws fresh minibatches from a known distribution, so the training loss is an
unbiased estimate of the population loss, and a fixed held-out set (drawn with the task's own
seed) gives the final loss every run is compared on.

- teacher_student: regress the outputs of a fixed random two-layer tanh network (MSE).
- spirals: three interleaved 2-D spirals (cross-entropy).
- markov: next-token prediction on an order-2 Markov chain over 8 tokens (cross-entropy);
  the Bayes-optimal loss is the chain's conditional entropy, known exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import workbench._torch  # noqa: F401  (one intra-op thread)
from workbench.memo import memoized
from workbench.registry import Registry

TASK_SEED = 1234  # fixes the teacher, the chain and the held-out sets
EVAL_SIZE = 1024


@dataclass(frozen=True)
class Task:
    name: str
    d_in: int
    d_out: int
    loss: str  # "mse" or "xent"
    description: str
    draw: Callable[[torch.Generator, int], tuple[torch.Tensor, torch.Tensor]] = field(repr=False)
    bayes_loss: Callable[[], float] | None = field(default=None, repr=False)

    @property
    def irreducible_loss(self) -> float | None:
        """The Bayes-optimal population loss where it is known exactly."""
        return None if self.bayes_loss is None else self.bayes_loss()

    def sample(self, generator: torch.Generator, batch: int, dtype=torch.float64):
        x, y = self.draw(generator, batch)
        return x.to(dtype), (y.to(dtype) if self.loss == "mse" else y)

    def eval_set(self, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _eval_set(self.name)
        return x.to(dtype), (y.to(dtype) if self.loss == "mse" else y)

    def losses(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-run mean loss: prediction (R, B, d_out), target (R, B, d_out) or (R, B) labels."""
        if self.loss == "mse":
            return (prediction - target).pow(2).sum(-1).mean(-1) / 2
        logp = torch.log_softmax(prediction, dim=-1)
        return -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).mean(-1)


# --------------------------------------------------------------------- teacher-student
@memoized("teacher network", maxsize=1)
def _teacher() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(TASK_SEED)
    w1 = torch.randn(16, 64, generator=g, dtype=torch.float64) / math.sqrt(16)
    w2 = torch.randn(64, 4, generator=g, dtype=torch.float64) / math.sqrt(64)
    # unit output variance: normalize the readout by the teacher's own output scale
    probe = torch.tanh(torch.randn(8192, 16, generator=g, dtype=torch.float64) @ w1) @ w2
    return w1, w2 / probe.std(0, keepdim=True)


def _teacher_student(generator: torch.Generator, batch: int):
    w1, w2 = _teacher()
    x = torch.randn(batch, 16, generator=generator, dtype=torch.float64)
    return x, torch.tanh(x @ w1) @ w2


# ---------------------------------------------------------------------------- spirals
SPIRAL_ARMS = 3
SPIRAL_NOISE = 0.08


def _spirals(generator: torch.Generator, batch: int):
    label = torch.randint(0, SPIRAL_ARMS, (batch,), generator=generator)
    r = torch.rand(batch, generator=generator, dtype=torch.float64)
    angle = 3.5 * math.pi * r + 2 * math.pi * label / SPIRAL_ARMS
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=-1) * 2.0
    x = x + SPIRAL_NOISE * torch.randn(batch, 2, generator=generator, dtype=torch.float64)
    return x, label


# ----------------------------------------------------------------------------- markov
VOCAB = 8
ORDER = 2


@memoized("Markov chain", maxsize=1)
def markov_chain() -> tuple[torch.Tensor, torch.Tensor]:
    """Transition probabilities P[context, next] (contexts = VOCAB**ORDER) and their
    stationary distribution, from a Dirichlet(0.3) draw with the task seed."""
    rng = np.random.default_rng(TASK_SEED)
    raw = torch.from_numpy(rng.dirichlet(np.full(VOCAB, 0.3), size=VOCAB**ORDER))
    transitions = raw / raw.sum(-1, keepdim=True)  # exact normalization in float64
    # the context (a, b) -> (b, c) chain; its stationary distribution by power iteration
    n = VOCAB**ORDER
    moves = torch.zeros(n, n, dtype=torch.float64)
    for context in range(n):
        shifted = (context % VOCAB) * VOCAB
        moves[context, shifted : shifted + VOCAB] = transitions[context]
    pi = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for _ in range(2000):
        pi = pi @ moves
    return transitions, pi / pi.sum()


@memoized("Markov chain entropy", maxsize=1)
def markov_entropy() -> float:
    transitions, pi = markov_chain()
    entropy = -(transitions * torch.log(transitions.clamp_min(1e-300))).sum(-1)
    return float(pi @ entropy)


def _markov(generator: torch.Generator, batch: int):
    transitions, pi = markov_chain()
    context = torch.multinomial(pi, batch, replacement=True, generator=generator)
    following = torch.multinomial(transitions[context], 1, generator=generator).squeeze(-1)
    first, second = context // VOCAB, context % VOCAB
    x = torch.cat(
        [torch.nn.functional.one_hot(first, VOCAB), torch.nn.functional.one_hot(second, VOCAB)],
        dim=-1,
    )
    return x.to(torch.float64), following


TASKS: Registry[Task] = Registry("task")
TASKS.add(
    "teacher_student",
    Task(
        "teacher_student",
        16,
        4,
        "mse",
        "regress a random 16-64-4 tanh teacher (unit output variance), MSE / 2",
        _teacher_student,
        lambda: 0.0,
    ),
    label="teacher-student",
)
TASKS.add(
    "spirals",
    Task(
        "spirals",
        2,
        SPIRAL_ARMS,
        "xent",
        f"{SPIRAL_ARMS} interleaved 2-D spirals, noise {SPIRAL_NOISE}, cross-entropy",
        _spirals,
    ),
    label="spirals",
)
TASKS.add(
    "markov",
    Task(
        "markov",
        VOCAB * ORDER,
        VOCAB,
        "xent",
        f"next token of an order-{ORDER} Markov chain over {VOCAB} tokens, cross-entropy",
        _markov,
        lambda: markov_entropy(),
    ),
    label="Markov chain",
)
DEFAULT_TASK = "markov"


def get_task(name: str | None) -> Task:
    return TASKS[name or DEFAULT_TASK]


@memoized("held-out sets", maxsize=8)
def _eval_set(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(TASK_SEED + 1)
    return TASKS[name].draw(generator, EVAL_SIZE)
