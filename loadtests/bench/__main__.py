"""``python -m loadtests.bench``: see :mod:`loadtests.bench._cli`."""

import sys

from loadtests.bench._cli import main

if __name__ == "__main__":
    sys.exit(main())
