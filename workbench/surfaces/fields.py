"""Implicit fields: a torch module mapping points (N, D) to values (N,), zero on the surface.

Every field is a `Field`: float64, its shape parameters are `torch.nn.Parameter`s (so a shape
fit optimizes them with any torch optimizer), and `gradient(x)` is the spatial gradient
grad_x s. Analytic fields override `gradient` with the closed form; the base class falls back
to autograd, which the tests use as the reference for every closed form.

`surface_points(n)` gives exact points on the zero set (targets and distances are measured
against them, never against an extracted mesh): closed forms where they exist, otherwise roots
along rays from the field's `star_center()` (`workbench.surfaces.surface_sampling`).

Only `Ball` and `Box` are exact signed distances. `Ellipsoid`, `SmoothUnion` (away from its
seam it is min(a, b): the exact distance outside a union of exact parts, a bound inside),
`DensityLevelSet` and the fitted fields are implicit functions with the same sign convention
whose |grad s| is not 1; the MeshSDF gradient divides by |grad s|, so it holds for all.
"""

from __future__ import annotations

import copy
import math

import torch

from workbench.surfaces.grid import DTYPE
from workbench.surfaces.surface_sampling import (
    check_point_count,
    circle_directions,
    equal_arclength,
    fibonacci_sphere,
    star_shaped_points,
)
from workbench.toy.mixture import GaussianMixture


def _as_parameter(value, name: str, dim: int | None = None) -> torch.nn.Parameter:
    tensor = torch.as_tensor(value, dtype=DTYPE).clone()
    if dim is not None and tensor.shape != (dim,):
        raise ValueError(f"{name} must have {dim} coordinates, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite, got {tensor.tolist()}")
    return torch.nn.Parameter(tensor)


def _check_dim(dim: int, what: str) -> int:
    if dim not in (2, 3):
        raise ValueError(f"{what} must be 2-D or 3-D, got {dim}-D")
    return dim


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

    def star_center(self) -> torch.Tensor:
        """A point the surface is star-shaped about (rays from it cross the surface once)."""
        return torch.zeros(self.dim, dtype=DTYPE)

    def surface_points(self, n: int, seed: int = 0) -> torch.Tensor:
        """(n, dim) points on the zero set, equally spaced in arclength (2-D) or uniform in
        area (3-D, drawn with `seed`); detached."""
        return star_shaped_points(self, n, self.star_center(), seed)


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

    def star_center(self) -> torch.Tensor:
        return self.center.detach().clone()

    def surface_points(self, n: int, seed: int = 0) -> torch.Tensor:
        """Equal angles (2-D) or the Fibonacci spiral (3-D, area-uniform to O(1/n); no seed)."""
        n = check_point_count(n)
        directions = circle_directions(n) if self.dim == 2 else fibonacci_sphere(n)
        return (self.center + self.radius * directions).detach()


class _Centered(Field):
    """A shape about a centre parameter (star-shaped about it) with positive per-axis sizes."""

    def __init__(self, center, what: str):
        super().__init__()
        self.center = _as_parameter(center, f"{what}'s center")
        self.dim = _check_dim(self.center.shape[0], f"{what}'s center")

    def _sizes(self, values, name: str) -> torch.nn.Parameter:
        sizes = _as_parameter(values, name, self.dim)
        if not bool((sizes > 0).all()):
            raise ValueError(f"{name} must be > 0, got {sizes.tolist()}")
        return sizes

    def star_center(self) -> torch.Tensor:
        return self.center.detach().clone()


class Ellipsoid(_Centered):
    """An ellipse (dim 2) or ellipsoid (dim 3): s = g (|(x - c) / r| - 1), g = (prod r)^(1/D).

    Not a distance: on the surface |grad s| = g |(x - c) / r^2| runs between g / max(r) and
    g / min(r); the geometric mean g keeps it about 1 there (0.76 to 1.32 for radii 0.7, 0.4).
    """

    def __init__(self, center, radii):
        super().__init__(center, "an ellipsoid")
        self.radii = self._sizes(radii, "an ellipsoid's radii")

    def _scale(self) -> torch.Tensor:
        return self.radii.log().mean().exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (self.check_points(x) - self.center) / self.radii
        return self._scale() * (scaled.norm(dim=1) - 1)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        radii = self.radii.detach()
        offset = self.check_points(x) - self.center.detach()
        norm = (offset / radii).norm(dim=1, keepdim=True).clamp_min(1e-300)
        return self._scale().detach() * offset / radii**2 / norm


class Box(_Centered):
    """The exact signed distance to an axis-aligned rectangle or box with sharp corners.

    With q = |x - c| - h: |max(q, 0)| outside, max_i q_i (<= 0) inside. Its gradient jumps
    across the box's medial axis inside and along the corners' normal cones outside.
    """

    def __init__(self, center, half_sizes):
        super().__init__(center, "a box")
        self.half_sizes = self._sizes(half_sizes, "a box's half sizes")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = (self.check_points(x) - self.center).abs() - self.half_sizes
        return q.clamp_min(0).norm(dim=1) + q.max(dim=1).values.clamp_max(0)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.check_points(x) - self.center.detach()
        sign = torch.where(offset >= 0, 1.0, -1.0).to(DTYPE)
        q = offset.abs() - self.half_sizes.detach()
        outside = q.clamp_min(0)
        outside = outside / outside.norm(dim=1, keepdim=True).clamp_min(1e-300)
        nearest_face = torch.nn.functional.one_hot(q.argmax(dim=1), self.dim).to(DTYPE)
        is_outside = (q > 0).any(dim=1, keepdim=True)
        return sign * torch.where(is_outside, outside, nearest_face)

    def surface_points(self, n: int, seed: int = 0) -> torch.Tensor:
        """2-D: exactly equal arclength round the rectangle (rays would cut its corners short in
        the arclength estimate); 3-D: area-uniform along rays, as for any field."""
        if self.dim == 3:
            return super().surface_points(n, seed)
        n = check_point_count(n)
        unit = torch.tensor([[1, -1], [1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=DTYPE)
        corners = (self.center + unit * self.half_sizes).detach()
        segment, fraction = equal_arclength(corners, n)
        start, end = corners[segment], corners[segment + 1]
        return start + fraction[:, None] * (end - start)


class SmoothUnion(Field):
    """The union of two fields' insides with a blended seam: Quilez's polynomial smooth minimum.

    h = clip(1/2 + (b - a) / (2k), 0, 1), s = h a + (1 - h) b - k h (1 - h). It equals min(a, b)
    where |a - b| >= k; ds/da = h and ds/db = 1 - h exactly (the other terms cancel), so
    grad s = h grad a + (1 - h) grad b. The parts' parameters are the union's.
    """

    def __init__(self, a: Field, b: Field, k: float, center=None):
        super().__init__()
        if a.dim != b.dim:
            raise ValueError(
                f"a smooth union needs parts of one dimension, got {a.dim} and {b.dim}"
            )
        if not (math.isfinite(float(k)) and float(k) > 0):
            raise ValueError(f"a smooth union's blend width k must be finite and > 0, got {k}")
        self.a, self.b, self.k, self.dim = a, b, float(k), a.dim
        self._center = None if center is None else torch.as_tensor(center, dtype=DTYPE)

    def _blend(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (0.5 + 0.5 * (b - a) / self.k).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(self.check_points(x)), self.b(x)
        h = self._blend(a, b)
        return h * a + (1 - h) * b - self.k * h * (1 - h)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self._blend(self.a(self.check_points(x)), self.b(x))[:, None]
        return h * self.a.gradient(x) + (1 - h) * self.b.gradient(x)

    def star_center(self) -> torch.Tensor:
        if self._center is not None:
            return self._center.clone()
        return 0.5 * (self.a.star_center() + self.b.star_center())


class DensityLevelSet(Field):
    """The level set {p(x) = c} of a Gaussian mixture: s = log c - log p(x), inside where p > c.

    The mixture's means are the shape parameters (`means`, (K, D)); its stds and weights stay
    fixed. `GaussianMixture` reads `self.means` in every density method, so a shallow copy
    whose means are this parameter is differentiable in them. grad s = -score(x), whose norm is
    not 1: a level set, not a distance.
    """

    def __init__(self, mixture: GaussianMixture, level: float):
        super().__init__()
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(
                f"a density level set takes a GaussianMixture, got {type(mixture).__name__}"
            )
        self.dim = _check_dim(mixture.dim, "a density level set's mixture")
        self._mixture = copy.copy(mixture)
        self.means = torch.nn.Parameter(mixture.means.clone())
        peak = float(mixture.log_prob(mixture.means).max())
        if not (math.isfinite(float(level)) and 0 < float(level) < math.exp(peak)):
            raise ValueError(
                f"a density level must be in (0, {math.exp(peak):.4g}) (the density at its "
                f"densest mean) so that the level set is not empty, got {level}"
            )
        self.log_level = math.log(float(level))

    def mixture(self) -> GaussianMixture:
        """The mixture at the current means (differentiable in them)."""
        view = copy.copy(self._mixture)
        view.means = self.means
        return view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_level - self.mixture().log_prob(self.check_points(x))

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return -self.mixture().score(self.check_points(x), 1.0, 0.0)

    def star_center(self) -> torch.Tensor:
        return self.mixture().mean().detach()
