"""FlexiCubes-lite against its definitions.

The patch table's structure; closed, consistently oriented meshes whose enclosed area or
volume approaches the ball's and the box's at order 2; a saddle cell's two patches; a crossing
and a dual vertex against the paper's formulas by hand; autograd of the vertices w.r.t. the
values, every weight and the grid deformation against central differences (1e-7); a uniform
deformation as an exact translation; every dual vertex inside its cell; L_dev against its
closed form; empty level sets and bad input. What the weights buy on sharp corners, against
marching: test_surfaces_flexicubes_corners.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from surface_fields import ball, values_on

from workbench.metrics import empirical_order
from workbench.surfaces import Grid
from workbench.surfaces.cell_topology import MAX_PATCHES, PATCH_TABLES
from workbench.surfaces.flexicubes import (
    FlexiWeights,
    deviation_loss,
    dual_vertices,
    flexicubes,
)

DTYPE = torch.float64


def box(half):
    """The exact signed distance to an axis-aligned box (sharp corners)."""
    half = torch.tensor(half, dtype=DTYPE)

    def sdf(x):
        q = x.abs() - half
        return q.clamp(min=0).norm(dim=1) + q.max(dim=1).values.clamp(max=0)

    return sdf


def random_weights(grid, scale=0.5, seed=0, deform=False):
    generator = torch.Generator().manual_seed(seed)
    neutral = FlexiWeights.neutral(grid, deform=deform)
    raw = [
        scale * torch.randn(p.shape, generator=generator, dtype=DTYPE) for p in neutral.parameters()
    ]
    return FlexiWeights(*raw)


def assert_closed_and_oriented(mesh):
    """2-D: every vertex starts one segment and ends one (closed curves, one direction).
    3-D: every directed triangle edge once and its reverse once (closed, each edge in two
    triangles, which traverse it in opposite directions: consistent orientation)."""
    f = mesh.faces
    if mesh.dim == 2:
        every = torch.arange(mesh.n_vertices)
        assert torch.equal(f[:, 0].sort().values, every)
        assert torch.equal(f[:, 1].sort().values, every)
        return
    directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    pairs = {tuple(p) for p in directed.tolist()}
    assert len(pairs) == len(directed)
    assert pairs == {(b, a) for a, b in pairs}


# ---- the patch table -----------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
def test_patch_table_pairs_every_crossing_into_disks(dim):
    """Each patch has 2 crossings (2-D) or forms a cycle of >= 3 (3-D); inside and outside
    swapped give the same crossings; the most patches in any configuration is MAX_PATCHES."""
    table = PATCH_TABLES[dim]
    full = 2 ** (2**dim) - 1
    assert torch.equal(table >= 0, table.flip(0) >= 0)  # case and its complement
    assert int(table.max()) + 1 == MAX_PATCHES[dim]
    for case in range(1, full):
        sizes = torch.bincount(table[case][table[case] >= 0])
        assert (sizes == 2).all() if dim == 2 else (sizes >= 3).all()
    assert (table[0] == -1).all() and (table[full] == -1).all()


# ---- mesh structure ------------------------------------------------------------------------


BALL_CENTER, RADIUS = [0.11, -0.07, 0.05], 0.63
BOX_HALF = [0.53, 0.37, 0.61]  # corners off the grid lines at every resolution used here


def ball_measure(dim):
    return math.pi * RADIUS**2 if dim == 2 else 4 / 3 * math.pi * RADIUS**3


@pytest.mark.parametrize(
    "dim, shape, rtol",
    # measured at resolution 24: 7.1e-3, 1.6e-2 (2-D); 2.2e-2, 3.5e-2 (3-D): dual vertices
    # average crossings, which shrinks a convex shape by O(h^2) and cuts a box's edges
    [(2, "ball", 1e-2), (2, "box", 2.5e-2), (3, "ball", 3e-2), (3, "box", 4.5e-2)],
)
def test_closed_oriented_and_enclosing_the_shape(dim, shape, rtol):
    grid = Grid(dim, 24)
    if shape == "ball":
        field, exact = ball(BALL_CENTER[:dim], RADIUS), ball_measure(dim)
    else:
        field, exact = box(BOX_HALF[:dim]), math.prod(2 * h for h in BOX_HALF[:dim])
    values = values_on(grid, field)
    for split in ["center", "diagonal"] if dim == 3 else ["center"]:
        mesh = flexicubes(values, grid, split=split)
        assert mesh.edges is None and mesh.vertices.dtype == DTYPE
        assert_closed_and_oriented(mesh)
        assert float(mesh.enclosed()) == pytest.approx(exact, rel=rtol)


@pytest.mark.parametrize("dim", [2, 3])
def test_enclosed_measure_converges_at_second_order(dim):
    """The ball's enclosed area/volume error falls as h^2 (measured orders 2.07 and 2.07)."""
    cells = [11, 23, 47]
    errors = []
    for n in cells:
        grid = Grid(dim, n + 1)
        mesh = flexicubes(values_on(grid, ball(BALL_CENTER[:dim], RADIUS)), grid)
        errors.append(abs(float(mesh.enclosed()) / ball_measure(dim) - 1))
    assert empirical_order(cells, errors).order == pytest.approx(2.0, abs=0.15)


def test_a_saddle_cell_keeps_its_two_patches_apart():
    """Two inside points diagonal across the middle cell of a 3 x 3-cell grid: that cell is a
    saddle and gets one dual vertex per patch, so the mesh is two closed diamonds of 4
    vertices each (not a figure eight through one shared vertex)."""
    grid = Grid(2, 4)
    values = torch.ones(grid.shape, dtype=DTYPE)
    values[1, 1] = values[2, 2] = -1.0
    dual = dual_vertices(values, grid)
    mesh = flexicubes(values, grid)
    assert torch.bincount(dual.cells).tolist() == [1, 1, 0, 1, 2, 1, 0, 1, 1]
    assert mesh.n_vertices == 8 and mesh.n_faces == 8
    assert_closed_and_oriented(mesh)
    # each diamond's vertices sit a quarter cell diagonally from its inside point: a square of
    # side h / 2
    assert float(mesh.enclosed()) == pytest.approx(2 * (grid.spacing / 2) ** 2, rel=1e-12)


# ---- formulas and derivatives ---------------------------------------------------------------


def test_a_crossing_and_a_dual_vertex_follow_the_papers_formulas():
    """One corner inside a 2 x 2-cell grid's lower-left cell, hand-computed: the crossing on
    edge (i, j) is (s_j a_j x_i - s_i a_i x_j) / (s_j a_j - s_i a_i) and the dual vertex is the
    beta-weighted mean of the cell's crossings."""
    grid = Grid(2, 3)
    values = torch.tensor([[-0.3, 0.5, 1.0], [0.7, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=DTYPE)
    raw_alpha = torch.zeros(4, 4, dtype=DTYPE)
    raw_beta = torch.zeros(4, 4, dtype=DTYPE)
    raw_alpha[0] = torch.tensor([0.4, -0.8, 1.1, 0.0])  # corners (0,0), (1,0), (0,1), (1,1)
    raw_beta[0] = torch.tensor([-0.5, 0.0, 0.3, 0.0])  # edges along x at y=0, along y at x=0
    weights = FlexiWeights(raw_alpha, raw_beta, torch.zeros(4))
    alpha, beta = 1 + 0.99 * torch.tanh(raw_alpha[0]), 1 + 0.99 * torch.tanh(raw_beta[0])
    h, lo = grid.spacing, grid.lo

    def crossing(s_i, a_i, x_i, s_j, a_j, x_j):
        return (s_j * a_j * x_i - s_i * a_i * x_j) / (s_j * a_j - s_i * a_i)

    x00, x10, x01 = (torch.tensor(p, dtype=DTYPE) for p in ([lo, lo], [lo + h, lo], [lo, lo + h]))
    # values[i, j] sits at (x_i, y_j): corner (1,0) is values[1, 0], corner (0,1) values[0, 1]
    along_x = crossing(-0.3, alpha[0], x00, 0.7, alpha[1], x10)
    along_y = crossing(-0.3, alpha[0], x00, 0.5, alpha[2], x01)
    expected = (beta[0] * along_x + beta[2] * along_y) / (beta[0] + beta[2])
    dual = dual_vertices(values, grid, weights)
    assert dual.cells.tolist() == [0]
    assert float((dual.positions[0].detach() - expected).abs().max()) < 1e-15


@pytest.mark.parametrize("dim", [2, 3])
def test_no_weights_is_exactly_the_neutral_weights(dim):
    """weights=None skips building the weight tensors; the mesh is the same to the bit."""
    grid = Grid(dim, 10)
    values = values_on(grid, box([0.53, 0.37, 0.61][:dim]))
    plain = flexicubes(values, grid)
    neutral = flexicubes(values, grid, FlexiWeights.neutral(grid, deform=True))
    assert torch.equal(plain.faces, neutral.faces)
    assert torch.equal(plain.vertices, neutral.vertices.detach())
    assert not plain.vertices.requires_grad


def directional_derivatives(output, tensors, directions, eps=1e-6):
    """For each tensor and direction u: (autograd w . J u, central difference of w . f along u),
    with w a fixed random weighting of the outputs. Perturbs the tensors in place, restores."""
    generator = torch.Generator().manual_seed(1)
    w = torch.randn(output().shape, generator=generator, dtype=DTYPE)
    pairs = []
    for tensor in tensors:
        (grad,) = torch.autograd.grad((w * output()).sum(), tensor, allow_unused=True)
        grad = torch.zeros_like(tensor) if grad is None else grad
        for _ in range(directions):
            u = torch.randn(tensor.shape, generator=generator, dtype=DTYPE)
            with torch.no_grad():
                tensor.add_(eps * u)
                ahead = (w * output()).sum()
                tensor.sub_(2 * eps * u)
                behind = (w * output()).sum()
                tensor.add_(eps * u)
            pairs.append((float((grad * u).sum()), float((ahead - behind) / (2 * eps))))
    return pairs


@pytest.mark.parametrize("dim, resolution", [(2, 9), (3, 6)])
def test_autograd_matches_finite_differences(dim, resolution):
    """The vertices w.r.t. the values and w.r.t. each raw weight (alpha, beta, gamma, the grid
    deformation): autograd
    against central differences at eps 1e-6 along random directions, to 1e-7 (values kept
    1e-3 from zero, so no sign and no connectivity changes under the perturbation). 3-D: both
    splits; gamma enters through the split="center" vertices only (zero derivative else)."""
    grid = Grid(dim, resolution)
    values = values_on(grid, ball([0.07, -0.04, 0.02][:dim], 0.55))
    values = torch.where(values.abs() < 1e-3, values + 3e-3, values).requires_grad_(True)
    weights = random_weights(grid, scale=0.4, deform=True)
    tensors = [values, weights.raw_alpha, weights.raw_beta, weights.raw_gamma, weights.raw_deform]
    for split in ["center", "diagonal"] if dim == 3 else ["center"]:
        pairs = directional_derivatives(
            lambda split=split: flexicubes(values, grid, weights, split).vertices,
            tensors,
            directions=3,
        )
        for analytic, numeric in pairs:
            assert analytic == pytest.approx(numeric, abs=1e-7)
        assert max(abs(a) for a, _ in pairs) > 1e-2  # the derivatives are not all trivially 0


def test_gradients_reach_every_weight_that_shapes_the_mesh():
    """3-D center split: alpha, beta and gamma all move the vertices; 2-D: gamma cannot."""
    for dim, gamma_matters in [(2, False), (3, True)]:
        grid = Grid(dim, 6)
        weights = random_weights(grid, scale=0.3)
        mesh = flexicubes(values_on(grid, ball([0.0] * dim, 0.5)), grid, weights)
        mesh.vertices.pow(2).sum().backward()
        assert weights.raw_alpha.grad.abs().max() > 0
        assert weights.raw_beta.grad.abs().max() > 0
        gamma_grad = weights.raw_gamma.grad
        assert (gamma_grad is not None and bool(gamma_grad.abs().max() > 0)) == gamma_matters


@pytest.mark.parametrize("dim", [2, 3])
def test_a_uniform_deformation_translates_the_mesh(dim):
    """Every grid point displaced by the same vector d (within half a cell): crossings and
    dual vertices are affine in the corner positions, so the mesh moves by exactly d, and the
    connectivity, which follows the signs only, stays."""
    grid = Grid(dim, 8)
    values = values_on(grid, ball([0.05, -0.1, 0.12][:dim], 0.5))
    weights = random_weights(grid, scale=0.7)
    shift = torch.tensor([0.3, -0.45, 0.2][:dim], dtype=DTYPE)  # in units of 0.99 h / 2
    moved = FlexiWeights(
        weights.raw_alpha,
        weights.raw_beta,
        weights.raw_gamma,
        torch.atanh(shift).expand(8**dim, dim),
    )
    still, shifted = flexicubes(values, grid, weights), flexicubes(values, grid, moved)
    assert torch.equal(still.faces, shifted.faces)
    displacement = 0.5 * 0.99 * grid.spacing * shift
    error = (shifted.vertices - still.vertices - displacement).abs().max()
    assert float(error.detach()) < 1e-14


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("scale", [0.0, 2.0])
def test_every_dual_vertex_lies_in_its_cell(dim, scale):
    """A weighted mean of points on the cell's edges stays in the cell, neutral (scale 0) or
    with large weights (scale 2)."""
    grid = Grid(dim, 9)
    values = values_on(grid, ball([0.13, -0.21, 0.08][:dim], 0.61))
    dual = dual_vertices(values, grid, random_weights(grid, scale=scale))
    n = grid.resolution - 1
    origin = torch.stack([(dual.cells // n ** (dim - 1 - d)) % n for d in range(dim)], dim=1)
    low = grid.lo + origin * grid.spacing
    positions = dual.positions.detach()
    assert (positions >= low - 1e-12).all() and (positions <= low + grid.spacing + 1e-12).all()


# ---- L_dev ----------------------------------------------------------------------------------


def test_deviation_loss_is_zero_for_equidistant_vertices():
    """2-D neutral weights: each dual vertex is the midpoint of its two crossings. 3-D: the
    plane x + y + z = c cuts a cube's corner in an equilateral triangle, whose centroid (the
    neutral vertex) is equidistant to the three crossings."""
    grid2 = Grid(2, 12)
    assert float(deviation_loss(values_on(grid2, ball([0.1, 0.2], 0.5)), grid2)) < 1e-15
    grid3 = Grid(3, 3)  # one cut corner in each of the cells the plane crosses near (-1,-1,-1)
    values = values_on(grid3, lambda x: x.sum(dim=1) + 2.6)
    dual = dual_vertices(values, grid3)
    assert dual.cells.tolist() == [0] and len(dual.pair_vertex) == 3
    assert float(deviation_loss(values, grid3)) < 1e-15


def test_deviation_loss_matches_its_closed_form():
    """A 2-D patch with crossings a distance L apart and betas b1, b2: the vertex is at
    b2 L / (b1 + b2) from the first and b1 L / (b1 + b2) from the second, so each deviates
    from their mean by |b1 - b2| L / (2 (b1 + b2)): that is L_dev for one cell, positive with
    unequal betas (alpha 1, so the crossings are the plain ones L_dev measures to)."""
    grid = Grid(2, 3)
    values = torch.tensor([[-0.3, 0.5, 1.0], [0.7, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=DTYPE)
    raw_beta = torch.zeros(4, 4, dtype=DTYPE)
    raw_beta[0, 0], raw_beta[0, 2] = -0.5, 0.3  # the cell's two crossing edges
    b1, b2 = (1 + 0.99 * math.tanh(r) for r in (-0.5, 0.3))
    h = grid.spacing
    along_x, along_y = 0.3 / 1.0 * h, 0.3 / 0.8 * h  # linear crossings from the inside corner
    length = math.hypot(along_x, along_y)
    expected = abs(b1 - b2) * length / (2 * (b1 + b2))
    weights = FlexiWeights(torch.zeros(4, 4), raw_beta, torch.zeros(4))
    assert float(deviation_loss(values, grid, weights).detach()) == pytest.approx(
        expected, rel=1e-12
    )


def test_deviation_loss_is_differentiable_and_positive_off_equidistance():
    grid = Grid(3, 7)
    values = values_on(grid, box([0.41, 0.33, 0.52])).requires_grad_(True)
    weights = random_weights(grid, scale=0.5)
    loss = deviation_loss(values, grid, weights)
    loss.backward()
    assert float(loss.detach()) > 1e-3
    assert values.grad.abs().max() > 0 and weights.raw_beta.grad.abs().max() > 0


# ---- edge cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("level", [-1.0, 1.0])
def test_an_empty_level_set_gives_an_empty_mesh(dim, level):
    grid = Grid(dim, 5)
    values = torch.full(grid.shape, level, dtype=DTYPE)
    mesh = flexicubes(values, grid)
    assert mesh.vertices.shape == (0, dim) and mesh.faces.shape == (0, dim)
    assert float(deviation_loss(values, grid)) == 0.0


def test_bad_input_is_refused_in_one_line():
    grid = Grid(2, 5)
    values = values_on(grid, ball([0.0, 0.0], 0.5))
    nan = values.clone()
    nan[2, 2] = float("nan")
    cases = [
        (lambda: flexicubes(values[:4], grid), "values must be a tensor shaped"),
        (lambda: flexicubes(values.numpy(), grid), "values must be a tensor shaped"),
        (lambda: flexicubes(nan, grid), "values must be finite"),
        (lambda: flexicubes(values, grid, FlexiWeights.neutral(Grid(2, 6))), "weights are for"),
        (lambda: flexicubes(values, grid, FlexiWeights.neutral(Grid(3, 5))), "weights are for"),
        (lambda: flexicubes(values, grid, split="best"), "split must be one of"),
        (
            lambda: FlexiWeights(torch.zeros(16, 5), torch.zeros(16, 4), torch.zeros(16)),
            "take alpha",
        ),
        (lambda: FlexiWeights(torch.zeros(16, 4), torch.zeros(16, 4), torch.zeros(15)), "gamma"),
        (
            lambda: FlexiWeights(
                torch.zeros(16, 4), torch.zeros(16, 4), torch.zeros(16), torch.zeros(25, 3)
            ),
            "deform must have shape",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("dim", [2, 3])
def test_a_value_exactly_at_the_level_counts_as_inside_as_in_marching(dim):
    """A ball of radius 0.5 on a 9-point grid over [-1, 1] puts grid points exactly on the
    surface (s = 0). Both extractors count them inside (s <= 0), so they cross the same grid
    edges: FlexiCubes has one face per crossed edge (2-D) or two triangles per crossed edge
    with the diagonal split (3-D), marching one vertex per crossed edge."""
    from workbench.surfaces.marching import marching

    grid = Grid(dim, 9)
    values = values_on(grid, ball([0.0] * dim, 0.5))
    assert int((values == 0).sum()) >= 4
    dual = flexicubes(values, grid, split="diagonal")
    assert torch.isfinite(dual.vertices).all()
    assert_closed_and_oriented(dual)
    faces_per_edge = 1 if dim == 2 else 2
    assert dual.n_faces == faces_per_edge * marching(values, grid).n_vertices
