"""Explorer definitions, one module per topic; each exposes `<topic>_app(smoke)` returning its
Explorer (listed in widgets/topics.py)."""

from widgets.explorers.noised_mixture import noised_mixture_app, noised_mixture_explorer

__all__ = ["noised_mixture_app", "noised_mixture_explorer"]
