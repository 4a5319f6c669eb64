"""Session-wide set-up: the real services the integration suites need."""
