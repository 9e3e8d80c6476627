"""FlexiCubes' learnable parameters: per-cell weights and optional grid deformation.

Positive through w = 1 + 0.99 tanh(raw), all three of alpha, beta and gamma (the reference
implementation uses a sigmoid for gamma; only ratios of gamma matter, so both do the same job),
as in Shen et al. 2023 (arXiv:2308.05371): weights in (0.01, 1.99), never zero or negative.
"""

from __future__ import annotations

import torch

from workbench.surfaces.cell_topology import cell_edges
from workbench.surfaces.grid import DTYPE, Grid

WEIGHT_SCALE = 0.99  # the paper's: weights in (0.01, 1.99), never zero or negative


def _positive(raw: torch.Tensor) -> torch.Tensor:
    return 1 + WEIGHT_SCALE * torch.tanh(raw)


class FlexiWeights(torch.nn.Module):
    """Per-cell weights: alpha on the 2^D corners, beta on the edges, gamma per cell.

    The parameters are the unconstrained raw values; `alpha`, `beta`, `gamma` are the positive
    weights 1 + 0.99 tanh(raw). Cells are in the row-major order of the (n - 1)^D cell grid,
    corners and edges in `cell_topology`'s numbering. raw_deform, optional, (n^D, D): each grid
    point's displacement, 0.99 (h / 2) tanh(raw), in `Grid.points()` order.
    """

    def __init__(self, raw_alpha, raw_beta, raw_gamma, raw_deform=None):
        super().__init__()
        self.raw_alpha = torch.nn.Parameter(torch.as_tensor(raw_alpha, dtype=DTYPE).clone())
        self.raw_beta = torch.nn.Parameter(torch.as_tensor(raw_beta, dtype=DTYPE).clone())
        self.raw_gamma = torch.nn.Parameter(torch.as_tensor(raw_gamma, dtype=DTYPE).clone())
        n_cells, n_corners = self.raw_alpha.shape if self.raw_alpha.ndim == 2 else (0, 0)
        dim = {4: 2, 8: 3}.get(n_corners)
        if dim is None or self.raw_beta.shape != (n_cells, len(cell_edges(dim))):
            raise ValueError(
                "FlexiWeights take alpha (cells, 4 or 8), beta (cells, 4 or 12), gamma (cells,),"
                f" got {tuple(self.raw_alpha.shape)}, {tuple(self.raw_beta.shape)}"
            )
        if self.raw_gamma.shape != (n_cells,):
            raise ValueError(f"gamma must have shape ({n_cells},), got {tuple(raw_gamma.shape)}")
        self.dim = dim
        self.raw_deform = None
        if raw_deform is not None:
            self.raw_deform = torch.nn.Parameter(torch.as_tensor(raw_deform, dtype=DTYPE).clone())
            points = (round(n_cells ** (1 / dim)) + 1) ** dim
            if self.raw_deform.shape != (points, dim):
                raise ValueError(
                    f"deform must have shape ({points}, {dim}), got {tuple(self.raw_deform.shape)}"
                )

    @classmethod
    def neutral(cls, grid: Grid, deform: bool = False) -> FlexiWeights:
        """All weights 1: plain dual marching, each dual vertex the mean of its crossings.

        deform=True adds the paper's grid-point displacements (zero to start), which lets a
        dual vertex leave the hull of its undeformed cell's crossings.
        """
        n_cells = (grid.resolution - 1) ** grid.dim
        return cls(
            torch.zeros(n_cells, 2**grid.dim),
            torch.zeros(n_cells, len(cell_edges(grid.dim))),
            torch.zeros(n_cells),
            torch.zeros(grid.resolution**grid.dim, grid.dim) if deform else None,
        )

    def corner_positions(self, grid: Grid, multi_index: torch.Tensor) -> torch.Tensor:
        """(..., D) positions of grid points given by (..., D) multi-indices, displaced by up
        to 0.99 of half a cell if the weights deform the grid."""
        positions = grid.lo + grid.spacing * multi_index.to(DTYPE)
        if self.raw_deform is None:
            return positions
        flat = (multi_index * grid.resolution ** torch.arange(grid.dim - 1, -1, -1)).sum(-1)
        return positions + 0.5 * WEIGHT_SCALE * grid.spacing * torch.tanh(self.raw_deform[flat])

    @property
    def n_cells(self) -> int:
        return self.raw_alpha.shape[0]

    def at(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(alpha, beta, gamma) of the given cells only (a large grid's surface crosses few)."""
        return tuple(
            _positive(raw[cells]) for raw in (self.raw_alpha, self.raw_beta, self.raw_gamma)
        )

    @property
    def alpha(self) -> torch.Tensor:
        return _positive(self.raw_alpha)

    @property
    def beta(self) -> torch.Tensor:
        return _positive(self.raw_beta)

    @property
    def gamma(self) -> torch.Tensor:
        return _positive(self.raw_gamma)
