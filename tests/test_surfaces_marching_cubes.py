"""Marching cubes against scikit-image's (Lewiner's) on the same grids: the same vertices,
triangle counts and face curves; closed, oriented, second-order surfaces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from surface_fields import ball, ellipse, saddles, two_balls, values_on

from workbench.metrics import empirical_order
from workbench.surfaces import Grid
from workbench.surfaces.marching import marching_cubes

measure = pytest.importorskip("skimage.measure")

FIELDS_3D = {
    "ball": ball([0.11, -0.07, 0.05], 0.63),
    "ellipsoid": ellipse([0.213, -0.087, 0.05], [0.7, 0.35, 0.5]),
    "two balls": two_balls(3),
    "saddles": saddles(3),
}


def edge_keys(axis: np.ndarray, low: np.ndarray, n: int) -> np.ndarray:
    """One integer per grid edge: its axis and its low end."""
    return (axis * n + low[:, 0]) * n**2 + low[:, 1] * n + low[:, 2]


def our_edge_keys(mesh, n: int) -> np.ndarray:
    ends = np.sort(mesh.edges.numpy(), axis=1)
    step = ends[:, 1] - ends[:, 0]  # 1, n or n^2 along axis 2, 1 or 0
    axis = np.select([step == n**2, step == n], [0, 1], 2)
    return edge_keys(axis, np.stack(np.unravel_index(ends[:, 0], (n,) * 3), axis=1), n)


def skimage_mesh(values: torch.Tensor, grid: Grid):
    """Lewiner's vertices (in index coordinates, float32) with their grid edges, and faces."""
    index, faces, _, _ = measure.marching_cubes(values.numpy(), 0.0)
    index = index.astype(np.float64)
    axis = np.abs(index - np.round(index)).argmax(axis=1)  # the one fractional coordinate
    keys = edge_keys(axis, np.floor(index).astype(np.int64), grid.resolution)
    return grid.lo + index * grid.spacing, keys, faces


def face_curve(faces: np.ndarray, keys: np.ndarray, n: int) -> set:
    """The mesh edges that run along a cell face (not across a cell), as pairs of edge keys.

    Two grid edges lie on a common cell face when they are parallel and one step apart, or
    perpendicular and share an end.
    """
    pairs = np.unique(
        np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0
    )
    axis, rest = np.divmod(keys, n**3)
    low = np.stack(np.unravel_index(rest, (n,) * 3), axis=1)
    high = low + np.eye(3, dtype=np.int64)[axis]
    a, b = pairs[:, 0], pairs[:, 1]
    offset = low[b] - low[a]
    parallel = (axis[a] == axis[b]) & (np.abs(offset).sum(1) == 1)
    share = [(p[a] == q[b]).all(1) for p in (low, high) for q in (low, high)]
    perpendicular = (axis[a] != axis[b]) & np.any(share, axis=0)
    kept = pairs[parallel | perpendicular]
    return {tuple(sorted((int(keys[i]), int(keys[j])))) for i, j in kept}


def oriented_triangles(faces: np.ndarray, keys: np.ndarray) -> set:
    """Triangles as edge-key triples, rotated to start at the smallest (orientation kept)."""
    triples = keys[faces]
    turn = (triples.argmin(axis=1)[:, None] + np.arange(3)) % 3
    return set(map(tuple, np.take_along_axis(triples, turn, axis=1).tolist()))


@pytest.mark.parametrize("name", list(FIELDS_3D))
def test_marching_cubes_matches_skimage(name):
    grid = Grid(3, 33)
    n = grid.resolution
    # skimage computes in float32: give both the same float32-representable values
    values = values_on(grid, FIELDS_3D[name]).float().double()
    assert not bool((values == 0).any())
    mesh = marching_cubes(values, grid)
    points, keys, faces = skimage_mesh(values, grid)
    ours = our_edge_keys(mesh, n)
    # the same crossed edges, one vertex each, at the same place (skimage returns float32)
    assert sorted(ours.tolist()) == sorted(keys.tolist()) and len(set(keys.tolist())) == len(keys)
    order = np.argsort(ours)
    same = order[np.searchsorted(ours[order], keys)]  # our vertex for each of skimage's
    np.testing.assert_allclose(mesh.vertices.numpy()[same], points, rtol=0, atol=2e-7)
    # the same number of triangles and the same curves on every cell face (no face is a
    # saddle here, see the next tests): the surfaces differ only in which diagonal splits a
    # cell's polygon
    assert not ambiguous_faces((values <= 0).numpy())
    assert mesh.n_faces == len(faces)
    assert face_curve(mesh.faces.numpy(), ours, n) == face_curve(faces, keys, n)
    ours_oriented = oriented_triangles(mesh.faces.numpy(), ours)
    theirs_oriented = oriented_triangles(faces, keys)
    assert not ours_oriented & oriented_triangles(faces[:, ::-1], keys)  # none reversed
    assert len(ours_oriented & theirs_oriented) > 0.4 * mesh.n_faces
    # so the area agrees to the diagonal choices' O(h^2) differences, here below 1e-5
    # (measured on our vertices in skimage's triangles, free of its float32 rounding)
    theirs = type(mesh)(mesh.vertices, torch.as_tensor(same[faces].astype(np.int64)), None)
    assert float(mesh.measure()) == pytest.approx(float(theirs.measure()), rel=1e-5)
    if name != "saddles":  # closed surfaces
        assert float(mesh.enclosed()) == pytest.approx(float(theirs.enclosed()), rel=1e-4)


def test_cells_with_one_inside_corner_give_the_same_triangle_as_skimage():
    grid = Grid(3, 33)
    values = values_on(grid, FIELDS_3D["two balls"]).float().double()
    mesh = marching_cubes(values, grid)
    _, keys, faces = skimage_mesh(values, grid)
    ours = oriented_triangles(mesh.faces.numpy(), our_edge_keys(mesh, grid.resolution))
    theirs = oriented_triangles(faces, keys)
    shared = ours & theirs
    assert len(shared) < len(ours)  # some triangulations differ ...
    n = grid.resolution
    inside = (values <= 0).numpy()
    corners = [
        inside[i : n - 1 + i, j : n - 1 + j, k : n - 1 + k]
        for i in (0, 1)
        for j in (0, 1)
        for k in (0, 1)
    ]
    lonely = np.argwhere(np.sum(corners, axis=0) == 1)
    assert len(lonely) > 10
    # ... but never a cell's lone corner: its triangle is the same in both, same orientation
    lone_keys = set()
    for cell in lonely:
        which = [c[tuple(cell)] for c in corners].index(True)
        offset = np.array([which >> 2 & 1, which >> 1 & 1, which & 1])
        lows = cell + offset - np.diag(offset)  # row a: the low end of the corner's axis-a edge
        lone_keys.add(frozenset(edge_keys(np.arange(3), lows, n).tolist()))
    ours_sets = {frozenset(t) for t in ours}
    assert lone_keys <= ours_sets and lone_keys <= {frozenset(t) for t in shared}


def ambiguous_faces(inside: np.ndarray) -> list[frozenset]:
    """Each saddle face of the grid (diagonal corners alike, neighbours not) as its 4 edge keys."""
    n = inside.shape[0]
    found = []
    for normal in range(3):
        u, w = [a for a in range(3) if a != normal]
        step_u, step_w = np.eye(3, dtype=np.int64)[u], np.eye(3, dtype=np.int64)[w]
        corner = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
        corner = corner[(corner[:, u] < n - 1) & (corner[:, w] < n - 1)]
        s = [inside[tuple((corner + d).T)] for d in (0, step_u, step_w, step_u + step_w)]
        saddle = (s[0] == s[3]) & (s[1] == s[2]) & (s[0] != s[1])
        for c in corner[saddle]:
            lows = np.stack([c, c, c + step_w, c + step_u])
            found.append(frozenset(edge_keys(np.array([u, w, u, w]), lows, n).tolist()))
    return found


def test_ambiguous_faces_are_where_lewiner_may_differ():
    # Lewiner resolves a saddle face by the asymptotic decider; we always keep the inside
    # corners connected. Off the saddle faces the surfaces' face curves are the same.
    grid = Grid(3, 33)
    field = saddles(3)
    values = (field(grid.points()) - 0.03).reshape(grid.shape).float().double()
    mesh = marching_cubes(values, grid)
    _, keys, faces = skimage_mesh(values, grid)
    ours = our_edge_keys(mesh, grid.resolution)
    assert sorted(ours.tolist()) == sorted(keys.tolist())  # the vertices never differ
    saddle_faces = ambiguous_faces((values <= 0).numpy())
    differ = face_curve(mesh.faces.numpy(), ours, 33) ^ face_curve(faces, keys, 33)
    assert len(saddle_faces) > 0 and len(differ) > 0
    assert all(any(set(pair) <= face for face in saddle_faces) for pair in differ)
    assert len(differ) <= 4 * len(saddle_faces)  # two segments each way per face


def check_closed(mesh) -> None:
    """Every directed edge in exactly one triangle: closed, manifold along edges, oriented."""
    directed = torch.cat([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]])
    _, counts = torch.unique(directed, dim=0, return_counts=True)
    assert bool((counts == 1).all())
    reverse = torch.unique(directed.flip(1), dim=0)
    assert torch.equal(torch.unique(directed, dim=0), reverse)  # ... and its twin exists


@pytest.mark.parametrize("name, components", [("ball", 1), ("ellipsoid", 1), ("two balls", 2)])
def test_closed_surfaces_are_watertight_spheres_facing_out(name, components):
    grid = Grid(3, 33)
    field = FIELDS_3D[name]
    mesh = marching_cubes(values_on(grid, field), grid)
    check_closed(mesh)
    n_edges = 3 * mesh.n_faces // 2
    assert mesh.n_vertices - n_edges + mesh.n_faces == 2 * components  # Euler: spheres
    # normals point towards s > 0: along the field's gradient, by autograd
    corners = mesh.face_vertices()
    normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    centroid = corners.mean(dim=1).requires_grad_(True)
    (gradient,) = torch.autograd.grad(field(centroid).sum(), centroid)
    assert bool(((normal * gradient).sum(dim=1) > 0).all())


@pytest.mark.parametrize("seed", range(4))
def test_random_fields_give_closed_surfaces(seed):
    # noise on every grid point exercises every case, the ambiguous ones included; an
    # outside border closes the surface
    n = 12
    values = torch.rand(
        (n,) * 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    values = (values - 0.5)[1:-1, 1:-1, 1:-1]
    values = torch.nn.functional.pad(values, (1,) * 6, value=1.0)
    mesh = marching_cubes(values, Grid(3, n))
    assert mesh.n_faces > 1000
    check_closed(mesh)
    assert float(mesh.enclosed()) > 0


def test_sphere_volume_converges_at_second_order():
    resolutions = [9, 17, 33, 65]
    errors = []
    for n in resolutions:
        grid = Grid(3, n)
        volume = float(marching_cubes(values_on(grid, FIELDS_3D["ball"]), grid).enclosed())
        errors.append(abs(volume - 4 / 3 * math.pi * 0.63**3))
    fit = empirical_order(resolutions, errors)
    assert fit.order == pytest.approx(2.0, abs=0.15)


@pytest.mark.parametrize("outside, n_vertices, n_faces", [(1.0, 6, 8), (-1.0, 0, 0)])
def test_a_value_at_the_level_is_inside_as_in_skimage(outside, n_vertices, n_faces):
    # a grid point at exactly 0 among +1s is inside: a collapsed octahedron at the point;
    # among -1s it is inside with them and there is no surface (skimage raises for that)
    values = torch.full((3, 3, 3), outside, dtype=torch.float64)
    values[1, 1, 1] = 0.0
    grid = Grid(3, 3)
    mesh = marching_cubes(values, grid)
    assert (mesh.n_vertices, mesh.n_faces) == (n_vertices, n_faces)
    assert bool((mesh.vertices == 0).all())
    if n_faces:
        index, faces, _, _ = measure.marching_cubes(values.numpy(), 0.0)
        assert (len(index), len(faces)) == (n_vertices, n_faces)
    else:
        with pytest.raises(RuntimeError, match="No surface found"):
            measure.marching_cubes(values.numpy(), 0.0)
