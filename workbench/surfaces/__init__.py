"""Differentiable iso-surfaces: implicit fields, marching squares/cubes, the MeshSDF surface
gradient and FlexiCubes, and shape fitting against exact targets."""

from workbench.surfaces.fields import Ball, Box, DensityLevelSet, Ellipsoid, Field, SmoothUnion
from workbench.surfaces.fitted_fields import GridField, MLPField
from workbench.surfaces.flexicubes import FlexiWeights, deviation_loss
from workbench.surfaces.grid import Grid, Mesh
from workbench.surfaces.marching import marching_cubes, marching_squares
from workbench.surfaces.meshsdf import (
    meshsdf_vertices,
    normal_velocity,
    project_to_surface,
    shape_derivative,
)
from workbench.surfaces.shapes import SHAPES

# `marching` itself is not re-exported: bound here it would shadow the module of that name
# (`import workbench.surfaces.marching` would give the function); import it from the module.
# The same holds for `flexicubes`: import it from workbench.surfaces.flexicubes
__all__ = [
    "SHAPES",
    "Ball",
    "Box",
    "DensityLevelSet",
    "Ellipsoid",
    "Field",
    "FlexiWeights",
    "Grid",
    "GridField",
    "MLPField",
    "Mesh",
    "SmoothUnion",
    "deviation_loss",
    "marching_cubes",
    "marching_squares",
    "meshsdf_vertices",
    "normal_velocity",
    "project_to_surface",
    "shape_derivative",
]
