"""Marching squares against scikit-image's find_contours on the same grids, the measures it
encloses, and what every extractor shares: vertex autograd against finite differences, the
rule at the level, empty meshes and refused input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from surface_fields import ball, ellipse, saddles, two_balls, values_on

from workbench.metrics import empirical_order
from workbench.surfaces import Grid
from workbench.surfaces.marching import marching, marching_cubes, marching_squares
from workbench.surfaces.marching_tables import case_table

measure = pytest.importorskip("skimage.measure")

FIELDS_2D = {
    "ball": ball([0.11, -0.07], 0.63),
    "ellipse": ellipse([0.213, -0.087], [0.7, 0.35]),
    "two balls": two_balls(2),
    "saddles": saddles(2),
}
CLOSED = ("ball", "ellipse", "two balls")


# ---- scikit-image's 2-D answer as sets of points and directed segments --------------------


def skimage_segments(values: torch.Tensor, grid: Grid) -> np.ndarray:
    """(S, 2, 2) directed segments of find_contours (low on the left, low fully connected)."""
    contours = measure.find_contours(
        values.numpy(), 0.0, fully_connected="low", positive_orientation="low"
    )
    return (
        np.concatenate([np.stack([c[:-1], c[1:]], axis=1) for c in contours]) * grid.spacing
        + grid.lo
    )


def signed_area(segments: np.ndarray) -> float:
    a, b = segments[:, 0], segments[:, 1]
    return 0.5 * float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum())


def rows(points: np.ndarray) -> np.ndarray:
    """Points (or flattened segments) sorted lexicographically, to compare as sets."""
    flat = points.reshape(len(points), -1)
    return flat[np.lexsort(flat.T[::-1])]


@pytest.mark.parametrize("name", list(FIELDS_2D))
def test_marching_squares_matches_find_contours(name):
    grid = Grid(2, 41)
    values = values_on(grid, FIELDS_2D[name])
    assert not bool((values == 0).any())  # ties: see the zero-length segments' test
    mesh = marching_squares(values, grid)
    ours = mesh.face_vertices().numpy()
    theirs = skimage_segments(values, grid)
    # the same directed segments, so the same vertices, pairing at saddles and orientation
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(rows(ours), rows(theirs), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        rows(mesh.vertices.numpy()), rows(np.unique(theirs.reshape(-1, 2), axis=0)), atol=1e-12
    )
    assert float(mesh.measure()) == pytest.approx(
        float(np.linalg.norm(theirs[:, 1] - theirs[:, 0], axis=1).sum()), rel=1e-12
    )
    assert float(mesh.enclosed()) == pytest.approx(signed_area(theirs), rel=1e-10, abs=1e-12)


def test_saddle_cells_occur_and_keep_the_inside_connected():
    # the saddle field must actually exercise cases 0b0110 / 0b1001 (corners 1, 2 or 0, 3)
    grid = Grid(2, 41)
    inside = values_on(grid, FIELDS_2D["saddles"]) <= 0
    c0, c1, c2, c3 = inside[:-1, :-1], inside[1:, :-1], inside[:-1, 1:], inside[1:, 1:]
    diagonal = (c0 == c3) & (c1 == c2) & (c0 != c1)
    assert int(diagonal.sum()) >= 4
    # the table joins a saddle's exit to the next crossing counter-clockwise: inside connected
    table = case_table(2)
    # case 0b1001: corners 0 and 3 inside; edges 0 (c0-c1, y=0), 1 (c2-c3, y=1), 2 (c0-c2,
    # x=0), 3 (c1-c3, x=1): the outside corners 1 and 2 are cut off
    assert sorted(map(tuple, table[0b1001].tolist())) == [(0, 3), (1, 2)]


@pytest.mark.parametrize("name", CLOSED)
def test_closed_contours_are_closed_and_counter_clockwise(name):
    grid = Grid(2, 41)
    mesh = marching_squares(values_on(grid, FIELDS_2D[name]), grid)
    # every vertex starts one segment and ends one
    for column in range(2):
        counts = torch.bincount(mesh.faces[:, column], minlength=mesh.n_vertices)
        assert bool((counts == 1).all())
    assert float(mesh.enclosed()) > 0


def test_circle_area_converges_at_second_order():
    resolutions = [9, 17, 33, 65, 129]
    errors = []
    for n in resolutions:
        grid = Grid(2, n)
        area = float(marching_squares(values_on(grid, ball([0.11, -0.07], 0.63)), grid).enclosed())
        errors.append(abs(area - math.pi * 0.63**2))
    fit = empirical_order(resolutions, errors)
    assert fit.order == pytest.approx(2.0, abs=0.15)


def test_vertices_sit_on_their_edges_inside_end_first():
    grid = Grid(2, 21)
    values = values_on(grid, FIELDS_2D["ellipse"])
    mesh = marching_squares(values, grid)
    flat, points = values.reshape(-1), grid.points()
    inside_end, outside_end = mesh.edges.unbind(1)
    assert bool((flat[inside_end] <= 0).all()) and bool((flat[outside_end] > 0).all())
    t = flat[inside_end] / (flat[inside_end] - flat[outside_end])
    expected = points[inside_end] + t.unsqueeze(1) * (points[outside_end] - points[inside_end])
    assert float((mesh.vertices - expected).abs().max()) <= 1e-14


@pytest.mark.parametrize("dim", [2, 3])
def test_vertex_gradient_matches_finite_differences(dim):
    grid = Grid(dim, 9)
    field = ball([0.11, -0.07, 0.05][:dim], 0.57)
    values = values_on(grid, field).requires_grad_(True)
    mesh = marching(values, grid)
    for vertex in [0, mesh.n_vertices // 3, mesh.n_vertices - 1]:
        for end in mesh.edges[vertex].tolist():
            (autograd,) = torch.autograd.grad(
                mesh.vertices[vertex].sum(), values, retain_graph=True
            )
            h = 1e-6
            shifted = []
            for sign in (1, -1):
                moved = values.detach().clone().reshape(-1)
                moved[end] += sign * h
                shifted.append(marching(moved.reshape(grid.shape), grid).vertices[vertex].sum())
            finite = (shifted[0] - shifted[1]) / (2 * h)
            assert float(autograd.reshape(-1)[end]) == pytest.approx(float(finite), abs=1e-7)
        # only the two end values move a vertex
        assert int((autograd != 0).sum()) == 2


def test_a_value_at_the_level_is_inside():
    # s <= level is inside: the centre at exactly 0 is inside, its outside neighbours are not
    grid = Grid(2, 3)
    values = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 0.0, -1.0], [1.0, 1.0, 1.0]])
    mesh = marching_squares(values, grid)
    centre = 4  # flat index of (1, 1)
    assert centre in mesh.edges[:, 0].tolist() and centre not in mesh.edges[:, 1].tolist()
    on_centre = (mesh.edges[:, 0] == centre).nonzero().squeeze(1)
    assert len(on_centre) == 2 and bool((mesh.vertices[on_centre] == 0).all())


def test_grid_points_on_the_level_add_only_zero_length_segments():
    # this ellipse passes through four grid points: find_contours merges the coincident
    # points there, we keep one vertex per crossed edge (zero-length segments between them)
    grid = Grid(2, 41)
    values = values_on(grid, ellipse([0.2, -0.1], [0.7, 0.35]))
    assert int((values == 0).sum()) == 4
    mesh = marching_squares(values, grid)
    theirs = skimage_segments(values, grid)
    lengths = (mesh.vertices[mesh.faces[:, 1]] - mesh.vertices[mesh.faces[:, 0]]).norm(dim=1)
    assert (mesh.n_faces, int((lengths == 0).sum())) == (len(theirs) + 8, 8)
    assert float(mesh.measure()) == pytest.approx(
        float(np.linalg.norm(theirs[:, 1] - theirs[:, 0], axis=1).sum()), rel=1e-12
    )
    assert float(mesh.enclosed()) == pytest.approx(signed_area(theirs), rel=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_a_level_that_misses_the_grid_gives_an_empty_mesh(dim):
    grid = Grid(dim, 5)
    mesh = marching(values_on(grid, ball([0.0] * dim, 0.5)), grid, level=10.0)
    assert (mesh.n_vertices, mesh.n_faces) == (0, 0)
    assert mesh.faces.shape == (0, dim) and mesh.vertices.shape == (0, dim)


@pytest.mark.parametrize(
    "values, grid, message",
    [
        (torch.full((5, 5), float("nan")), Grid(2, 5), "finite"),
        (torch.zeros(5, 5).index_fill(0, torch.tensor([2]), float("inf")), Grid(2, 5), "finite"),
        (torch.zeros(4, 5), Grid(2, 5), "shape"),
        (torch.zeros(5, 5, dtype=torch.long), Grid(2, 5), "floating"),
    ],
)
def test_bad_values_are_refused_in_one_line(values, grid, message):
    with pytest.raises(ValueError, match=message):
        marching(values, grid)


def test_extractors_refuse_the_other_dimension():
    with pytest.raises(ValueError, match="3-D grid"):
        marching_cubes(torch.zeros(5, 5), Grid(2, 5))
    with pytest.raises(ValueError, match="2-D grid"):
        marching_squares(torch.zeros(5, 5, 5), Grid(3, 5))
    with pytest.raises(ValueError, match="level must be finite"):
        marching(torch.zeros(5, 5), Grid(2, 5), level=float("nan"))


@pytest.mark.parametrize("dim", [2, 3])
def test_a_level_is_the_zero_set_of_the_shifted_values(dim):
    grid = Grid(dim, 17)
    values = values_on(grid, ellipse([0.213, -0.087, 0.05][:dim], [0.7, 0.35, 0.5][:dim]))
    at_level = marching(values, grid, level=0.25)
    shifted = marching(values - 0.25, grid)
    assert torch.equal(at_level.faces, shifted.faces) and torch.equal(at_level.edges, shifted.edges)
    assert float((at_level.vertices - shifted.vertices).abs().max()) <= 1e-15
    assert at_level.n_faces > marching(values, grid).n_faces  # a larger surface
