"""Case tables for marching squares and marching cubes, derived from the cell's geometry.

Nothing here is typed in by hand: each of the 2^(2^D) sign patterns of a cell's corners is
turned into segments (2-D) or triangles (3-D) by walking the cell's faces.

A cell's corner c (0 .. 2^D - 1) sits at offset bit d of c along axis d. A cell edge joins
two corners that differ in one bit. A face (the square itself in 2-D, each of the cube's six
faces in 3-D) is walked counter-clockwise seen from outside the cell (from +z in 2-D). Where
the walk steps from an inside corner to an outside one it crosses the surface leaving the
inside ("exit"); the segment on that face runs from the exit to the next crossing of the walk
(an "entry"). This puts the inside on the segment's left seen from outside the cell, which is
the 2-D convention (inside on the left), and it pairs the crossings of a saddle face so that
its two inside corners stay connected: scikit-image's `find_contours(fully_connected="low")`.
The rule depends on the face's four corners only, so two cells sharing a face draw the same
segments on it (in opposite directions), and the surface is closed.

In 3-D the face segments of a cell link into closed loops (each crossed edge lies on two faces:
it ends a segment on one and starts one on the other). Each loop is fanned into triangles,
from an apex chosen so that no fan diagonal joins two vertices of a common face (such a
diagonal could also be drawn by the neighbour across that face, and the edge would then belong
to four triangles); the loop's winding is reversed so that triangles are counter-clockwise
seen from outside (their normal points towards s > 0).
"""

from __future__ import annotations

import itertools

import torch

from workbench.surfaces.cell_topology import cell_edges


def _faces(dim: int) -> list[list[int]]:
    """Each face's corners in counter-clockwise order seen from outside the cell."""
    if dim == 2:
        return [[0b00, 0b01, 0b11, 0b10]]
    faces = []
    for axis, side in itertools.product(range(3), (0, 1)):
        # (axis + 1, axis + 2) is right-handed about +axis: counter-clockwise seen from +axis
        b, c = 1 << ((axis + 1) % 3), 1 << ((axis + 2) % 3)
        base = side << axis
        loop = [base, base | b, base | b | c, base | c]
        faces.append(loop if side else loop[::-1])
    return faces


def _face_segments(loop: list[int], inside: list[bool], edge_index) -> list[tuple[int, int]]:
    """(exit edge, entry edge) segments on one face, each exit joined to the next crossing."""
    steps = list(zip(loop, loop[1:] + loop[:1], strict=True))
    crossings = [k for k, (a, b) in enumerate(steps) if inside[a] != inside[b]]
    segments = []
    for position, k in enumerate(crossings):
        a, _ = steps[k]
        if inside[a]:  # an exit: the walk leaves the inside here
            following = crossings[(position + 1) % len(crossings)]
            segments.append((edge_index(*steps[k]), edge_index(*steps[following])))
    return segments


def _edge_lookup(dim: int):
    index = {frozenset(edge): k for k, edge in enumerate(cell_edges(dim).tolist())}
    return lambda a, b: index[frozenset((a, b))]


def _loops(successor: dict[int, int]) -> list[list[int]]:
    """The cycles of a permutation given as {edge: next edge}, each from its smallest edge."""
    loops, seen = [], set()
    for start in sorted(successor):
        if start in seen:
            continue
        loop = [start]
        while successor[loop[-1]] != start:
            loop.append(successor[loop[-1]])
        seen.update(loop)
        loops.append(loop)
    return loops


def _fan(loop: list[int], cofacial) -> list[tuple[int, int, int]]:
    """Triangles of a loop fanned from the first apex whose diagonals cross the cell's inside."""
    n = len(loop)
    for shift in range(n):
        turned = loop[shift:] + loop[:shift]
        if not any(cofacial(turned[0], turned[k]) for k in range(2, n - 1)):
            break
    else:
        raise AssertionError(f"no fan of the loop {loop} keeps its diagonals off the faces")
    # the face walk runs clockwise seen from outside the surface: reverse each triangle
    return [(turned[0], turned[k + 1], turned[k]) for k in range(1, n - 1)]


def _cofacial_test():
    """Whether two cube edges lie on a common face."""
    faces = [set(face) for face in _faces(3)]
    edges = cell_edges(3).tolist()
    return lambda e, f: any(set(edges[e]) | set(edges[f]) <= face for face in faces)


def _case_faces(case: int, dim: int, cofacial) -> list[tuple[int, ...]]:
    inside = [bool(case >> corner & 1) for corner in range(1 << dim)]
    edge_index = _edge_lookup(dim)
    segments = [s for loop in _faces(dim) for s in _face_segments(loop, inside, edge_index)]
    if dim == 2:
        return segments
    loops = _loops(dict(segments))
    return [triangle for loop in loops for triangle in _fan(loop, cofacial)]


def case_table(dim: int) -> torch.Tensor:
    """(2^(2^dim), max faces, dim) long: each case's faces as cell-edge indices, -1 padded.

    Case bit c is set when corner c is inside.
    """
    cofacial = _cofacial_test() if dim == 3 else None
    cases = [_case_faces(case, dim, cofacial) for case in range(1 << (1 << dim))]
    width = max(len(faces) for faces in cases)
    table = torch.full((len(cases), width, dim), -1, dtype=torch.long)
    for case, faces in enumerate(cases):
        if faces:
            table[case, : len(faces)] = torch.tensor(faces, dtype=torch.long)
    return table
