"""The MeshSDF surface gradient: a loss on extracted vertices back-propagated to the field.

Marching places a vertex where the interpolated grid values cross zero; which edges are crossed
is a discrete choice, so the extraction has no derivative in the field's parameters theta as a
map from fields to meshes. MeshSDF (Remelli, Lukoianov, Richter, Guillard, Bagautdinov, Baque
and Fua, 2020, arXiv:2006.03997) differentiates the surface instead: a point v(theta) that
stays on the zero set satisfies s(v(theta), theta) = 0, so

    grad s . dv/dtheta + ds/dtheta = 0,

which fixes the normal component of the motion, n . dv/dtheta = -(ds/dtheta) / |grad s|,
and leaves the tangential one free (sliding along the surface does not change it). MeshSDF
takes the purely normal motion, dv/dtheta = -n (ds/dtheta) / |grad s|, so a loss L(v) gets

    dL/dtheta = sum_i -(dL/dv_i . n_i) / |grad s(v_i)| * ds(v_i)/dtheta.

`meshsdf_vertices` builds vertices whose values are the mesh's and whose backward is exactly
this; `normal_velocity` and `shape_derivative` give -(ds/dtheta) / |grad s| itself (the exact
shape derivative at points on the surface, by the implicit-function theorem), and
`project_to_surface` finds such points by Newton's method along the gradient.
"""

from __future__ import annotations

import torch

from workbench.surfaces.grid import Mesh


def _unit_gradient(field, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad s, |grad s|) at points, refusing a vanishing or non-finite gradient."""
    grad = field.gradient(points).detach()
    norm = grad.norm(dim=1)
    if not bool((torch.isfinite(norm) & (norm > 0)).all()):
        raise ValueError(
            f"{type(field).__name__}'s gradient vanishes or is not finite at "
            f"{int((~(norm > 0)).sum())} points: the surface has no normal there"
        )
    return grad, norm


def meshsdf_vertices(mesh: Mesh, field) -> torch.Tensor:
    """(V, D) the mesh's vertex positions, differentiable in the field's parameters by MeshSDF.

    Returns v + (-grad s / |grad s|^2) (s(v) - s(v).detach()) with v and grad s detached. The
    bracket is exactly 0, so the values are the vertices bit for bit; its derivative is
    ds(v)/dtheta, so the Jacobian is -n / |grad s| ds(v)/dtheta: the MeshSDF normal motion.
    The vertices' own graph (marching is differentiable in the grid values) is cut: one
    gradient path only, else a field sampled on the grid would be counted twice.

    Exact to first order: at a vertex on the zero set the normal motion is the implicit-function
    theorem's, and the tangential motion it omits moves no point of the surface. A marching
    vertex lies O(h^2) off the zero set (linear interpolation of a smooth field on a grid of
    spacing h), so its velocity is the exact one to O(h^2) as well.
    """
    vertices = mesh.vertices.detach()
    grad, norm = _unit_gradient(field, vertices)
    values = field(vertices)
    return vertices - (grad / norm[:, None] ** 2) * (values - values.detach())[:, None]


def parameter_name(field, parameter) -> str:
    """The name of `parameter` (a parameter of `field` or its name) in `named_parameters()`."""
    names = [name for name, _ in field.named_parameters()]
    if isinstance(parameter, str):
        if parameter not in names:
            raise ValueError(
                f"{type(field).__name__} has no parameter {parameter!r}; it has {', '.join(names)}"
            )
        return parameter
    for name, candidate in field.named_parameters():
        if candidate is parameter:
            return name
    raise ValueError(f"the parameter is not one of {type(field).__name__}'s ({', '.join(names)})")


def _value_jacobian(field, points: torch.Tensor, name: str) -> torch.Tensor:
    """(N, *shape) ds(x_i)/dtheta at every point, in min(N, P) reverse-mode passes.

    P <= N (an analytic shape's few parameters): g(w) = d(sum_i w_i s(x_i))/dtheta = J^T w is
    linear in w, so d g_j / dw is column j of J, one pass per parameter entry over all points.
    P > N (an MLP's weights, a grid's values at few points): one pass per point gives row i.
    (torch.func's vmap and forward-mode AD do it in one pass, but their first call costs 3-4 s.)
    """
    theta = dict(field.named_parameters())[name]
    points = points.detach()
    with torch.enable_grad():
        if theta.numel() > len(points):
            rows = [_gradient_or_zero(field(point[None])[0], theta) for point in points]
            return torch.stack(rows)
        return output_jacobian(field(points), theta)


def output_jacobian(outputs: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(N, *theta.shape) d outputs_i / d theta of an (N,) tensor computed from theta: one
    reverse pass per entry of theta (J^T w is linear in w, so d(J^T w)_j / dw is column j)."""
    with torch.enable_grad():
        weights = torch.ones(len(outputs), dtype=outputs.dtype, requires_grad=True)
        (pulled,) = torch.autograd.grad(
            outputs, theta, grad_outputs=weights, create_graph=True, allow_unused=True
        )
        if pulled is None:
            return torch.zeros(len(outputs), *theta.shape, dtype=outputs.dtype)
        columns = [_gradient_or_zero(entry, weights) for entry in pulled.reshape(-1)]
    return torch.stack(columns, dim=1).reshape(len(outputs), *theta.shape)


def _gradient_or_zero(output: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """d output / d wrt, zeros where output does not depend on it."""
    if not output.requires_grad:
        return torch.zeros_like(wrt).detach()
    (grad,) = torch.autograd.grad(output, wrt, retain_graph=True, allow_unused=True)
    return torch.zeros_like(wrt).detach() if grad is None else grad.detach()


def normal_velocity(field, points: torch.Tensor, parameter) -> torch.Tensor:
    """(N, *parameter.shape) -(ds/dtheta) / |grad s| at each point: how fast the level set
    through the point moves along its outward normal per unit of each parameter entry.

    `parameter` is a parameter of `field` or its name (as in `field.named_parameters()`).
    """
    points = field.check_points(points)
    name = parameter_name(field, parameter)
    _, norm = _unit_gradient(field, points)
    jacobian = _value_jacobian(field, points, name)
    return -jacobian / norm.reshape((-1,) + (1,) * (jacobian.ndim - 1))


def shape_derivative(field, points: torch.Tensor, parameter, tolerance: float = 1e-9):
    """(N, *parameter.shape) the exact normal velocity of the surface {s = 0} at points on it.

    By the implicit-function theorem, V = -(ds/dtheta) / |grad s| there. Points farther than
    `tolerance` from the surface (in |s| / |grad s|, a first-order distance) are refused:
    project them first with `project_to_surface`.
    """
    points = field.check_points(points)
    with torch.no_grad():
        _, norm = _unit_gradient(field, points)
        distance = (field(points).abs() / norm).max()
    if not float(distance) <= tolerance:
        raise ValueError(
            f"points are up to {float(distance):.3g} from the surface (tolerance {tolerance:g}): "
            "the shape derivative is defined on it; project them with project_to_surface"
        )
    return normal_velocity(field, points, parameter)


def project_to_surface(
    field, x: torch.Tensor, steps: int = 50, tolerance: float = 1e-13
) -> torch.Tensor:
    """(N, D) Newton's method along the gradient, x <- x - s(x) grad s / |grad s|^2, until every
    point is within `tolerance` of the surface (in |s| / |grad s|); detached.

    This follows the gradient line (not the closest point: the same to first order near a
    smooth surface). Points still off the surface after `steps` are refused, not returned.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    x = field.check_points(x).detach().clone()
    for _ in range(steps + 1):
        with torch.no_grad():
            values = field(x)
        grad, norm = _unit_gradient(field, x)
        distance = values.abs() / norm
        if bool((distance <= tolerance).all()):
            return x
        x = x - (values / norm**2)[:, None] * grad
    raise ValueError(
        f"project_to_surface did not converge in {steps} steps: "
        f"{int((distance > tolerance).sum())} points are still up to "
        f"{float(distance.max()):.3g} from the surface"
    )
