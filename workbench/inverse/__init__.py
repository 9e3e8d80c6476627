"""Inverse problems on a Gaussian-mixture prior: exact posteriors and exact guidance terms
(`problems`), training-free guidance methods as registry entries (`methods`), and their
measurement against the exact answers (`measure`)."""

from workbench.inverse.measure import (
    distance_table,
    ensemble_convergence,
    guidance_term_error,
    posterior_distance,
    sw_floor,
)
from workbench.inverse.methods import (
    INVERSE_METHODS,
    InverseMethod,
    TFGConfig,
    dps_term,
    enkg_term,
    guided_model,
    sample_posterior,
    tfg_sample,
    tfg_term,
)
from workbench.inverse.problems import (
    PROBLEMS,
    FullCovarianceMixture,
    InverseProblem,
    get_problem,
)

__all__ = [
    "INVERSE_METHODS",
    "PROBLEMS",
    "FullCovarianceMixture",
    "InverseMethod",
    "InverseProblem",
    "TFGConfig",
    "distance_table",
    "dps_term",
    "enkg_term",
    "ensemble_convergence",
    "get_problem",
    "guidance_term_error",
    "guided_model",
    "posterior_distance",
    "sample_posterior",
    "sw_floor",
    "tfg_sample",
    "tfg_term",
]
