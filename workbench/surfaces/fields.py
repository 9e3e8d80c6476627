"""Implicit fields: a torch module mapping points (N, D) to values (N,), zero on the surface.

Every field is a `Field`: float64, its shape parameters are `torch.nn.Parameter`s (so a shape
fit optimizes them with any torch optimizer), and `gradient(x)` is the spatial gradient
grad_x s. Analytic fields override `gradient` with the closed form; the base class falls back
to autograd, which the tests use as the reference for every closed form.
"""

from __future__ import annotations

import torch

from workbench.surfaces.grid import DTYPE


def _as_parameter(value, name: str, dim: int | None = None) -> torch.nn.Parameter:
    tensor = torch.as_tensor(value, dtype=DTYPE).clone()
    if dim is not None and tensor.shape != (dim,):
        raise ValueError(f"{name} must have {dim} coordinates, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite, got {tensor.tolist()}")
    return torch.nn.Parameter(tensor)


class Field(torch.nn.Module):
    """s: (N, dim) -> (N,), negative inside. Subclasses set `dim` and implement `forward`."""

    dim: int

    def check_points(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} takes points of shape (N, {self.dim}), got {tuple(x.shape)}"
            )
        return x

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim) grad_x s at x, by autograd (analytic fields override with the closed form)."""
        with torch.enable_grad():
            x = self.check_points(x).detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(x).sum(), x)
        return grad


class Ball(Field):
    """The exact signed distance to a circle (dim 2) or sphere (dim 3): |x - c| - r."""

    def __init__(self, center, radius: float):
        super().__init__()
        self.center = _as_parameter(center, "a ball's center")
        self.dim = self.center.shape[0]
        if self.dim not in (2, 3) or not float(radius) > 0:
            raise ValueError(
                f"a ball needs a 2-D or 3-D center and radius > 0, got {self.dim}-D, r={radius}"
            )
        self.radius = _as_parameter(float(radius), "a ball's radius")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.check_points(x) - self.center).norm(dim=1) - self.radius

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.check_points(x) - self.center.detach()
        return offset / offset.norm(dim=1, keepdim=True)
