"""What FlexiCubes' freedom buys on sharp corners, against plain marching.

Fitted on the exact box outline, the dual vertices reach the box's corners, which no marching
vertex can (they sit on grid lines), and the final Chamfer distance is many times smaller than
fitted marching's (the issue's claim: >= 2x). In 3-D, the grid deformation reaches a point that
the weights alone provably cannot.
"""

from __future__ import annotations

import math

import torch

from workbench.surfaces import Grid
from workbench.surfaces.distances import chamfer_distance, sample_faces
from workbench.surfaces.fields import Box
from workbench.surfaces.flexicubes import FlexiWeights, dual_vertices, flexicubes
from workbench.surfaces.marching import marching

DTYPE = torch.float64


def fit_on_outline(extract, parameters, target, steps=60, lr=3e-2):
    """Adam on the Chamfer distance from the extracted mesh to the target's exact outline."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        chamfer_distance(sample_faces(extract(), per_face=8), target).backward()
        optimizer.step()
    with torch.no_grad():
        return extract()


def test_fitted_flexicubes_recovers_the_box_corners_that_marching_cannot():
    """The exact box outline, 16 x 16 grid, both methods fitted from the box's own SDF values
    by 60 Adam steps at lr 3e-2 on the Chamfer distance to 300 outline points: marching
    (values) and FlexiCubes (values and weights, no grid deformation).

    A marching vertex lies on a grid line, so none comes nearer a corner than the corner's
    distance to the nearest grid line (0.0367 here); FlexiCubes' dual vertices move inside
    their cells and reach the corners (measured 0.0004-0.0017). Final Chamfer, measured with
    dense samples (64 per face, 4000 target points): marching 5.1e-5 (its floor: 100 steps at
    any lr in [3e-3, 3e-2] end within 2% of it), FlexiCubes 2.1e-6, 25x smaller; the issue
    claims >= 2x, asserted here with margin as >= 10x. (The first Adam step imports
    torch._dynamo, about 3 s, once per session.)
    """
    grid = Grid(2, 16)
    shape = Box([0.0, 0.0], [0.53, 0.37])
    with torch.no_grad():
        start = grid.sample(shape)
    target, dense = shape.surface_points(300), shape.surface_points(4000)
    corners = (
        torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=DTYPE) * shape.half_sizes.detach()
    )
    axis = grid.axis()
    reach = min(float((axis - h).abs().min()) for h in shape.half_sizes.detach())

    values = start.clone().requires_grad_(True)
    marched = fit_on_outline(lambda: marching(values, grid), [values], target)
    values = start.clone().requires_grad_(True)
    weights = FlexiWeights.neutral(grid)
    flexi = fit_on_outline(
        lambda: flexicubes(values, grid, weights), [values, *weights.parameters()], target
    )

    marching_nearest = torch.cdist(corners, marched.vertices).min(dim=1).values
    flexi_nearest = torch.cdist(corners, flexi.vertices).min(dim=1).values
    assert (marching_nearest >= reach - 1e-12).all()
    assert (flexi_nearest < reach / 10).all()
    marching_chamfer = float(chamfer_distance(sample_faces(marched, per_face=64), dense))
    flexi_chamfer = float(chamfer_distance(sample_faces(flexi, per_face=64), dense))
    assert flexi_chamfer < marching_chamfer / 10


def test_grid_deformation_reaches_a_corner_the_weights_alone_cannot():
    """One inside grid point; the dual vertex of the cell above it is driven towards a point c
    at offsets f = (0.415, 0.535, 0.855) cells from that point. Without deformation the vertex
    is a beta-weighted mean of crossings on the cell's three edges from the inside corner, so
    it stays in the simplex {f >= 0, sum f <= 1}: no nearer c than h (sum f - 1) / sqrt(3)
    (c's projection on the face sum f = 1 lies inside it). 100 Adam steps at lr 0.1 on the
    squared distance: the weights alone end at 1.010 times that bound, with the grid
    deformation at 0.006 times it."""
    grid = Grid(3, 4)
    values = torch.ones(grid.shape, dtype=DTYPE)
    values[1, 1, 1] = -1.0
    fractions = torch.tensor([0.415, 0.535, 0.855], dtype=DTYPE)
    corner = grid.lo + grid.spacing * (1 + fractions)
    cell = 1 * 9 + 1 * 3 + 1  # the cell whose lowest corner is the inside point
    bound = grid.spacing * float(fractions.sum() - 1) / math.sqrt(3)

    def fitted_distance(weights):
        optimizer = torch.optim.Adam(weights.parameters(), lr=0.1)
        for _ in range(100):
            optimizer.zero_grad()
            dual = dual_vertices(values, grid, weights)
            (dual.positions[dual.cells == cell] - corner).pow(2).sum().backward()
            optimizer.step()
        dual = dual_vertices(values, grid, weights)
        return float((dual.positions[dual.cells == cell] - corner).norm().detach())

    alone, deformed = (fitted_distance(FlexiWeights.neutral(grid, deform=d)) for d in (False, True))
    assert bound - 1e-12 <= alone <= 1.1 * bound
    assert deformed < bound / 10
