"""SHAPES: the target shapes of the iso-surface topic, name -> a constructor of a fresh field.

Each call builds a new field (a fit moves its own copy's parameters, never a shared one).
Every shape lies inside [-0.9, 0.9]^D, leaving at least a tenth of the [-1, 1] grid as margin,
and its centre is off the grid's symmetry planes so that no surface passes exactly through
grid points of the usual resolutions. All are star-shaped about their `star_center()`, so
their `surface_points` are exact.
"""

from __future__ import annotations

from collections.abc import Callable

from workbench.registry import Registry
from workbench.surfaces.fields import Ball, Box, DensityLevelSet, Ellipsoid, Field, SmoothUnion
from workbench.toy.mixture import GaussianMixture

SHAPES: Registry[Callable[[], Field]] = Registry("shape")


def _density_mixture() -> GaussianMixture:
    """Three unequal modes: their level set p = 0.7 is one three-lobed, non-convex curve."""
    means = [[-0.35, -0.2], [0.35, -0.15], [0.0, 0.35]]
    return GaussianMixture(means, 0.22, [0.4, 0.35, 0.25])


SHAPES.add("circle", lambda: Ball([0.04, -0.03], 0.55), label="circle")
SHAPES.add("ellipse", lambda: Ellipsoid([0.04, -0.03], [0.7, 0.4]), label="ellipse")
SHAPES.add("box", lambda: Box([0.03, -0.02], [0.6, 0.4]), label="box (sharp corners)")
SHAPES.add(
    "blob",
    lambda: SmoothUnion(
        Ball([-0.3, -0.12], 0.4), Ellipsoid([0.33, 0.22], [0.38, 0.26]), k=0.25, center=[0, 0]
    ),
    label="blob (smooth union)",
)
SHAPES.add("density", lambda: DensityLevelSet(_density_mixture(), 0.7), label="density level set")
SHAPES.add("sphere", lambda: Ball([0.04, -0.03, 0.02], 0.6), label="sphere")
SHAPES.add("cube", lambda: Box([0.03, -0.02, 0.01], [0.5, 0.45, 0.55]), label="cube (sharp edges)")
SHAPES.add(
    "blob3d",
    lambda: SmoothUnion(
        Ball([-0.28, -0.05, 0.0], 0.42), Ball([0.33, 0.12, 0.05], 0.32), k=0.2, center=[0, 0, 0]
    ),
    label="blob (3-D smooth union)",
)


def shape_names(dim: int) -> list[str]:
    """The names of the 2-D or the 3-D shapes, in registration order."""
    if dim not in (2, 3):
        raise ValueError(f"shapes are 2-D or 3-D, got dim={dim}")
    return [name for name, build in SHAPES.items() if build().dim == dim]
