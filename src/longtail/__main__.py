"""``python -m longtail`` and ``torchrun -m longtail``: the ``longtail`` command line."""

from __future__ import annotations

import sys

from longtail.cli import main

if __name__ == "__main__":
    sys.exit(main())
