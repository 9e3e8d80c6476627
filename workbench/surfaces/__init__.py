"""Differentiable iso-surfaces: implicit fields, marching squares/cubes, the MeshSDF surface
gradient and FlexiCubes, and shape fitting against exact targets."""

from workbench.surfaces.fields import Ball, Field
from workbench.surfaces.grid import Grid, Mesh
from workbench.surfaces.marching import marching, marching_cubes, marching_squares

__all__ = [
    "Ball",
    "Field",
    "Grid",
    "Mesh",
    "marching",
    "marching_cubes",
    "marching_squares",
]
