"""Session-wide set-up: the real services the integration suites need."""

pytest_plugins = ["libcontainerd.testing.pytest_plugin"]
