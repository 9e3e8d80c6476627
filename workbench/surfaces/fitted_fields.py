"""Fields a shape fit optimizes freely: a small MLP and a grid of SDF values.

Both are `Field`s with closed-form spatial gradients (tested against autograd) and start from
a closed surface, so the first extraction of a fit already has faces:

- `MLPField`: softplus layers (beta = 100, a smooth ReLU) started as a sphere |x| - radius,
  the idea of Atzmon and Lipman's geometric initialisation (SAL, 2020, arXiv:1911.10414). SAL
  draws the first layer's directions at random and needs a wide network to average them out
  (at width 32 its initial zero set measured radii 0.29 to 0.99 for radius 0.5); spreading
  them evenly instead (equal angles, the Fibonacci sphere) makes sum_j max(u_j . x, 0) nearly
  proportional to |x| at any width: radii and |grad s| within 10% of 0.5 and 1 at width 32.
- `GridField`: one value per grid point as a single nn.Parameter, read between points by
  multilinear interpolation; this is the field a "fit the grid of SDF values" run moves.
"""

from __future__ import annotations

import itertools
import math

import torch

from workbench.surfaces.fields import Field
from workbench.surfaces.grid import DTYPE, Grid
from workbench.surfaces.surface_sampling import circle_directions, fibonacci_sphere

_SOFTPLUS_BETA = 100.0
_PERTURBATION = 0.05  # relative size of the seeded noise on the geometric initialisation


class MLPField(Field):
    """s(x) = w . h_L + b with h_l = softplus(W_l h_{l-1} + b_l), h_0 = x (float64).

    geometric_init=True: first-layer rows are evenly spread unit directions, deeper layers the
    identity (softplus features are non-negative, so it passes them through), output weights
    1 / (width E[max(u . e, 0)]) and bias -radius, each with a seeded 5% perturbation to break
    the symmetry. False: every weight N(0, 1 / fan_in), zero biases. Both from `seed` only.
    """

    def __init__(
        self,
        dim: int,
        width: int = 32,
        depth: int = 2,
        seed: int = 0,
        geometric_init: bool = True,
        radius: float = 0.5,
    ):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"an MLP field is 2-D or 3-D, got dim={dim}")
        if not (isinstance(width, int) and width >= 2 and isinstance(depth, int) and depth >= 1):
            raise ValueError(f"an MLP field needs width >= 2 and depth >= 1, got {width}, {depth}")
        if not (math.isfinite(float(radius)) and float(radius) > 0):
            raise ValueError(f"the initial sphere's radius must be > 0, got {radius}")
        self.dim = dim
        sizes = [dim] + [width] * depth
        self.hidden = torch.nn.ModuleList(
            torch.nn.Linear(n_in, n_out, dtype=DTYPE) for n_in, n_out in itertools.pairwise(sizes)
        )
        self.output = torch.nn.Linear(width, 1, dtype=DTYPE)
        self._initialise(torch.Generator().manual_seed(int(seed)), geometric_init, float(radius))

    @torch.no_grad()
    def _initialise(self, generator: torch.Generator, geometric: bool, radius: float) -> None:
        def noise(shape, std: float) -> torch.Tensor:
            return std * torch.randn(shape, generator=generator, dtype=DTYPE)

        for index, layer in enumerate(self.hidden):
            n_out, n_in = layer.weight.shape
            layer.bias.zero_()
            if not geometric:
                layer.weight.copy_(noise(layer.weight.shape, 1 / math.sqrt(n_in)))
                continue
            # the first layer: one unit per evenly spread direction; deeper layers pass the
            # (non-negative) features through
            spread = circle_directions(n_out) if self.dim == 2 else fibonacci_sphere(n_out)
            start = spread if index == 0 else torch.eye(n_out, dtype=DTYPE)
            layer.weight.copy_(start + noise(start.shape, _PERTURBATION / math.sqrt(n_in)))
        width = self.output.weight.shape[1]
        if not geometric:
            self.output.weight.copy_(noise((1, width), 1 / math.sqrt(width)))
            self.output.bias.zero_()
            return
        # E[max(u . e, 0)] over unit directions u is 1 / pi on the circle and 1 / 4 on the
        # sphere, so these weights make the output |x| - radius
        mean = (math.pi if self.dim == 2 else 4.0) / width
        self.output.weight.copy_(mean * (1 + noise((1, width), _PERTURBATION)))
        self.output.bias.fill_(-radius)

    def _pre_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        pre, h = [], self.check_points(x)
        for layer in self.hidden:
            pre.append(layer(h))
            h = torch.nn.functional.softplus(pre[-1], beta=_SOFTPLUS_BETA)
        return pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self._pre_activations(x)[-1]
        return self.output(torch.nn.functional.softplus(last, beta=_SOFTPLUS_BETA))[:, 0]

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """Backpropagation by hand: softplus' derivative is sigmoid(beta z), and 1 where torch's
        softplus switches to the identity (beta z > 20) so both agree to rounding."""
        with torch.no_grad():
            pre = self._pre_activations(x)
            grad = self.output.weight.expand(len(x), -1)
            for layer, z in zip(reversed(self.hidden), reversed(pre), strict=True):
                slope = torch.where(z * _SOFTPLUS_BETA > 20, 1.0, torch.sigmoid(_SOFTPLUS_BETA * z))
                grad = (grad * slope) @ layer.weight
        return grad


class GridField(Field):
    """Values on a `Grid`'s points (one nn.Parameter shaped grid.shape), multilinear between.

    Outside [lo, hi]^D the boundary cells' interpolants extend linearly, so the field is
    continuous everywhere and its gradient never vanishes at the border. The gradient is the
    derivative of the interpolant of the cell holding x (on a cell face, the cell above it).
    """

    def __init__(self, grid: Grid, values):
        super().__init__()
        values = torch.as_tensor(values, dtype=DTYPE)
        if values.shape != grid.shape:
            raise ValueError(
                f"a grid field needs values shaped {grid.shape}, got {tuple(values.shape)}"
            )
        if not bool(torch.isfinite(values).all()):
            raise ValueError("a grid field's values must be finite")
        self.grid, self.dim = grid, grid.dim
        self.values = torch.nn.Parameter(values.detach().clone())

    @classmethod
    def from_field(cls, grid: Grid, field: Field) -> GridField:
        """The grid of `field`'s values (detached: a fit starts from them, it does not keep
        the field)."""
        with torch.no_grad():
            return cls(grid, grid.sample(field))

    def _cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each point's cell (lower corner index, (N, D) long) and its offset in it (N, D)."""
        position = (self.check_points(x) - self.grid.lo) / self.grid.spacing
        cell = position.detach().floor().clamp(0, self.grid.resolution - 2).long()
        return cell, position - cell

    def _corners(self):
        """The 2^D corners of a cell as 0/1 offsets, (2^D, D)."""
        return torch.cartesian_prod(*[torch.tensor([0, 1])] * self.dim).reshape(-1, self.dim)

    def _corner_values(self, cell: torch.Tensor) -> torch.Tensor:
        """(N, 2^D) the values at every corner of each point's cell."""
        corners = cell[:, None, :] + self._corners()[None]  # (N, 2^D, D)
        strides = torch.tensor(
            [self.grid.resolution ** (self.dim - 1 - d) for d in range(self.dim)]
        )
        return self.values.reshape(-1)[(corners * strides).sum(-1)]

    def _weights(self, offset: torch.Tensor) -> torch.Tensor:
        """(N, 2^D, D) per-axis linear weights: t on a corner's upper side, 1 - t on its lower."""
        upper = self._corners().to(DTYPE)[None]
        return upper * offset[:, None, :] + (1 - upper) * (1 - offset[:, None, :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cell, offset = self._cells(x)
        return (self._weights(offset).prod(dim=2) * self._corner_values(cell)).sum(dim=1)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            cell, offset = self._cells(x)
            weights, values = self._weights(offset), self._corner_values(cell)
            slopes = 2 * self._corners().to(DTYPE) - 1  # d(weight)/dt: +1 upper, -1 lower
            columns = []
            for axis in range(self.dim):
                others = torch.cat([weights[..., :axis], weights[..., axis + 1 :]], dim=2)
                columns.append((others.prod(dim=2) * slopes[:, axis] * values).sum(dim=1))
        return torch.stack(columns, dim=1) / self.grid.spacing
