"""The combinatorics of one grid cell for dual marching: its corners, its edges, and which
crossings of a sign configuration belong to the same surface patch.

A cell of a 2-D or 3-D grid has 2^D corners, numbered so that bit d of corner k is its offset
along axis d, and D * 2^(D-1) edges (4 or 12), numbered axis by axis, each running from the
corner with bit d clear to the one with it set.

Patches (one dual vertex each). The surface inside a cell is cut by the cell's faces (2-D: the
square itself; 3-D: its six squares). On every square the sign-changing edges come in pairs
joined by a curve on that square: two crossings are joined; four (an ambiguous square, signs
alternating around it) are paired around each inside corner, so the inside corners stay apart.
The patches of a cell are the groups of crossings linked through its squares. The rule depends
only on the square's own four values, so the two cells sharing a square pair its crossings
alike and the dual mesh is closed. Every crossing lies on exactly two of a cube's squares and is
paired once on each, so each 3-D patch is one cycle of crossings: a disk, one manifold vertex.
This is the table Dual Marching Cubes uses, derived from that rule rather than listed, except
that it never joins two inside corners through the cube's interior (the paper's extra cases
for such tunnels are left out).

The tables are built once at import by enumerating the 16 or 256 sign configurations (a loop
over configurations, not over cells).
"""

from __future__ import annotations

import torch


def corner_offsets(dim: int) -> torch.Tensor:
    """(2^dim, dim) long: corner k's offset from the cell's origin, bit d along axis d."""
    corners = torch.arange(2**dim)
    return torch.stack([(corners >> d) & 1 for d in range(dim)], dim=1)


def _edge_list(dim: int) -> list[tuple[int, int, int]]:
    """(axis, start corner, end corner) of every cell edge, axis by axis."""
    return [
        (axis, k, k | 1 << axis) for axis in range(dim) for k in range(2**dim) if not k >> axis & 1
    ]


def cell_edges(dim: int) -> torch.Tensor:
    """(E, 2) long: the two corners of every cell edge, the lower one first."""
    return torch.tensor([(start, end) for _, start, end in _edge_list(dim)])


def edge_axes(dim: int) -> torch.Tensor:
    """(E,) long: the axis every cell edge runs along."""
    return torch.tensor([axis for axis, _, _ in _edge_list(dim)])


def edge_index(dim: int) -> torch.Tensor:
    """(dim, 2^dim) long: the cell edge leaving corner k along an axis (-1 if none does)."""
    table = torch.full((dim, 2**dim), -1, dtype=torch.long)
    for e, (axis, start, _) in enumerate(_edge_list(dim)):
        table[axis, start] = e
    return table


def _squares(dim: int) -> list[list[int]]:
    """The edge indices of each square of the cell, around the square (2-D: the cell)."""
    edges = _edge_list(dim)
    lookup = {(start, end): e for e, (_, start, end) in enumerate(edges)}
    squares = []
    for fixed in range(dim) if dim == 3 else [None]:
        for side in (0, 1) if dim == 3 else [None]:
            corners = [k for k in range(2**dim) if fixed is None or (k >> fixed & 1) == side]
            squares.append([lookup[(i, j)] for i in corners for j in corners if (i, j) in lookup])
    return squares


def _patches(dim: int, inside: list[bool]) -> list[int]:
    """Patch id of every cell edge under one sign configuration (-1: the edge does not cross)."""
    edges = _edge_list(dim)
    crossing = [inside[start] != inside[end] for _, start, end in edges]
    parent = list(range(len(edges)))

    def root(e: int) -> int:
        while parent[e] != e:
            e = parent[e]
        return e

    for square in _squares(dim):
        cut = [e for e in square if crossing[e]]
        if len(cut) == 2:
            pairs = [cut]
        else:  # 0 or 4 crossings: pair the edges meeting at each inside corner
            pairs = [
                [e for e in cut if corner in edges[e][1:]]
                for corner in {c for e in cut for c in edges[e][1:]}
                if inside[corner]
            ]
        for first, second in pairs:
            parent[root(first)] = root(second)
    roots = sorted({root(e) for e in range(len(edges)) if crossing[e]})
    return [roots.index(root(e)) if crossing[e] else -1 for e in range(len(edges))]


def patch_table(dim: int) -> torch.Tensor:
    """(2^(2^dim), E) long: patch id of every edge per configuration (bit k: corner k inside)."""
    n_corners = 2**dim
    return torch.tensor(
        [
            _patches(dim, [bool(case >> k & 1) for k in range(n_corners)])
            for case in range(2**n_corners)
        ]
    )


MAX_PATCHES = {2: 2, 3: 4}  # most patches any configuration has (asserted in the tests)
PATCH_TABLES = {dim: patch_table(dim) for dim in (2, 3)}
