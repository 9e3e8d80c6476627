"""Test fields for the extraction tests, as functions of grid points (N, D) -> (N,).

Their centres and radii are chosen off the grid points (no value exactly 0) unless a test
says otherwise.
"""

from __future__ import annotations

import torch

from workbench.surfaces import Grid


def ball(center, radius):
    return lambda x: (x - torch.tensor(center, dtype=x.dtype)).norm(dim=1) - radius


def ellipse(center, axes):
    """An off-centre ellipse (ellipsoid) as a scaled distance: not an SDF, still smooth."""
    return lambda x: (
        ((x - torch.tensor(center, dtype=x.dtype)) / torch.tensor(axes, dtype=x.dtype))
        .norm(dim=1)
        .sub(1.0)
    )


def two_balls(dim):
    """Two separate components: the union (min) of two balls."""
    a = ball([-0.45] + [0.03] * (dim - 1), 0.371)
    b = ball([0.5] + [-0.06] * (dim - 1), 0.313)
    return lambda x: torch.minimum(a(x), b(x))


def saddles(dim):
    """A product of sines: its zero set is a lattice of lines or planes crossing at saddles.

    In 3-D it is lifted by 0.05, which leaves no saddle face on a 33^3 grid (the cubes'
    peer test needs Lewiner and us to agree there; the ambiguity test lowers it again).
    """
    phases = torch.tensor([0.1, 0.2, 0.3][:dim], dtype=torch.float64)
    return lambda x: torch.sin(5 * x + phases).prod(dim=1) + (0.05 if dim == 3 else 0.0)


def values_on(grid: Grid, field) -> torch.Tensor:
    return field(grid.points()).reshape(grid.shape)
