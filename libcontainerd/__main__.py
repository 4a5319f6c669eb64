"""``python -m libcontainerd``: the same as the ``libcontainerd`` command."""

from __future__ import annotations

import sys

from libcontainerd.cli import main

if __name__ == "__main__":
    sys.exit(main())
