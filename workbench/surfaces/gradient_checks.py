"""How right a surface gradient is: against finite differences and against the exact shape
derivative. The numbers of the topic's "gradient error vs resolution" section come from here.

Two ways to move an extracted vertex with the field's parameters theta (`VELOCITY_METHODS`):

- "meshsdf": MeshSDF's normal motion, -(ds/dtheta) / |grad s| at the vertex
  (`workbench.surfaces.meshsdf`);
- "marching": plain autograd through marching's edge interpolation of the sampled grid
  values, of which only the normal component n . dv/dtheta moves the surface.

(The ids and labels are those of the same gradients in `workbench.surfaces.fitting.EXTRACTORS`.)

`velocity_error` compares either with the exact shape derivative at the vertex's projection
onto the true surface: MeshSDF's error is second order in the grid spacing (a vertex sits
O(h^2) off the surface), marching's interpolation first order (the secant slope along an edge is
the field's slope at the crossing only to O(h)).

`finite_difference_error` is the identity itself, on a mesh: the MeshSDF derivative of a
vertex loss against central differences of the loss on meshes re-extracted at theta +- eps.
A marching vertex slides along its grid edge while MeshSDF moves it along the normal, so the
loss L = sum_i c_i n_i . v_i (n_i, c_i fixed) compares what must agree, the normal components.
They agree up to the finite difference's own error when every vertex is a true zero of the
field on its edge: a `GridField`'s marching vertices are (its interpolant along an edge is
marching's), an analytic field's are refined onto its zero set along their edges first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench.registry import Registry, check_choice
from workbench.surfaces.fitted_fields import GridField
from workbench.surfaces.grid import DTYPE, Grid, Mesh
from workbench.surfaces.marching import marching
from workbench.surfaces.meshsdf import (
    meshsdf_vertices,
    normal_velocity,
    output_jacobian,
    parameter_name,
    project_to_surface,
    shape_derivative,
)

_BISECTIONS = 60  # halves a unit grid edge below 1e-18


def extract(field, grid: Grid) -> Mesh:
    """The marching mesh of the field's samples, without a graph."""
    with torch.no_grad():
        return marching(grid.sample(field), grid)


def _unit_normals(field, points: torch.Tensor) -> torch.Tensor:
    grad = field.gradient(points)
    return grad / grad.norm(dim=1, keepdim=True)


def _meshsdf_velocities(field, grid: Grid, name: str) -> tuple[Mesh, torch.Tensor]:
    mesh = extract(field, grid)
    return mesh, normal_velocity(field, mesh.vertices, name)


def _interpolation_velocities(field, grid: Grid, name: str) -> tuple[Mesh, torch.Tensor]:
    theta = dict(field.named_parameters())[name]
    with torch.enable_grad():
        mesh = marching(grid.sample(field), grid)
        normals = _unit_normals(field, mesh.vertices.detach())
        along_normal = (normals * mesh.vertices).sum(dim=1)
        return mesh, output_jacobian(along_normal, theta)


VELOCITY_METHODS: Registry[Callable[..., tuple[Mesh, torch.Tensor]]] = Registry("velocity")
VELOCITY_METHODS.add("meshsdf", _meshsdf_velocities, label="MeshSDF gradient")
VELOCITY_METHODS.add(
    "marching", _interpolation_velocities, label="marching (interpolation gradient)"
)


def vertex_velocities(field, grid: Grid, parameter, method: str = "meshsdf"):
    """(mesh, (V, *parameter.shape) normal velocities of its vertices) by `method`."""
    return VELOCITY_METHODS[method](field, grid, parameter_name(field, parameter))


def velocity_error(
    field, grid: Grid, parameter, method: str = "meshsdf", statistic: str = "max"
) -> float:
    """The error of the vertices' normal velocities by `method` against the exact shape
    derivative at each vertex's projection onto the surface: the largest over vertices and
    parameter entries ("max") or their root mean square ("rms"), relative to the same
    statistic of the exact velocities.

    The two differ for the interpolation: where a grid edge meets the surface at a grazing
    angle its secant slope is far from the field's, so its largest error barely falls.
    """
    check_choice("statistic", statistic, ("max", "rms"))
    mesh, velocities = vertex_velocities(field, grid, parameter, method)
    on_surface = project_to_surface(field, mesh.vertices.detach())
    exact = shape_derivative(field, on_surface, parameter)
    if statistic == "max":
        return float((velocities - exact).abs().max() / exact.abs().max())
    return float((velocities - exact).pow(2).mean().sqrt() / exact.pow(2).mean().sqrt())


def refine_on_edges(field, mesh: Mesh, grid: Grid) -> Mesh:
    """Each vertex moved along its grid edge onto the field's zero there (bisection)."""
    if mesh.edges is None:
        raise ValueError("refining onto grid edges needs a primal mesh with `edges`")
    points = grid.points()
    inside, outside = points[mesh.edges[:, 0]], points[mesh.edges[:, 1]]
    lo = torch.zeros(mesh.n_vertices, dtype=DTYPE)
    hi = torch.ones(mesh.n_vertices, dtype=DTYPE)
    with torch.no_grad():
        for _ in range(_BISECTIONS):
            middle = 0.5 * (lo + hi)
            is_inside = field(inside + middle[:, None] * (outside - inside)) <= 0
            lo, hi = torch.where(is_inside, middle, lo), torch.where(is_inside, hi, middle)
    t = 0.5 * (lo + hi)[:, None]
    return Mesh(inside + t * (outside - inside), mesh.faces, mesh.edges)


def _on_edge_zeros(field, grid: Grid) -> Mesh:
    mesh = extract(field, grid)
    return mesh if isinstance(field, GridField) else refine_on_edges(field, mesh, grid)


def finite_difference_error(
    field, grid: Grid, parameter, eps: float = 1e-6, seed: int = 0
) -> float:
    """|MeshSDF - central difference| / |central difference| of dL/dtheta along a random
    direction, L = sum_i c_i n_i . v_i (random c_i, n_i fixed at theta).

    Refuses an eps that changes the mesh's topology (the difference would not be a derivative).
    """
    theta = dict(field.named_parameters())[parameter_name(field, parameter)]
    generator = torch.Generator().manual_seed(int(seed))
    mesh = _on_edge_zeros(field, grid)
    normals = _unit_normals(field, mesh.vertices)
    weights = torch.randn(mesh.n_vertices, generator=generator, dtype=DTYPE)
    direction = torch.randn(theta.shape, generator=generator, dtype=DTYPE)

    def loss(vertices: torch.Tensor) -> torch.Tensor:
        return (weights * (normals * vertices).sum(dim=1)).sum()

    (gradient,) = torch.autograd.grad(loss(meshsdf_vertices(mesh, field)), theta)
    original = theta.detach().clone()
    sides = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            theta.copy_(original + sign * eps * direction)
        try:
            moved = _on_edge_zeros(field, grid)
        finally:
            with torch.no_grad():
                theta.copy_(original)
        if not (torch.equal(moved.edges, mesh.edges) and torch.equal(moved.faces, mesh.faces)):
            raise ValueError(f"eps={eps:g} changes which grid edges the surface crosses: use less")
        sides.append(loss(moved.vertices))
    finite = (sides[0] - sides[1]) / (2 * eps)
    return float(((gradient * direction).sum() - finite).abs() / finite.abs())
