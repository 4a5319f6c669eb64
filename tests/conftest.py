"""Session-wide set-up: the real services the integration suites need."""

import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# The fault suite's summary line is printed by the controller, also under pytest-xdist.
sys.path.insert(0, str(Path(__file__).parent / "faults"))

# libcontainerd.testing.pytest_plugin loads itself through its pytest11 entry point.
pytest_plugins = ["fault_summary"]

# Property tests judge what the code does, not how fast examples come: on a loaded 2-core
# machine the wall-clock gates (per-example deadline, slow-generation health check) failed at
# random. Example counts are unchanged.
settings.register_profile(
    "libcontainerd", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("libcontainerd")
