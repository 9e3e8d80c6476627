"""Flows: rectified flow, reflow and MeanFlow against the exact flow of a Gaussian mixture."""

from workbench.flows.exact import (
    average_velocity,
    exact_velocity,
    flow_log_likelihood,
    flow_map,
    straightness,
    transport_cost,
    velocity_divergence,
)

__all__ = [
    "average_velocity",
    "exact_velocity",
    "flow_log_likelihood",
    "flow_map",
    "straightness",
    "transport_cost",
    "velocity_divergence",
]
