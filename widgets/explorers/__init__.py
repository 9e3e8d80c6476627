"""Explorer definitions, one module per topic; each exposes a function returning an Explorer."""

from widgets.explorers.noised_mixture import noised_mixture_explorer

__all__ = ["noised_mixture_explorer"]
