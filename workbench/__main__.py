"""`python -m workbench`: the command line (workbench.cli). Importing this module runs nothing."""

import sys

from workbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
