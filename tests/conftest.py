"""Session-wide set-up: the real services the integration suites need."""

from hypothesis import HealthCheck, settings

pytest_plugins = ["libcontainerd.testing.pytest_plugin"]

# Property tests judge what the code does, not how fast examples come: on a loaded 2-core
# machine the wall-clock gates (per-example deadline, slow-generation health check) failed at
# random. Example counts are unchanged.
settings.register_profile(
    "libcontainerd", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("libcontainerd")
