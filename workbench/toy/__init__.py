"""Exact toy problems: Gaussian mixtures with closed-form noised marginals."""

from workbench.toy.mixture import GaussianMixture

__all__ = ["GaussianMixture"]
