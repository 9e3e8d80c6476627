"""Implicit fields: closed-form gradients against autograd, exact distances against geometry,
surface points on the surface and spread uniformly, the SHAPES registry, one-line refusals."""

import math

import numpy as np
import pytest
import torch

from workbench.surfaces.fields import (
    Ball,
    Box,
    DensityLevelSet,
    Ellipsoid,
    Field,
    SmoothUnion,
)
from workbench.surfaces.fitted_fields import GridField, MLPField
from workbench.surfaces.grid import DTYPE, Grid
from workbench.surfaces.shapes import SHAPES, shape_names
from workbench.toy.mixture import GaussianMixture


def _mixture(dim: int) -> GaussianMixture:
    means = [[-0.3, 0.0, 0.1], [0.3, 0.1, -0.1], [0.0, -0.3, 0.0]]
    return GaussianMixture([m[:dim] for m in means], 0.25, [0.5, 0.3, 0.2])


def _fields(dim: int) -> dict[str, Field]:
    c = [0.05, -0.03, 0.02][:dim]
    return {
        "ball": Ball(c, 0.5),
        "ellipsoid": Ellipsoid(c, [0.7, 0.4, 0.5][:dim]),
        "box": Box(c, [0.6, 0.4, 0.5][:dim]),
        "union": SmoothUnion(Ball(c, 0.4), Ellipsoid([0.3] * dim, [0.3] * dim), k=0.2),
        "mlp": MLPField(dim, width=16, depth=2, seed=1),
        "mlp_random": MLPField(dim, width=16, depth=2, seed=1, geometric_init=False),
        "grid": GridField.from_field(Grid(dim, 9), Box(c, [0.5, 0.4, 0.3][:dim])),
        "density": DensityLevelSet(_mixture(dim), 0.6),
    }


def _points(dim: int, n: int = 400, seed: int = 0, scale: float = 1.2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * (2 * torch.rand(n, dim, generator=generator, dtype=DTYPE) - 1)


@pytest.mark.parametrize("dim", [2, 3])
def test_closed_form_gradients_match_autograd(dim):
    x = _points(dim)  # reaches outside [-1, 1]: the grid field's extrapolation too
    for name, field in _fields(dim).items():
        error = (field.gradient(x) - Field.gradient(field, x)).abs().max()
        assert error < 1e-12, name


@pytest.mark.parametrize("dim", [2, 3])
def test_surface_points_lie_on_the_surface(dim):
    skip = {"mlp_random"}  # a random MLP need not have a closed zero set around the origin
    for name, field in _fields(dim).items():
        if name in skip:
            continue
        points = field.surface_points(150)
        assert points.shape == (150, dim) and not points.requires_grad, name
        assert field(points).abs().max() < 1e-12, name


def test_box_is_the_exact_distance_to_its_four_sides():
    box = Box([0.05, -0.03], [0.6, 0.4])
    x = _points(2, 2000)
    lo, hi = np.array([-0.55, -0.43]), np.array([0.65, 0.37])
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    p = x.numpy()[:, None, :]
    a, b = corners[None], np.roll(corners, -1, axis=0)[None]
    t = np.clip(((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1), 0, 1)
    distance = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1).min(axis=1)
    inside = np.all((x.numpy() > lo) & (x.numpy() < hi), axis=1)
    expected = np.where(inside, -distance, distance)
    np.testing.assert_allclose(box(x).detach().numpy(), expected, atol=1e-14)


def test_ellipsoid_zero_set_and_gradient_scale():
    radii = torch.tensor([0.7, 0.4, 0.5], dtype=DTYPE)
    field = Ellipsoid([0.1, 0.0, -0.1], radii)
    points = field.surface_points(500, seed=3)
    offset = points - torch.tensor([0.1, 0.0, -0.1], dtype=DTYPE)
    assert ((offset / radii).norm(dim=1) - 1).abs().max() < 1e-14
    scale = radii.prod() ** (1 / 3)  # the documented |grad s| range on the surface
    norms = field.gradient(points).norm(dim=1)
    assert norms.min() >= scale / radii.max() - 1e-12 and norms.max() <= scale / radii.min() + 1e-12


def test_smooth_union_is_min_away_from_the_seam_and_below_it_on_it():
    a, b = Ball([-0.3, 0.0], 0.4), Ball([0.3, 0.1], 0.3)
    union = SmoothUnion(a, b, k=0.2)
    x = _points(2, 4000)
    sa, sb, s = a(x), b(x), union(x)
    far = (sa - sb).abs() >= 0.2
    assert far.sum() > 1000 and (s[far] - torch.minimum(sa, sb)[far]).abs().max() == 0
    # on the seam the blend is below min(a, b) by at most k / 4, reached where a = b
    gap = torch.minimum(sa, sb) - s
    assert gap.min() >= 0 and gap.max() <= 0.05 + 1e-15


def test_density_level_set_is_log_level_minus_log_density():
    mixture = _mixture(2)
    field = DensityLevelSet(mixture, 0.6)
    x = _points(2, 200)
    means, var = mixture.means.numpy(), 0.25**2
    squared = ((x.numpy()[:, None, :] - means[None]) ** 2).sum(-1)
    density = (mixture.weights.numpy() * np.exp(-squared / (2 * var)) / (2 * math.pi * var)).sum(1)
    np.testing.assert_allclose(
        field(x).detach().numpy(), math.log(0.6) - np.log(density), rtol=1e-13
    )
    field(x).sum().backward()  # the means are the parameters, and the only ones
    assert [name for name, _ in field.named_parameters()] == ["means"]
    assert field.means.grad.abs().min() > 0


def test_surface_points_are_equally_spaced_in_arclength():
    """The box's gaps in L1 norm: along its axis-aligned sides, the length of the path round a
    corner (a Euclidean chord would cut it short)."""
    for field, order in (
        (Ellipsoid([0.05, -0.03], [0.7, 0.4]), 2),
        (SHAPES["density"](), 2),
        (SHAPES["box"](), 1),
    ):
        points = field.surface_points(300)
        gaps = (points - points.roll(-1, dims=0)).norm(p=order, dim=1)
        assert gaps.std() / gaps.mean() < 2e-3, type(field).__name__


def test_3d_surface_points_are_uniform_in_area():
    """A box's faces get points in proportion to their areas (4 binomial sigmas), an ellipsoid's
    normal directions are not biased to its flat sides the way a sphere map would be."""
    field = Box([0.0, 0.0, 0.0], [0.6, 0.4, 0.2])
    n = 6000
    points = field.surface_points(n, seed=1)
    on_face = (points.abs() - field.half_sizes.detach()).abs() < 1e-12  # (n, 3): face axis
    areas = torch.tensor([0.4 * 0.2, 0.6 * 0.2, 0.6 * 0.4], dtype=DTYPE)
    expected = areas / areas.sum()
    observed = on_face.to(DTYPE).mean(dim=0)
    assert ((observed - expected).abs() <= 4 * (expected * (1 - expected) / n).sqrt()).all()


def test_mlp_starts_as_a_sphere_and_depends_on_its_seed_only():
    for dim in (2, 3):
        field = MLPField(dim, width=32, depth=2, seed=0, radius=0.5)
        radii = field.surface_points(200).norm(dim=1)
        assert (radii - 0.5).abs().max() < 0.05, dim
        again, other = MLPField(dim, 32, 2, seed=0), MLPField(dim, 32, 2, seed=1)
        x = _points(dim, 50)
        assert torch.equal(field(x), again(x)) and not torch.equal(field(x), other(x))


def test_grid_field_reproduces_multilinear_functions_everywhere():
    grid = Grid(3, 5)

    def multilinear(x):
        return 0.3 + x[:, 0] - 2 * x[:, 1] * x[:, 2] + 0.5 * x[:, 0] * x[:, 1] * x[:, 2]

    field = GridField(grid, multilinear(grid.points()).reshape(grid.shape))
    x = _points(3, 300, scale=1.3)  # inside and outside the grid
    assert (field(x) - multilinear(x)).abs().max() < 1e-14
    assert torch.equal(grid.sample(field).detach(), field.values.detach())


def test_shapes_registry_fits_the_grid_and_builds_fresh_fields():
    assert shape_names(2) == ["circle", "ellipse", "box", "blob", "density"]
    assert shape_names(3) == ["sphere", "cube", "blob3d"]
    assert SHAPES.label("box") == "box (sharp corners)"
    for name, build in SHAPES.items():
        field = build()
        points = field.surface_points(200)
        assert points.abs().max() < 0.9, name
        assert field(torch.zeros(1, field.dim, dtype=DTYPE))[0] < 0, name  # the origin inside
        assert next(build().parameters()) is not next(field.parameters()), name


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Ball([0.0, 0.0], -0.1), "radius > 0"),
        (lambda: Ellipsoid([0.0, 0.0], [0.5, 0.0]), "radii must be > 0"),
        (lambda: Ellipsoid([0.0, 0.0], [0.5, 0.4, 0.3]), "must have 2 coordinates"),
        (lambda: Box([0.0], [0.5]), "2-D or 3-D"),
        (lambda: Box([0.0, 0.0], [0.5, -1.0]), "half sizes must be > 0"),
        (
            lambda: SmoothUnion(Ball([0.0, 0.0], 0.5), Ball([0.0, 0.0, 0.0], 0.5), 0.1),
            "one dimension",
        ),
        (lambda: SmoothUnion(Ball([0.0, 0.0], 0.5), Ball([0.1, 0.0], 0.5), 0.0), "k must be"),
        (lambda: MLPField(2, width=1), "width >= 2"),
        (lambda: MLPField(4), "2-D or 3-D"),
        (lambda: GridField(Grid(2, 5), torch.zeros(4, 4)), "shaped (5, 5)"),
        (lambda: GridField(Grid(2, 5), torch.full((5, 5), math.nan)), "finite"),
        (lambda: DensityLevelSet(_mixture(2), 50.0), "level set is not empty"),
        (lambda: DensityLevelSet(_mixture(2).means, 0.5), "takes a GaussianMixture"),
        (lambda: DensityLevelSet(GaussianMixture([[0.0]], 1.0), 0.1), "2-D or 3-D"),
        (lambda: Ball([0.0, 0.0], 0.5).surface_points(0), "integer >= 1"),
        (lambda: Ball([0.0, 0.0], 0.5)(torch.zeros(3, 3)), "shape (N, 2)"),
        # the centre between two far balls is outside; inside one of them, rays cross twice
        (
            lambda: SmoothUnion(Ball([-0.5, 0], 0.3), Ball([0.5, 0], 0.3), 0.1).surface_points(9),
            "not negative at the centre",
        ),
        (
            lambda: SmoothUnion(
                Ball([-0.5, 0], 0.3), Ball([0.5, 0], 0.3), 0.1, center=[-0.5, 0]
            ).surface_points(9),
            "not star-shaped",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        build()
    assert "\n" not in str(info.value)
