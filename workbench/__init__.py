"""The workbench: exact toy problems and the methods the notebooks measure on them.

Compute only: nothing here imports a UI library (see widgets/ for that).
"""

from workbench.reporting import record, record_table, recorded

__version__ = "0.1.0"
__all__ = ["__version__", "record", "record_table", "recorded"]
