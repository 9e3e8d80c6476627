"""Marching squares and marching cubes in torch: the primal extraction of a level set.

Every grid edge whose two ends lie on opposite sides of the level carries exactly one vertex,
shared by all the cells around that edge, so the mesh is watertight. The vertex sits where the
linear interpolant of the two end values crosses the level,

    v = x_a + t (x_b - x_a),   t = (s_a - level) / (s_a - s_b),

which is differentiable in the values by autograd (the MeshSDF gradient goes further: it
carries a vertex's motion to the field's parameters, see `workbench.surfaces.meshsdf`).

Which side a value is on: s <= level is inside, s > level is outside (as in scikit-image's
marching cubes). A value exactly at the level therefore puts its grid point inside, and the
vertices on its edges to outside neighbours land on the point itself (t = 0).

Ambiguous cells follow one rule on every face, that the inside corners of a saddle face stay
connected (scikit-image's `find_contours(fully_connected="low")`); see `marching_tables`.
Against scikit-image's marching cubes (Lewiner's) on the same values: the same vertices and
triangle counts and the same curve on every non-saddle cell face; Lewiner decides saddle faces
by the asymptotic decider and splits some polygons along the other diagonal (so areas and
volumes differ at O(h^2)); it also computes in float32.
Everything is vectorized: the cases of all cells at once, one table look-up, one gather.
"""

from __future__ import annotations

import torch

from workbench.surfaces.cell_topology import cell_edges, corner_offsets
from workbench.surfaces.grid import DTYPE, Grid, Mesh
from workbench.surfaces.marching_tables import case_table

_TABLES = {dim: case_table(dim) for dim in (2, 3)}
_CELL_EDGES = {dim: cell_edges(dim) for dim in (2, 3)}


def _check(values, grid: Grid, level: float) -> torch.Tensor:
    values = torch.as_tensor(values)
    if not values.is_floating_point():
        raise ValueError(f"values must be floating point, got {values.dtype}")
    values = values.to(DTYPE)
    if tuple(values.shape) != grid.shape:
        raise ValueError(
            f"values must have the grid's shape {grid.shape}, got {tuple(values.shape)}"
        )
    if not bool(torch.isfinite(values).all()):
        raise ValueError("values must be finite (NaN or inf found)")
    if not torch.isfinite(torch.as_tensor(float(level))):
        raise ValueError(f"level must be finite, got {level}")
    return values


def _axis_slices(dim: int, axis: int, high: bool) -> tuple[slice, ...]:
    """The ends of every grid edge along `axis`: all points but the last (or the first)."""
    return tuple(
        (slice(1, None) if high else slice(None, -1)) if d == axis else slice(None)
        for d in range(dim)
    )


def _crossed_edges(inside: torch.Tensor) -> list[torch.Tensor]:
    """Per axis, the flat ids (into that axis's edge array) of edges whose ends differ."""
    dim = inside.ndim
    return [
        (inside[_axis_slices(dim, a, False)] != inside[_axis_slices(dim, a, True)])
        .reshape(-1)
        .nonzero()
        .squeeze(1)
        for a in range(dim)
    ]


def _edge_shape(n: int, dim: int, axis: int) -> tuple[int, ...]:
    return tuple(n - 1 if d == axis else n for d in range(dim))


def _strides(shape: tuple[int, ...]) -> torch.Tensor:
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    return torch.tensor(strides, dtype=torch.long)


def _unravel(flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(N, dim) multi-indices of flat row-major indices.

    By division, not torch.unravel_index: its first call imports torch's symbolic-shape
    machinery, about 3 s.
    """
    return flat.unsqueeze(1) // _strides(shape) % torch.tensor(shape, dtype=torch.long)


def _vertices(values: torch.Tensor, grid: Grid, level: float, inside, crossed):
    """Positions (V, dim) and inside-first end points (V, 2) of the crossed edges, axis by axis.

    Vertex ids follow the same order: axis 0's crossed edges first, each axis in flat order.
    """
    dim, n = grid.dim, grid.resolution
    point_strides = _strides(grid.shape)
    flat_values, flat_inside = values.reshape(-1), inside.reshape(-1)
    positions, ends = [], []
    for axis, ids in enumerate(crossed):
        low = _unravel(ids, _edge_shape(n, dim, axis))  # the edge's low end, as a grid index
        a = low @ point_strides
        b = a + point_strides[axis]
        s_a, s_b = flat_values[a], flat_values[b]
        t = (s_a - level) / (s_a - s_b)
        step = torch.zeros(dim, dtype=DTYPE)
        step[axis] = 1.0
        positions.append(grid.to_world(low.to(DTYPE) + t.unsqueeze(1) * step))
        a_inside = flat_inside[a].unsqueeze(1)
        ends.append(torch.where(a_inside, torch.stack([a, b], 1), torch.stack([b, a], 1)))
    return torch.cat(positions), torch.cat(ends)


def _cell_faces(inside: torch.Tensor, crossed: list[torch.Tensor], n: int) -> torch.Tensor:
    """(F, dim) vertex ids of every face the case table gives the cells that the level crosses."""
    dim = inside.ndim
    offsets = corner_offsets(dim)
    case = torch.zeros((n - 1,) * dim, dtype=torch.uint8)
    for corner, offset in enumerate(offsets.tolist()):
        corner_cells = tuple(slice(o, n - 1 + o) for o in offset)
        case |= inside[corner_cells].to(torch.uint8) << corner
    full = (1 << (1 << dim)) - 1
    active = ((case != 0) & (case != full)).reshape(-1).nonzero().squeeze(1)
    table = _TABLES[dim][case.reshape(-1)[active].long()]  # (A, faces per cell, dim)
    kept = table[..., 0] >= 0
    cell_edge = table[kept]  # (F, dim) cell-edge ids
    cell = _unravel(active, (n - 1,) * dim).unsqueeze(1).expand(-1, table.shape[1], -1)[kept]
    return _global_vertex(cell, cell_edge, crossed, n, dim)


def _global_vertex(cell, cell_edge, crossed, n: int, dim: int) -> torch.Tensor:
    """Vertex ids of cell edges: the edge's axis and low end, then its rank among crossed ones.

    A rank by binary search in the (sorted) crossed ids, rather than a look-up array over all
    3 n^3 grid edges: the crossed ones are O(n^2).
    """
    low_corner = _CELL_EDGES[dim][cell_edge, 0]
    axis = cell_edge // (1 << (dim - 1))  # `cell_edges` lists 2^(dim-1) edges per axis in turn
    low = cell.unsqueeze(1) + corner_offsets(dim)[low_corner]  # (F, dim, dim)
    vertex = torch.empty(cell_edge.shape, dtype=torch.long)
    first = 0
    for a, ids in enumerate(crossed):
        on_axis = axis == a
        flat = low[on_axis] @ _strides(_edge_shape(n, dim, a))
        vertex[on_axis] = first + torch.searchsorted(ids, flat)
        first += len(ids)
    return vertex


def _extract(values, grid: Grid, level: float, dim: int) -> Mesh:
    if grid.dim != dim:
        raise ValueError(f"this extractor takes a {dim}-D grid, got a {grid.dim}-D one")
    values = _check(values, grid, level)
    inside = values.detach() <= level
    crossed = _crossed_edges(inside)
    vertices, ends = _vertices(values, grid, float(level), inside, crossed)
    faces = _cell_faces(inside, crossed, grid.resolution)
    return Mesh(vertices=vertices, faces=faces, edges=ends)


def marching_squares(values, grid: Grid, level: float = 0.0) -> Mesh:
    """The level set {s = level} of values (n, n) on a 2-D grid as segments, inside on the left."""
    return _extract(values, grid, level, 2)


def marching_cubes(values, grid: Grid, level: float = 0.0) -> Mesh:
    """The level set {s = level} of values (n, n, n) as triangles, CCW seen from outside."""
    return _extract(values, grid, level, 3)


def marching(values, grid: Grid, level: float = 0.0) -> Mesh:
    """Marching squares or cubes, by the grid's dimension."""
    return _extract(values, grid, level, grid.dim)
