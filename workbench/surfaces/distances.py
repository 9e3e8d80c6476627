"""Distances between an extracted surface and a target: Chamfer and Hausdorff on point samples.

A mesh is compared through points spread over its faces (`sample_faces`), not its vertices
alone: marching places vertices only on grid edges, so a vertex-only distance would reward a
mesh for where its vertices happen to sit rather than for where its surface is.
"""

from __future__ import annotations

import torch

from workbench.surfaces.grid import DTYPE, Mesh


def sample_faces(mesh: Mesh, per_face: int = 4, seed: int = 0) -> torch.Tensor:
    """(F * per_face, dim) points on the faces at fixed barycentric weights (differentiable).

    The weights depend only on (per_face, seed), so the same mesh always gives the same
    points, and the points move with the vertices under autograd.
    """
    if mesh.n_faces == 0:
        raise ValueError("the mesh has no faces: the level set does not cross the grid")
    if per_face < 1:
        raise ValueError(f"per_face must be >= 1, got {per_face}")
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(per_face, mesh.dim, generator=generator, dtype=DTYPE)
    if mesh.dim == 3:
        # fold the unit square onto the triangle so the points are uniform on it
        outside = weights[:, 0] + weights[:, 1] > 1
        weights[outside, :2] = 1 - weights[outside, :2].flip(1)
        weights[:, 2] = 1 - weights[:, 0] - weights[:, 1]
    else:
        weights[:, 1] = 1 - weights[:, 0]
    corners = mesh.face_vertices()  # (F, dim, dim): face, corner, coordinate
    # a sum of products, not einsum: einsum goes through a BLAS product whose rounding
    # varies by CPU, and a fit's end can depend on the last bit of its points
    points = (weights[None, :, :, None] * corners[:, None, :, :]).sum(dim=2)
    return points.reshape(-1, mesh.dim)


def _nearest_squared(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(len(a),) squared distance from each point of a to its nearest point of b.

    The nearest neighbours are found without autograd, then only the matched pairs are
    differentiated: the same value and gradient as differentiating the min over all pairs
    (the min's gradient is its argmin's), without back-propagating through an (N, M) matrix.
    """
    # Distances from differences, not by the matrix-product shortcut cdist takes for large
    # sets: the shortcut runs through BLAS, whose rounding varies by CPU, and could pick
    # another of two nearly tied neighbours on another machine.
    with torch.no_grad():
        nearest = torch.cat(
            [
                torch.cdist(part, b, compute_mode="donot_use_mm_for_euclid_dist").argmin(dim=1)
                for part in a.split(chunk)
            ]
        )
    return (a - b[nearest]).pow(2).sum(dim=1)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(
            f"distances take two non-empty point sets (N, D) and (M, D), "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def chamfer_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer distance: mean squared nearest distance a -> b plus b -> a.

    Squared, as in FlexiCubes' and Kaolin's Chamfer losses; differentiable in both sets.
    """
    _check_pair(a, b)
    return _nearest_squared(a, b).mean() + _nearest_squared(b, a).mean()


def hausdorff_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Symmetric Hausdorff distance: the largest nearest distance, either way (not squared)."""
    _check_pair(a, b)
    with torch.no_grad():
        worst = torch.maximum(_nearest_squared(a, b).max(), _nearest_squared(b, a).max())
    return float(worst.sqrt())
