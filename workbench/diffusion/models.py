"""Model outputs and the one helper that converts between them.

A diffusion model predicts one of: the noise eps, the data x_0, v = alpha eps - sigma x_0,
the score grad log p_t = -eps / sigma, or the flow velocity dx_t/dt = alpha' x_0 + sigma' eps.
All five are linear in (x_0, eps) given x_t = alpha x_0 + sigma eps, so each converts to any
other through that pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from workbench.diffusion.schedules import DTYPE, NoiseSchedule
from workbench.registry import unknown_choice

PREDICTIONS = ("noise", "data", "v", "score", "velocity")


def to_data_and_noise(output, kind, x, alpha, sigma, d_alpha=None, d_sigma=None):
    """(x_0, eps) implied by a model output of `kind` at x_t = x."""
    if kind == "noise":
        return (x - sigma * output) / alpha, output
    if kind == "data":
        if bool((torch.as_tensor(sigma) == 0).all()):
            # a path's data end: (x - alpha x_0) / sigma is 0 / 0 there, and its limit
            # (-sigma * score for a model with x_0 = x / alpha, the exact denoiser of any
            # smooth density) is 0
            return output, torch.zeros_like(output)
        return output, (x - alpha * output) / sigma
    if kind == "v":
        norm = alpha**2 + sigma**2
        return (alpha * x - sigma * output) / norm, (sigma * x + alpha * output) / norm
    if kind == "score":
        eps = -sigma * output
        return (x - sigma * eps) / alpha, eps
    if kind == "velocity":
        det = alpha * d_sigma - sigma * d_alpha
        return (d_sigma * x - sigma * output) / det, (alpha * output - d_alpha * x) / det
    raise unknown_choice("prediction", kind, PREDICTIONS)


def from_data_and_noise(x0, eps, kind, alpha, sigma, d_alpha=None, d_sigma=None):
    if kind == "noise":
        return eps
    if kind == "data":
        return x0
    if kind == "v":
        return alpha * eps - sigma * x0
    if kind == "score":
        return -eps / sigma
    if kind == "velocity":
        return d_alpha * x0 + d_sigma * eps
    raise unknown_choice("prediction", kind, PREDICTIONS)


def convert(output, *, source: str, target: str, x, t, schedule: NoiseSchedule):
    """A model output of kind `source` at (x, t) as kind `target`."""
    if source == target:
        return output
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    needs_derivatives = "velocity" in (source, target)
    d_alpha, d_sigma = schedule.derivatives(t) if needs_derivatives else (None, None)
    x0, eps = to_data_and_noise(output, source, x, alpha, sigma, d_alpha, d_sigma)
    return from_data_and_noise(x0, eps, target, alpha, sigma, d_alpha, d_sigma)


@dataclass(frozen=True)
class DiffusionModel:
    """fn(x, t) -> a prediction of kind `prediction` under `schedule`; t is a float64 scalar."""

    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    prediction: str
    schedule: NoiseSchedule
    name: str = "model"
    # what fn computes, for content-keyed memos (workbench.memo): e.g. the mixture it denoises.
    # None: an arbitrary callable, whose results are computed every time, never memoized.
    content: object = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise unknown_choice("prediction", self.prediction, PREDICTIONS)

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.fn(x, torch.as_tensor(t, dtype=DTYPE))

    def content_key(self):
        if self.content is None:
            return None
        return (self.content, self.prediction, self.schedule)

    def as_prediction(self, kind: str) -> DiffusionModel:
        """The same model answering in another parametrization (for cross-checks)."""

        def fn(x, t):
            return convert(
                self.fn(x, t), source=self.prediction, target=kind, x=x, t=t, schedule=self.schedule
            )

        content = None if self.content is None else (self.content, "as", self.prediction)
        return DiffusionModel(fn, kind, self.schedule, f"{self.name} as {kind}", content)
