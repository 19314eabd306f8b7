"""``python -m kl_alloc``: the same command line as ``kl-alloc``."""

import sys

from kl_alloc.cli import main

if __name__ == "__main__":
    sys.exit(main())
