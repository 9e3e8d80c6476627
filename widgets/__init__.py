"""UI layer of the workbench: the Explorer spec and its JupyterLab and Panel front ends.

Importing this package is cheap: ipywidgets, plotly and Panel are imported only when an
explorer is rendered (``Explorer.ipywidget()``, ``Explorer.panel()``, ``Explorer.figure()``).
"""

from __future__ import annotations

from . import explorer
from .explorer import *  # noqa: F403

__all__ = explorer.__all__  # the package's public names are the explorer's
