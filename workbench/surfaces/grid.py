"""The two objects every surface method shares: a regular sampling grid and an extracted mesh.

Conventions, for every extractor and field in `workbench.surfaces`:
- A field s maps points (N, D) to values (N,), float64; the surface is its zero level set,
  s < 0 inside and s > 0 outside (a signed distance field's convention). A grid point with
  s exactly 0 counts as inside (s <= level), in every extractor, as in scikit-image.
- A grid holds n points per axis over [lo, hi]^D. Its values are indexed [i, j] or [i, j, k]
  with axis 0 along x ("ij" indexing), which is also how scikit-image reads a 2-D or 3-D array,
  so a vertex at index coordinates c sits at lo + c * spacing in both.
- A mesh's faces are segments (2-D) or triangles (3-D), oriented so that the outward normal
  points towards s > 0 (see `Mesh`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench import _torch  # noqa: F401  (single-threaded torch; see the module)

DTYPE = torch.float64


@dataclass(frozen=True)
class Grid:
    """n points per axis over [lo, hi]^dim: the corners of (n - 1)^dim square or cubic cells."""

    dim: int
    resolution: int
    lo: float = -1.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"a grid is 2-D or 3-D, got dim={self.dim}")
        if not isinstance(self.resolution, int) or self.resolution < 3:
            raise ValueError(
                f"a grid needs at least 3 points per axis, got resolution={self.resolution!r}"
            )
        if not float(self.lo) < float(self.hi):
            raise ValueError(f"a grid needs lo < hi, got lo={self.lo}, hi={self.hi}")

    @property
    def spacing(self) -> float:
        return (self.hi - self.lo) / (self.resolution - 1)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.resolution,) * self.dim

    def axis(self) -> torch.Tensor:
        """(n,) coordinates of the points along any axis."""
        return torch.linspace(self.lo, self.hi, self.resolution, dtype=DTYPE)

    def points(self) -> torch.Tensor:
        """(n^dim, dim) every grid point, in the row-major order of `shape` ("ij" indexing)."""
        axes = torch.meshgrid(*[self.axis()] * self.dim, indexing="ij")
        return torch.stack([a.reshape(-1) for a in axes], dim=1)

    def sample(self, field) -> torch.Tensor:
        """The field's values on the grid, shaped `shape` (differentiable in the field)."""
        return field(self.points()).reshape(self.shape)

    def to_world(self, index_coordinates: torch.Tensor) -> torch.Tensor:
        """Index coordinates (fractional, as scikit-image returns them) to positions."""
        return self.lo + index_coordinates * self.spacing


@dataclass(frozen=True)
class Mesh:
    """An extracted iso-surface.

    vertices: (V, dim) float64 positions (differentiable in whatever produced them).
    faces: (F, dim) long: vertex indices of a segment (2-D) or a triangle (3-D). Segments run
        with the inside (s < 0) on their left, i.e. counter-clockwise around a closed inside;
        triangles are counter-clockwise seen from outside, so cross(b - a, c - a) points out.
    edges: (V, 2) long or None: for a vertex placed on a grid edge (primal marching), the flat
        grid indices (into `Grid.points()`) of the edge's two ends, the inside one first.
        Dual methods (FlexiCubes) place vertices inside cells and leave it None.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    edges: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return self.vertices.shape[1]

    @property
    def n_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def n_faces(self) -> int:
        return self.faces.shape[0]

    def face_vertices(self) -> torch.Tensor:
        """(F, dim, dim) the positions of every face's vertices."""
        return self.vertices[self.faces]

    def measure(self) -> torch.Tensor:
        """Total length (2-D) or area (3-D) of the faces, differentiable."""
        corners = self.face_vertices()
        if self.dim == 2:
            return (corners[:, 1] - corners[:, 0]).norm(dim=1).sum()
        cross = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        return 0.5 * cross.norm(dim=1).sum()

    def enclosed(self) -> torch.Tensor:
        """Signed area (2-D) or volume (3-D) inside a closed, consistently oriented mesh."""
        corners = self.face_vertices()
        if self.dim == 2:
            a, b = corners[:, 0], corners[:, 1]
            return 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()
        a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
        return (a * torch.linalg.cross(b, c)).sum() / 6.0
