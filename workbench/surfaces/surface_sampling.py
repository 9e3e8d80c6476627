"""Exact points on a field's zero set, spread uniformly over its length (2-D) or area (3-D).

Targets and distances need points that lie on the surface itself, not on an extracted mesh.
For a closed form (a circle, a sphere) the field gives them directly; every other field here is
star-shaped about some centre c (every ray from c leaves the inside exactly once), so its
surface is r(u) u + c over directions u, and r(u) is a one-dimensional root:

- the root is bracketed by sampling s along each ray and refined by bisection to rounding, so
  every point is on the surface to ~1e-15 (a non-star-shaped field is refused, not sampled);
- uniformity: the length element of the curve r(theta) is r / (u . n) d theta and the area
  element of the surface r(u) is r^2 / (u . n) d omega (n the unit normal). In 2-D points are
  placed at equal arclength by inverting the cumulative chord length of a dense polygon; in
  3-D directions drawn uniformly on the sphere are kept with probability proportional to that
  area element (rejection sampling), which is exactly uniform in area.
"""

from __future__ import annotations

import math

import torch

from workbench.surfaces.grid import DTYPE

_RAY_SAMPLES = 32  # samples along each ray to bracket the crossing and check it is the only one
_BISECTIONS = 56  # shrinks the bracket (at most 64 / 31) below 1e-15
_DENSE_PER_POINT = 4  # dense polygon vertices per requested point for the 2-D arclength
_DENSE_BISECTIONS = 24  # the dense polygon only measures arclength: 1e-7 of a bracket is plenty


def fibonacci_sphere(n: int) -> torch.Tensor:
    """(n, 3) unit vectors on the golden-angle spiral: area-uniform to O(1/n), deterministic."""
    k = torch.arange(n, dtype=DTYPE) + 0.5
    z = 1 - 2 * k / n
    angle = math.pi * (3 - math.sqrt(5)) * k
    ring = torch.sqrt(1 - z**2)
    return torch.stack([ring * torch.cos(angle), ring * torch.sin(angle), z], dim=1)


def circle_directions(n: int) -> torch.Tensor:
    """(n, 2) unit vectors at equal angles, counter-clockwise from angle pi / n."""
    angle = 2 * math.pi * (torch.arange(n, dtype=DTYPE) + 0.5) / n
    return torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


def check_point_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of surface points must be an integer >= 1, got {n!r}")
    return n


def _outer_radius(field, center: torch.Tensor, directions: torch.Tensor) -> float:
    """A radius at which every ray is outside (s > 0), doubling from 2 up to 64."""
    radius = 2.0
    with torch.no_grad():
        while not bool((field(center + radius * directions) > 0).all()):
            radius *= 2
            if radius > 64:
                raise ValueError(
                    f"{type(field).__name__}'s inside reaches beyond 64 from {center.tolist()}: "
                    "its surface is not closed around that centre"
                )
    return radius


def ray_radii(
    field, center: torch.Tensor, directions: torch.Tensor, bisections: int = _BISECTIONS
) -> torch.Tensor:
    """(M,) the radius r at which each ray c + r u crosses the zero set, to rounding (with the
    default number of bisections)."""
    with torch.no_grad():
        if not float(field(center[None])[0]) < 0:
            raise ValueError(
                f"{type(field).__name__} is not negative at the centre {center.tolist()}: "
                "its surface points are found along rays from a point inside"
            )
        radius = _outer_radius(field, center, directions)
        ticks = torch.linspace(0.0, radius, _RAY_SAMPLES, dtype=DTYPE)
        points = center + ticks[None, :, None] * directions[:, None, :]
        inside = field(points.reshape(-1, center.shape[0])).reshape(len(directions), -1) < 0
        crossings = (inside[:, :-1] != inside[:, 1:]).sum(dim=1)
        if not bool((crossings == 1).all()):
            raise ValueError(
                f"{type(field).__name__} is not star-shaped about {center.tolist()}: "
                f"{int((crossings != 1).sum())} rays cross its surface more than once"
            )
        last_inside = inside.sum(dim=1) - 1  # each ray is inside, then outside
        lo, hi = ticks[last_inside], ticks[last_inside + 1]
        for _ in range(bisections):
            middle = 0.5 * (lo + hi)
            is_inside = field(center + middle[:, None] * directions) < 0
            lo, hi = torch.where(is_inside, middle, lo), torch.where(is_inside, hi, middle)
        return 0.5 * (lo + hi)


def _unit_normals(field, points: torch.Tensor) -> torch.Tensor:
    grad = field.gradient(points)
    return grad / grad.norm(dim=1, keepdim=True)


def _transversal_cosines(field, points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    cosines = (_unit_normals(field, points) * directions).sum(dim=1)
    if not bool((cosines > 1e-6).all()):
        raise ValueError(
            f"{type(field).__name__} is not strictly star-shaped: some rays graze its surface"
        )
    return cosines


def star_shaped_points(field, n: int, center, seed: int = 0) -> torch.Tensor:
    """(n, dim) points on the zero set of a field star-shaped about `center`, uniform in
    arclength (2-D, deterministic) or area (3-D, drawn with `seed`)."""
    n = check_point_count(n)
    center = torch.as_tensor(center, dtype=DTYPE).detach()
    if center.shape != (field.dim,):
        raise ValueError(f"the centre must have {field.dim} coordinates, got {center.tolist()}")
    if field.dim == 2:
        return _equal_arclength(field, n, center)
    return _area_uniform(field, n, center, seed)


def equal_arclength(polygon: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where n points at equal arclength fall on a closed polygon (first vertex repeated last):
    each point's segment index and its fraction along that segment, half a step from the start."""
    chords = (polygon[1:] - polygon[:-1]).norm(dim=1)
    arclength = torch.cat([torch.zeros(1, dtype=DTYPE), chords.cumsum(0)])
    targets = arclength[-1] * (torch.arange(n, dtype=DTYPE) + 0.5) / n
    segment = torch.searchsorted(arclength, targets).clamp(1, len(chords)) - 1
    return segment, (targets - arclength[segment]) / chords[segment]


def _equal_arclength(field, n: int, center: torch.Tensor) -> torch.Tensor:
    dense = max(_DENSE_PER_POINT * n, 512)
    angles = 2 * math.pi * torch.arange(dense + 1, dtype=DTYPE) / dense
    directions = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    radii = ray_radii(field, center, directions, _DENSE_BISECTIONS)
    polygon = center + radii[:, None] * directions
    segment, fraction = equal_arclength(polygon, n)
    chosen = angles[segment] + fraction * (angles[segment + 1] - angles[segment])
    directions = torch.stack([torch.cos(chosen), torch.sin(chosen)], dim=1)
    return center + ray_radii(field, center, directions)[:, None] * directions


def _area_elements(field, center: torch.Tensor, directions: torch.Tensor):
    """The surface points along `directions` and the area element r^2 / (u . n) at each."""
    radii = ray_radii(field, center, directions)
    points = center + radii[:, None] * directions
    return points, radii**2 / _transversal_cosines(field, points, directions)


def _area_uniform(field, n: int, center: torch.Tensor, seed: int) -> torch.Tensor:
    # the acceptance bound must be the same for every draw: a margin over a dense spiral's max
    bound = 1.25 * float(_area_elements(field, center, fibonacci_sphere(1024))[1].max())
    generator = torch.Generator().manual_seed(int(seed))
    kept: list[torch.Tensor] = []
    total = 0
    while total < n:
        directions = torch.randn(4 * n, 3, generator=generator, dtype=DTYPE)
        points, element = _area_elements(
            field, center, directions / directions.norm(dim=1)[:, None]
        )
        if bool((element > bound).any()):
            raise ValueError("the surface's area element varies too much to sample by rejection")
        accept = torch.rand(len(points), generator=generator, dtype=DTYPE) * bound < element
        kept.append(points[accept])
        total += int(accept.sum())
    return torch.cat(kept)[:n]
