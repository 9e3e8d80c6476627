"""UI layer of the workbench: the Explorer spec and its JupyterLab and Panel front ends.

Importing this package is cheap: ipywidgets, plotly and Panel are imported only when an
explorer is rendered (``Explorer.ipywidget()``, ``Explorer.panel()``, ``Explorer.figure()``).
"""

from __future__ import annotations

from .explorer import (
    Choice,
    ControlError,
    Explorer,
    FigurePanel,
    MultiChoice,
    Slider,
    Toggle,
    Update,
    measure_latency,
)

__all__ = [
    "Choice",
    "ControlError",
    "Explorer",
    "FigurePanel",
    "MultiChoice",
    "Slider",
    "Toggle",
    "Update",
    "measure_latency",
]
