"""Session-wide set-up: the real services the integration suites need."""

import sys
from pathlib import Path

# The fault suite's summary line is printed by the controller, also under pytest-xdist.
sys.path.insert(0, str(Path(__file__).parent / "faults"))

pytest_plugins = ["libcontainerd.testing.pytest_plugin", "fault_summary"]
