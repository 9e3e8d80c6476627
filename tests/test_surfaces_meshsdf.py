"""The MeshSDF surface gradient against finite differences of re-extracted meshes and against
the exact shape derivative; shape derivatives and projections against closed forms.

What must agree with finite differences: a marching vertex slides along its grid edge, a MeshSDF
vertex moves along the normal, so only the normal components n_i . dv_i/dtheta (n_i held fixed)
are compared, through the loss L = sum_i c_i n_i . v_i. They agree exactly (up to the finite
difference's own error) when the vertex is a true zero of the field on its edge: always for a
grid of SDF values (marching's linear interpolation is the field there), and for an analytic
field once each vertex is refined along its edge onto the zero set. A plain marching vertex of
an analytic field is O(h^2) off the surface; its MeshSDF velocity then converges to the exact
shape derivative at that rate, which the last tests fit.
"""

import pytest
import torch

from workbench.metrics import empirical_order
from workbench.surfaces.fields import Ball, Ellipsoid
from workbench.surfaces.fitted_fields import GridField
from workbench.surfaces.gradient_checks import (
    VELOCITY_METHODS,
    extract,
    finite_difference_error,
    refine_on_edges,
    velocity_error,
    vertex_velocities,
)
from workbench.surfaces.grid import DTYPE, Grid, Mesh
from workbench.surfaces.marching import marching
from workbench.surfaces.meshsdf import (
    meshsdf_vertices,
    normal_velocity,
    project_to_surface,
    shape_derivative,
)
from workbench.surfaces.shapes import SHAPES


def _random(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


@pytest.mark.parametrize("shape, resolution", [("blob", 65), ("density", 65), ("blob3d", 25)])
def test_meshsdf_matches_finite_differences_on_a_grid_of_sdf_values(shape, resolution):
    """Fitting a grid of values: marching's vertices are exact zeros of the grid field, so the
    MeshSDF gradient and the re-extracted finite difference agree (measured 1e-9 to 2e-7
    relative; on the surface-refined vertices of the next test 2e-11 to 1e-8)."""
    grid = Grid(SHAPES[shape]().dim, resolution)
    field = GridField.from_field(grid, SHAPES[shape]())
    assert finite_difference_error(field, grid, field.values) <= 1e-6


@pytest.mark.parametrize(
    "shape, parameter, resolution",
    [("ellipse", "radii", 65), ("density", "means", 65), ("blob3d", "b.center", 25)],
)
def test_meshsdf_matches_finite_differences_of_vertices_on_the_surface(
    shape, parameter, resolution
):
    field = SHAPES[shape]()
    assert finite_difference_error(field, Grid(field.dim, resolution), parameter) <= 1e-6


def test_finite_differences_refuse_a_step_that_changes_the_mesh():
    field = SHAPES["ellipse"]()
    with pytest.raises(ValueError, match="changes which grid edges"):
        finite_difference_error(field, Grid(2, 33), "radii", eps=0.05)
    assert torch.equal(field.radii.detach(), SHAPES["ellipse"]().radii.detach())  # restored


def test_refined_vertices_are_on_the_surface_and_on_their_edges():
    field, grid = SHAPES["density"](), Grid(2, 33)
    mesh = extract(field, grid)
    refined = refine_on_edges(field, mesh, grid)
    assert field(refined.vertices).abs().max() < 1e-14
    # still on the grid line of its edge: only the edge's own coordinate moved
    moved = (refined.vertices - mesh.vertices).abs() > 1e-15
    assert (moved.sum(dim=1) <= 1).all()
    with pytest.raises(ValueError, match="needs a primal mesh"):
        refine_on_edges(field, Mesh(mesh.vertices, mesh.faces), grid)


def test_meshsdf_vertices_are_the_mesh_and_back_propagate_the_meshsdf_formula():
    """Values bit for bit; dL/dtheta = sum_i -(dL/dv_i . n_i) / |grad s| ds(v_i)/dtheta with
    ds/dtheta taken point by point by autograd (and the marching graph not counted again)."""
    field = SHAPES["ellipse"]()
    grid = Grid(2, 17)
    mesh = marching(grid.sample(field), grid)  # keeps its own graph to the field
    vertices = meshsdf_vertices(mesh, field)
    assert torch.equal(vertices, mesh.vertices.detach())
    upstream = _random(vertices.shape, 2)
    (gradient,) = torch.autograd.grad((upstream * vertices).sum(), field.radii)
    expected = torch.zeros(2, dtype=DTYPE)
    for v, c in zip(mesh.vertices.detach(), upstream, strict=True):
        (ds,) = torch.autograd.grad(field(v[None])[0], field.radii)
        g = field.gradient(v[None])[0]
        expected -= (c @ g) / (g @ g) * ds
    assert (gradient - expected).abs().max() <= 1e-13 * expected.abs().max()


@pytest.mark.parametrize("dim", [2, 3])
def test_a_balls_velocity_is_one_for_its_radius_and_the_normal_for_its_center(dim):
    ball = Ball([0.04, -0.03, 0.02][:dim], 0.55)
    vertices = extract(ball, Grid(dim, 17)).vertices  # off the sphere: exact all the same
    normals = ball.gradient(vertices)
    assert (normal_velocity(ball, vertices, "radius") - 1).abs().max() < 1e-14
    assert (normal_velocity(ball, vertices, ball.center) - normals).abs().max() < 1e-14


def test_ellipse_shape_derivative_has_its_closed_form():
    """x = c + r * u on the ellipse, so dx/dr_j = u_j e_j and dx/dc = I: V = n_j u_j and n."""
    field = Ellipsoid([0.1, -0.05], [0.7, 0.4])
    points = field.surface_points(200)
    normals = field.gradient(points) / field.gradient(points).norm(dim=1, keepdim=True)
    unit = (points - field.center.detach()) / field.radii.detach()
    assert (shape_derivative(field, points, "radii") - normals * unit).abs().max() < 1e-13
    assert (shape_derivative(field, points, "center") - normals).abs().max() < 1e-13


def test_density_shape_derivative_matches_finite_differences_of_projected_points():
    """The implicit-function theorem's V against surface points re-projected (along the
    gradient) after moving one mean by +-eps: (x+ - x-) / 2 eps = V n to O(eps^2)."""
    field = SHAPES["density"]()
    points = field.surface_points(64)
    normals = field.gradient(points) / field.gradient(points).norm(dim=1, keepdim=True)
    velocity = shape_derivative(field, points, field.means)  # (N, K, D)
    eps = 1e-5
    for component, axis in [(0, 0), (1, 1), (2, 0)]:
        moved = []
        for sign in (1, -1):
            with torch.no_grad():
                field.means[component, axis] += sign * eps
            moved.append(project_to_surface(field, points))
            with torch.no_grad():
                field.means[component, axis] -= sign * eps
        finite = (moved[0] - moved[1]) / (2 * eps)
        expected = velocity[:, component, axis, None] * normals
        assert (finite - expected).abs().max() < 1e-7


@pytest.mark.parametrize(
    "shape, parameter, resolutions",
    [
        ("ellipse", "radii", [17, 33, 65, 129, 257]),
        ("density", "means", [17, 33, 65, 129, 257]),
        ("blob", "b.center", [17, 33, 65, 129, 257]),
        ("blob3d", "b.radius", [9, 17, 33, 49]),
    ],
)
def test_meshsdf_velocity_converges_to_the_shape_derivative(shape, parameter, resolutions):
    """The MeshSDF normal velocity at marching vertices against the exact one at their
    projections. Measured orders, largest error: ellipse 1.64, density 1.96, blob 1.63, blob3d
    1.61; root mean square: 2.01, 2.12, 1.89, 1.95 (second order: a vertex is O(h^2) off the
    surface). Plain marching's interpolation gradient, root mean square: 0.82, 0.93, 0.90, 0.88."""
    field = SHAPES[shape]()
    grids = [Grid(field.dim, n) for n in resolutions]
    largest = [velocity_error(field, grid, parameter) for grid in grids]
    rms = [velocity_error(field, grid, parameter, statistic="rms") for grid in grids]
    assert empirical_order(resolutions, largest).order >= 1.5, largest
    assert empirical_order(resolutions, rms).order >= 1.8, rms
    # and the errors fall over the whole range, not only in the fit
    assert largest[-1] <= largest[0] * (resolutions[0] / resolutions[-1]) ** 1.2
    interpolation = [velocity_error(field, grid, parameter, "marching", "rms") for grid in grids]
    assert 0.7 <= empirical_order(resolutions, interpolation).order <= 1.3, interpolation
    assert rms[-1] * 10 < interpolation[-1]


def test_the_interpolation_velocity_is_the_normal_part_of_marchings_own_gradient():
    """Checked against the vertices' autograd Jacobian through marching, vertex by vertex."""
    field, grid = SHAPES["ellipse"](), Grid(2, 17)
    mesh, velocity = vertex_velocities(field, grid, "radii", "marching")
    graph = marching(grid.sample(field), grid)
    normals = field.gradient(mesh.vertices) / field.gradient(mesh.vertices).norm(dim=1)[:, None]
    for i in range(0, mesh.n_vertices, 7):
        rows = [
            torch.autograd.grad(graph.vertices[i, d], field.radii, retain_graph=True)[0]
            for d in range(2)
        ]
        expected = normals[i] @ torch.stack(rows)
        assert (velocity[i] - expected).abs().max() < 1e-14
    assert VELOCITY_METHODS.label("meshsdf") == "MeshSDF gradient"


def test_project_to_surface_lands_on_every_shape():
    for name, build in SHAPES.items():
        field = build()
        start = 0.8 * _random((100, field.dim), 3).clamp(-1, 1)
        projected = project_to_surface(field, start)
        distance = field(projected).abs() / field.gradient(projected).norm(dim=1)
        assert distance.max() <= 1e-13, name


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda f: shape_derivative(f, torch.zeros(3, 2, dtype=DTYPE), "radius"),
            "from the surface",
        ),
        (lambda f: normal_velocity(f, f.surface_points(4), "radii"), "no parameter 'radii'"),
        (lambda f: normal_velocity(f, f.surface_points(4), Ball([0, 0], 1.0).radius), "not one of"),
        (
            # Newton lands on an exact distance's surface in one step, not on a level set's
            lambda f: project_to_surface(
                SHAPES["density"](), torch.full((2, 2), 0.9, dtype=DTYPE), steps=1
            ),
            "did not converge",
        ),
        (lambda f: project_to_surface(f, f.surface_points(2), steps=0), "steps must be"),
        # the centre of a ball has no normal
        (lambda f: project_to_surface(f, f.center.detach()[None]), "gradient vanishes"),
    ],
)
def test_bad_input_is_refused_in_one_line(call, message):
    field = Ball([0.04, -0.03], 0.55)
    with pytest.raises(ValueError, match=message) as info:
        call(field)
    assert "\n" not in str(info.value)
