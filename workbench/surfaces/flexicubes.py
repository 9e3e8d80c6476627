"""FlexiCubes-lite: dual marching squares and cubes with learnable per-cell weights.

After Shen, Munkberg, Hasselgren, Yin, Wang, Chen, Gojcic, Fidler, Sharp and Gao, "Flexible
Isosurface Extraction for Gradient-Based Mesh Optimization" (SIGGRAPH 2023, arXiv:2308.05371).
Every cell that the level set crosses gets one dual vertex per surface patch
(`cell_topology`), placed from the cell's own edge crossings:

- crossing of edge (i, j): u_e = (s_j a_j x_i - s_i a_i x_j) / (s_j a_j - s_i a_i), with the
  cell's corner weights a = alpha (alpha = 1: linear interpolation);
- dual vertex: v = sum_e b_e u_e / sum_e b_e over the patch's edges, b = beta (beta = 1: the
  mean of the crossings, Surface Nets' vertex);
- faces: one per sign-changing grid edge inside the grid, joining the dual vertices of the
  cells around it: a segment (2 cells) in 2-D, a quad (4 cells) in 3-D, split into triangles by
  gamma. split="center" (the paper's training mode, differentiable in gamma) adds the point
  (g02 m02 + g13 m13) / (g02 + g13), where m02 is the midpoint of the diagonal v0 v2 and
  g02 = gamma_0 gamma_2, and fans four triangles around it; split="diagonal" (the paper's
  extraction mode) cuts along v0 v2 if g02 > g13, else along v1 v3. In 2-D gamma has nothing to
  split and does not enter.

Grid deformation (the paper's per-grid-point displacement, up to 0.99 of half a cell through
tanh) is opt-in: `FlexiWeights.neutral(grid, deform=True)`. Without it a dual vertex stays in
the hull of the crossings its cell's signs allow, so a 3-D box corner is out of reach unless its
offsets in its cell sum to less than one cell. Measured on the box with half sizes (0.53, 0.37,
0.61) on a 12^3 grid, 80 Adam steps on the Chamfer to 1500 surface points: final Chamfer
(exact distance from the mesh, 20000 points to the mesh) 9.4e-4 for fitted marching, 6.4e-4
for fitted weights (1.5x), 2.0e-4 for weights and deformation (4.7x).

"Lite": no QEF vertex placement, no tetrahedral or adaptive output, and the patch table omits
the interior-tunnel cases (see `cell_topology`).

The weights (`flexi_weights.FlexiWeights`) live per cell: the two cells sharing a grid edge may
cross it at different points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.surfaces.cell_topology import (
    MAX_PATCHES,
    PATCH_TABLES,
    cell_edges,
    corner_offsets,
    edge_index,
)
from workbench.surfaces.flexi_weights import FlexiWeights
from workbench.surfaces.grid import DTYPE, Grid, Mesh

SPLITS = ("center", "diagonal")


@dataclass(frozen=True)
class DualVertices:
    """The dual vertices of a grid and what they were built from.

    positions: (V, D) the dual vertices; cells: (V,) the flat cell index of each;
    vertex_map: (cells, MAX_PATCHES) the vertex of each patch of each cell, -1 where none;
    cases: (cells,) each cell's sign configuration (bit k: corner k inside);
    pair_vertex, pair_crossing: (P,) and (P, D): every (dual vertex, plain linear crossing of
    one of its edges) pair, for L_dev.
    """

    positions: torch.Tensor
    cells: torch.Tensor
    vertex_map: torch.Tensor
    cases: torch.Tensor
    pair_vertex: torch.Tensor
    pair_crossing: torch.Tensor


class _Unweighted:
    """All weights 1 and no deformation, without FlexiWeights' (cells, 2^D + E + 1) tensors
    (43 M numbers at 128^3) and without a graph through them: what weights=None means."""

    def __init__(self, grid: Grid):
        self.dim, self.n_cells = grid.dim, (grid.resolution - 1) ** grid.dim

    def at(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(cells)
        shapes = [(n, 2**self.dim), (n, len(cell_edges(self.dim))), (n,)]
        return tuple(torch.ones(shape, dtype=DTYPE) for shape in shapes)

    def corner_positions(self, grid: Grid, multi_index: torch.Tensor) -> torch.Tensor:
        return grid.lo + grid.spacing * multi_index.to(DTYPE)


def _check(values: torch.Tensor, grid: Grid, weights: FlexiWeights | None) -> FlexiWeights:
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != grid.shape:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"values must be a tensor shaped {grid.shape}, got {shape}")
    if not torch.isfinite(values).all():
        raise ValueError("values must be finite: got NaN or infinity on the grid")
    if weights is None:
        return _Unweighted(grid)
    n_cells = (grid.resolution - 1) ** grid.dim
    if weights.dim != grid.dim or weights.n_cells != n_cells:
        raise ValueError(
            f"weights are for {weights.n_cells} cells in {weights.dim}-D, the grid has "
            f"{n_cells} cells in {grid.dim}-D"
        )
    return weights


def _cases(values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(cells,) every cell's sign configuration, bit k set if corner k is inside (s <= 0)."""
    inside, cells = values.detach() <= 0, values.shape[0] - 1
    cases = torch.zeros((cells,) * values.ndim, dtype=torch.long)
    for k, offset in enumerate(offsets.tolist()):  # 4 or 8 shifted views of the grid
        cases |= inside[tuple(slice(o, o + cells) for o in offset)].long() << k
    return cases.reshape(-1)


def _unravel(flat: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """(N, D) row-major multi-indices of flat indices into a size^D array (by division:
    torch.unravel_index's first call imports torch's symbolic-shape machinery, ~3 s)."""
    return flat[:, None] // _strides(size, dim) % size


def _strides(size: int, dim: int) -> torch.Tensor:
    return torch.tensor([size ** (dim - 1 - d) for d in range(dim)])


def _flat(multi_index: torch.Tensor, size: int) -> torch.Tensor:
    """Row-major flat index of (..., D) multi-indices into a size^D array."""
    return (multi_index * _strides(size, multi_index.shape[-1])).sum(-1)


def dual_vertices(
    values: torch.Tensor, grid: Grid, weights: FlexiWeights | None = None
) -> DualVertices:
    """Every cell's dual vertices from its weighted edge crossings (differentiable)."""
    weights = _check(values, grid, weights)
    values = values.to(DTYPE)
    dim, n = grid.dim, grid.resolution
    offsets, edges = corner_offsets(dim), cell_edges(dim)
    cases = _cases(values, offsets)
    active = ((cases > 0) & (cases < 2 ** (2**dim) - 1)).nonzero().squeeze(1)
    origins = _unravel(active, n - 1, dim)  # only the crossed cells: few on a large grid
    corners = origins[:, None, :] + offsets  # (A, K, D) multi-indices
    corner_values = values.reshape(-1)[_flat(corners, n)]
    patches = PATCH_TABLES[dim][cases[active]]  # (A, E)
    crossing = patches >= 0

    # the fraction t along each edge from its start corner, with and without alpha
    s_start, s_end = corner_values[:, edges[:, 0]], corner_values[:, edges[:, 1]]
    alpha, beta, _ = weights.at(active)
    weighted_start, weighted_end = s_start * alpha[:, edges[:, 0]], s_end * alpha[:, edges[:, 1]]
    ones = torch.ones_like(s_start)
    # a non-crossing edge may have equal values: give it a safe denominator (t is unused there)
    t = weighted_start / torch.where(crossing, weighted_start - weighted_end, ones)
    t_plain = s_start / torch.where(crossing, s_start - s_end, ones)
    start = weights.corner_positions(grid, corners[:, edges[:, 0]])  # (A, E, D)
    run = weights.corner_positions(grid, corners[:, edges[:, 1]]) - start
    crossings = start + t[..., None] * run
    plain = start + t_plain[..., None] * run

    members = (patches[..., None] == torch.arange(MAX_PATCHES[dim])).to(DTYPE)  # (A, E, P)
    beta = beta[..., None] * members
    total = beta.sum(1)  # (A, P)
    exists = members.sum(1) > 0
    sums = torch.einsum("aep,aed->apd", beta, crossings)
    positions = (sums / torch.where(exists, total, torch.ones_like(total))[..., None])[exists]

    vertex_map = torch.full((len(cases), MAX_PATCHES[dim]), -1, dtype=torch.long)
    active_map = torch.full(exists.shape, -1, dtype=torch.long)
    active_map[exists] = torch.arange(int(exists.sum()))
    vertex_map[active] = active_map
    rows, edge_of = crossing.nonzero(as_tuple=True)
    return DualVertices(
        positions=positions,
        cells=active[exists.nonzero(as_tuple=True)[0]],
        vertex_map=vertex_map,
        cases=cases,
        pair_vertex=active_map[rows, patches[rows, edge_of]],
        pair_crossing=plain[rows, edge_of],
    )


def _ring(dim: int, axis: int) -> list[tuple[int, ...]]:
    """Offsets (subtracted along the other axes) of the cells around a grid edge along `axis`,
    in the order whose segment (2-D) or quad (3-D) faces +axis, i.e. out of an inside start."""
    if dim == 2:
        return [(1,), (0,)] if axis == 0 else [(0,), (1,)]
    return [(1, 1), (0, 1), (0, 0), (1, 0)]  # counter-clockwise seen from +axis, (b, c) cyclic


def _dual_polygons(values: torch.Tensor, grid: Grid, dual: DualVertices) -> torch.Tensor:
    """(F, 2^(D-1)) the dual vertices around every sign-changing grid edge, facing outward."""
    dim, n = grid.dim, grid.resolution
    inside = values.detach() <= 0
    local_edge, polygons = edge_index(dim), []
    for axis in range(dim):  # a loop over the D axes, not over edges
        others = [(axis + k) % dim for k in range(1, dim)]  # cyclic: (b, c) with b x c = axis
        start, end = inside.narrow(axis, 0, n - 1), inside.narrow(axis, 1, n - 1)
        interior = torch.ones_like(start)
        for other in others:  # the grid's boundary edges have cells on one side only
            interior.narrow(other, 0, 1).fill_(False)
            interior.narrow(other, n - 1, 1).fill_(False)
        points = ((start != end) & interior).nonzero()
        ring = []
        for offset in _ring(dim, axis):
            shift = torch.zeros(dim, dtype=torch.long)
            corner = 0
            for other, o in zip(others, offset, strict=True):
                shift[other] = o
                corner |= o << other
            cell = _flat(points - shift, n - 1)
            patch = PATCH_TABLES[dim][dual.cases[cell], local_edge[axis, corner]]
            ring.append(dual.vertex_map[cell, patch])
        polygon = torch.stack(ring, dim=1)
        outward = start[tuple(points.T)]  # inside at the start: the ring already faces out
        polygons.append(torch.where(outward[:, None], polygon, polygon.flip(1)))
    return torch.cat(polygons)


def _split_quads(quads: torch.Tensor, positions: torch.Tensor, gamma: torch.Tensor, split: str):
    """Triangles (and the vertices they add) from outward-facing quads (v0, v1, v2, v3)."""
    g = gamma[quads]  # (Q, 4) each dual vertex's cell's gamma
    g02, g13 = g[:, 0] * g[:, 2], g[:, 1] * g[:, 3]
    if split == "diagonal":
        along_02 = (g02 > g13)[:, None]
        first = torch.where(along_02, quads[:, [0, 1, 2]], quads[:, [0, 1, 3]])
        second = torch.where(along_02, quads[:, [0, 2, 3]], quads[:, [1, 2, 3]])
        return positions, torch.cat([first, second])
    v = positions[quads]
    mid02, mid13 = (v[:, 0] + v[:, 2]) / 2, (v[:, 1] + v[:, 3]) / 2
    centers = (g02[:, None] * mid02 + g13[:, None] * mid13) / (g02 + g13)[:, None]
    center_ids = torch.arange(len(quads)) + len(positions)
    fans = [torch.stack([quads[:, k], quads[:, (k + 1) % 4], center_ids], 1) for k in range(4)]
    return torch.cat([positions, centers]), torch.stack(fans, 1).reshape(-1, 3)


def flexicubes(
    values: torch.Tensor, grid: Grid, weights: FlexiWeights | None = None, split: str = "center"
) -> Mesh:
    """The dual mesh of {values = 0}: segments (2-D) or triangles (3-D), oriented outward.

    Differentiable in values and in the weights; the connectivity follows the signs only.
    A level set that crosses no cell gives an empty mesh (no vertices, no faces).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    weights = _check(values, grid, weights)
    dual = dual_vertices(values, grid, weights)
    polygons = _dual_polygons(values, grid, dual)
    if grid.dim == 2:
        return Mesh(dual.positions, polygons)
    return Mesh(*_split_quads(polygons, dual.positions, weights.at(dual.cells)[2], split))


def deviation_loss(
    values: torch.Tensor, grid: Grid, weights: FlexiWeights | None = None
) -> torch.Tensor:
    """L_dev: how unequal each dual vertex's distances to its edge crossings are.

    For dual vertex v with crossings {x_e} (plain linear interpolation, as the reference
    implementation measures them), d_e = |x_e - v|; L_dev is the mean over all (vertex,
    crossing) pairs of |d_e - mean_e' d_e'|, the per-vertex mean absolute deviation. It is zero
    exactly when every dual vertex is equidistant to its crossings (the centre of a circle
    through them), and 0 for an empty level set.
    """
    dual = dual_vertices(values, grid, weights)
    if len(dual.pair_vertex) == 0:
        return dual.positions.sum() * 0.0
    distance = (dual.pair_crossing - dual.positions[dual.pair_vertex]).norm(dim=1)
    count = torch.bincount(dual.pair_vertex, minlength=len(dual.positions)).to(DTYPE)
    mean = torch.zeros(len(dual.positions), dtype=DTYPE).index_add(0, dual.pair_vertex, distance)
    return (distance - (mean / count)[dual.pair_vertex]).abs().mean()
