"""Differentiable iso-surfaces: implicit fields, marching squares/cubes, the MeshSDF surface
gradient and FlexiCubes, and shape fitting against exact targets."""

from workbench.surfaces.fields import Ball, Field
from workbench.surfaces.grid import Grid, Mesh
from workbench.surfaces.marching import marching_cubes, marching_squares

# `marching` itself is not re-exported: bound here it would shadow the module of that name
# (`import workbench.surfaces.marching` would give the function); import it from the module
__all__ = [
    "Ball",
    "Field",
    "Grid",
    "Mesh",
    "marching_cubes",
    "marching_squares",
]
