"""Shape fitting: move a field so that its extracted surface matches a target shape.

A fit repeats: sample the field on the grid, extract a mesh with one of `EXTRACTORS`, measure
a loss against the target, back-propagate into the field's parameters (and FlexiCubes'
weights), take an optimizer step. The extractors differ only in how the gradient reaches the
field:

- "marching": primal marching; autograd differentiates the linear interpolation of the
  sampled grid values along each crossed edge (the vertex moves along its grid edge only).
- "meshsdf": the same mesh, but its vertices go through `meshsdf_vertices`, whose backward
  is the MeshSDF identity dv/ds = -n / |grad s| (the vertex moves along the normal).
- "flexicubes": dual marching with FlexiCubes' learnable weights, fitted jointly.

Losses (`FIT_LOSSES`): "chamfer" (squared Chamfer between points on the mesh's faces and
exact points on the target), and "mask" (2-D only: a soft rasterization of the extracted
polygon on a pixel grid against the target's exact inside mask; 3-D fits use Chamfer).

A run that produces a non-finite loss, an empty surface or a loss BLOW_UP times its start is
reported as status "diverged" with the reason, never as an exception, so a sweep goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import torch

from workbench.registry import Registry
from workbench.surfaces.distances import chamfer_distance, hausdorff_distance, sample_faces
from workbench.surfaces.fields import Field
from workbench.surfaces.fitted_fields import GridField
from workbench.surfaces.flexicubes import FlexiWeights, flexicubes
from workbench.surfaces.grid import DTYPE, Grid, Mesh
from workbench.surfaces.marching import marching
from workbench.surfaces.meshsdf import meshsdf_vertices

BLOW_UP = 1e4  # a loss this many times its starting value is a divergence
# exact points on the target surface: the loss compares with N_LOSS (the nearest-point search
# against them is most of a step's cost), the reported distances with N_TARGET
N_LOSS, N_TARGET = 500, 2000
# points sampled on each face of the extracted mesh for the loss; the reported distances
# sample densely (with few points per face the target-to-mesh term measures the gaps between
# the samples, not the distance to the mesh): REPORTED_POINTS over the mesh, 4 to 64 a face
PER_FACE, REPORTED_POINTS = 8, 8000
MASK_PIXELS = 64  # pixels per axis of the mask loss's raster


def values_on(field: Field, grid: Grid) -> torch.Tensor:
    """The field's values on the grid: a GridField's own parameter on its grid, else sampled."""
    if isinstance(field, GridField) and field.grid == grid:
        return field.values
    return grid.sample(field)


# ------------------------------------------------------------------ extractors
def _marching(field: Field, grid: Grid, weights: FlexiWeights | None) -> Mesh:
    return marching(values_on(field, grid), grid)


def _meshsdf(field: Field, grid: Grid, weights: FlexiWeights | None) -> Mesh:
    with torch.no_grad():  # the extraction itself is not differentiated
        mesh = marching(values_on(field, grid), grid)
    return Mesh(meshsdf_vertices(mesh, field), mesh.faces, mesh.edges)


def _flexicubes(field: Field, grid: Grid, weights: FlexiWeights | None) -> Mesh:
    return flexicubes(values_on(field, grid), grid, weights)


EXTRACTORS: Registry = Registry("extractor")
EXTRACTORS.add("marching", _marching, label="marching (interpolation gradient)")
EXTRACTORS.add("meshsdf", _meshsdf, label="MeshSDF gradient")
EXTRACTORS.add("flexicubes", _flexicubes, label="FlexiCubes")

FIT_OPTIMIZERS: Registry = Registry("fit optimizer")
FIT_OPTIMIZERS.add("adam", torch.optim.Adam, label="Adam")
FIT_OPTIMIZERS.add("sgd", torch.optim.SGD, label="SGD")


# ------------------------------------------------------------------ losses
def soft_mask(mesh: Mesh, pixels: torch.Tensor, width: float) -> torch.Tensor:
    """(P,) a soft rasterization of a closed 2-D polygon: sigmoid(-d / width), d the signed
    distance of each pixel to the polygon (negative inside), differentiable in the vertices.

    The distance is the nearest segment's; the sign comes from the winding number (a sum of
    the angles each segment subtends, +1 inside a counter-clockwise polygon), which is
    piecewise constant, so the gradient flows through the distance alone.
    """
    a, b = mesh.face_vertices().unbind(1)  # (F, 2) each: segment starts and ends
    to_a, to_b = a[None] - pixels[:, None], b[None] - pixels[:, None]  # (P, F, 2)
    along = b - a
    t = ((-to_a * along).sum(-1) / along.pow(2).sum(-1).clamp_min(1e-30)).clamp(0, 1)
    distance = (to_a + t[..., None] * along).norm(dim=-1).min(dim=1).values
    with torch.no_grad():
        cross = to_a[..., 0] * to_b[..., 1] - to_a[..., 1] * to_b[..., 0]
        winding = torch.atan2(cross, (to_a * to_b).sum(-1)).sum(1) / (2 * math.pi)
    sign = torch.where(winding > 0.5, -1.0, 1.0).to(DTYPE)
    return torch.sigmoid(-sign * distance / width)


def _chamfer_loss(mesh: Mesh, target_points: torch.Tensor, seed: int) -> torch.Tensor:
    """`distances.chamfer_distance` between points on the faces and the exact target points."""
    return chamfer_distance(sample_faces(mesh, PER_FACE, seed), target_points)


def _mask_loss(mesh: Mesh, reference: tuple[torch.Tensor, torch.Tensor], seed: int) -> torch.Tensor:
    pixels, inside = reference
    return (soft_mask(mesh, pixels, pixel_size()) - inside).pow(2).mean()


FIT_LOSSES: Registry = Registry("fit loss")
FIT_LOSSES.add("chamfer", _chamfer_loss, label="Chamfer")
FIT_LOSSES.add("mask", _mask_loss, label="soft mask (2-D)")


def loss_reference(loss: str, target):
    """What a loss compares with, computed once per fit: N_LOSS exact surface points
    (Chamfer) or (pixel centres (P, 2), the target's exact inside mask (P,) in {0, 1})."""
    if loss == "chamfer":
        return target_points(target, N_LOSS)
    if target.dim != 2:
        raise ValueError("the mask loss rasterizes 2-D polygons only: fit a 3-D shape by Chamfer")
    half = pixel_size() / 2
    axis = torch.linspace(-1 + half, 1 - half, MASK_PIXELS, dtype=DTYPE)
    pixels = torch.stack([a.reshape(-1) for a in torch.meshgrid(axis, axis, indexing="ij")], 1)
    with torch.no_grad():
        return pixels, (target(pixels) < 0).to(DTYPE)


def target_points(target, n: int = N_TARGET) -> torch.Tensor:
    """n exact points on the target's surface (the same for every fit)."""
    return target.surface_points(n).detach()


def pixel_size() -> float:
    """The mask raster's pixel over [-1, 1]^2 (also the soft edge's width)."""
    return 2.0 / MASK_PIXELS


# ------------------------------------------------------------------ the fit
@dataclass(frozen=True)
class Snapshot:
    """The surface at one iteration, as plain arrays: vertices (V, D), faces (F, D), and the
    loss's gradient on each vertex dL/dv (V, D) (zeros where no gradient reaches a vertex)."""

    iteration: int
    vertices: np.ndarray
    faces: np.ndarray
    gradient: np.ndarray


@dataclass(frozen=True)
class ShapeFit:
    """One fit: the loss at every iteration (0 = the start, up to `steps` or the divergence),
    Chamfer (squared, as the loss) and Hausdorff distances of the final surface to the exact
    target surface (NaN when diverged), wall-clock seconds, snapshots, status and reason."""

    extractor: str
    loss: str
    optimizer: str
    lr: float
    steps: int
    status: str
    reason: str
    losses: np.ndarray
    chamfer: float
    hausdorff: float
    seconds: float
    snapshots: dict[int, Snapshot] = dataclass_field(default_factory=dict)
    parameters: dict[str, np.ndarray] = dataclass_field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _check_fit(field, target, extractor, grid, loss, optimizer, lr, steps) -> None:
    EXTRACTORS.check(extractor)
    FIT_LOSSES.check(loss)
    FIT_OPTIMIZERS.check(optimizer)
    if not isinstance(field, Field) or field.dim != grid.dim or target.dim != grid.dim:
        raise ValueError(f"fit a Field and a target of the grid's dimension {grid.dim}")
    if loss == "mask" and grid.dim != 2:
        raise ValueError("the mask loss rasterizes 2-D polygons only: fit a 3-D shape by Chamfer")
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"the learning rate must be a finite number > 0, got {lr!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")


def _snapshot(iteration: int, mesh: Mesh) -> Snapshot:
    vertices = mesh.vertices
    grad = vertices.grad
    return Snapshot(
        iteration,
        vertices.detach().numpy().copy(),
        mesh.faces.numpy().copy(),
        np.zeros(vertices.shape) if grad is None else grad.detach().numpy().copy(),
    )


def _evaluate(field, grid, extractor, weights, loss, reference, first, seed):
    """(mesh, loss, "") at the field's current state, or (None, None, why it diverged): an
    extraction refused (non-finite values, a vanishing gradient), an empty surface, a
    non-finite loss, or a loss BLOW_UP times the first."""
    try:
        mesh = EXTRACTORS[extractor](field, grid, weights)
    except ValueError as error:  # the extractors refuse NaN values and vanishing normals
        return None, None, f"extraction failed: {error}"
    if mesh.n_faces == 0:
        return None, None, "empty surface"
    if mesh.vertices.requires_grad:
        mesh.vertices.retain_grad()  # the explorer's arrows: dL/dv on every vertex
    value = FIT_LOSSES[loss](mesh, reference, seed)
    if not torch.isfinite(value):
        return None, None, "non-finite loss"
    if first is not None and value.item() > BLOW_UP * max(first, 1e-12):
        return None, None, f"loss over {BLOW_UP:g}x its start"
    return mesh, value, ""


def fit_shape(
    field: Field,
    target,
    *,
    extractor: str,
    grid: Grid,
    loss: str = "chamfer",
    optimizer: str = "adam",
    lr: float = 1e-2,
    steps: int = 100,
    seed: int = 0,
    snapshots: Sequence[int] = (),
) -> ShapeFit:
    """Fit `field` (trained in place) so its surface extracted on `grid` matches `target`.

    `target` is an analytic field with `surface_points(n)` (its exact surface) and, for the
    mask loss, its sign (its exact inside). FlexiCubes' weights start neutral and are fitted
    with the field at the same learning rate; in 3-D they include the grid deformation,
    without which a cube's corner stays out of its dual vertex's reach (a 12^3 cube fit from a
    sphere: final Chamfer 2.1e-3 with it, 3.3e-3 without, marching 3.0e-3). `seed` fixes
    where the Chamfer loss samples points on the faces (the fit's only randomness).
    """
    _check_fit(field, target, extractor, grid, loss, optimizer, lr, steps)
    flexible = extractor == "flexicubes"
    weights = FlexiWeights.neutral(grid, deform=grid.dim == 3) if flexible else None
    parameters = [*field.parameters(), *(weights.parameters() if weights else ())]
    step = FIT_OPTIMIZERS[optimizer](parameters, lr=lr)
    reference = loss_reference(loss, target)
    wanted, shots, losses, first, reason = set(snapshots), {}, [], None, ""
    start = time.perf_counter()
    for iteration in range(steps + 1):
        step.zero_grad()
        mesh, value, reason = _evaluate(
            field, grid, extractor, weights, loss, reference, first, seed
        )
        if reason:
            break
        losses.append(value.item())
        first = losses[0]
        value.backward()  # at the last iteration too: its snapshot shows the gradient
        if iteration in wanted:
            shots[iteration] = _snapshot(iteration, mesh)
        if iteration < steps:
            step.step()
    seconds = time.perf_counter() - start
    chamfer, hausdorff = _final_distances(mesh, target) if not reason else (math.nan, math.nan)
    return ShapeFit(
        extractor, loss, optimizer, float(lr), steps, "diverged" if reason else "ok", reason,
        np.asarray(losses), chamfer, hausdorff, seconds, shots,
        {name: p.detach().numpy().copy() for name, p in field.named_parameters()},
    )  # fmt: skip


def _final_distances(mesh: Mesh, target) -> tuple[float, float]:
    """Chamfer (squared) and Hausdorff distances from dense points on the final mesh to the
    exact target's surface points."""
    with torch.no_grad():
        per_face = min(64, max(4, REPORTED_POINTS // mesh.n_faces))
        points, exact = sample_faces(mesh, per_face), target_points(target)
        return float(chamfer_distance(points, exact)), hausdorff_distance(points, exact)
