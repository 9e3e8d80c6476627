"""Compositional sampling: a product of two Gaussian mixtures (exact target), the naive sum of
noised scores, and the corrections that recover it (Feynman-Kac SMC, annealed ULA / MALA)."""

from workbench.composition.product import (
    PROBLEMS,
    ProductProblem,
    get_problem,
    product_mixture,
)
from workbench.composition.samplers import (
    SAMPLERS,
    TABLE_COLUMNS,
    CompositionResult,
    ProductDistance,
    budget_table,
    product_distance,
    run_sampler,
)

__all__ = [
    "PROBLEMS",
    "SAMPLERS",
    "TABLE_COLUMNS",
    "CompositionResult",
    "ProductDistance",
    "ProductProblem",
    "budget_table",
    "get_problem",
    "product_distance",
    "product_mixture",
    "run_sampler",
]
