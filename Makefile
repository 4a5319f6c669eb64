# Entry points, all safe to run again (as root on Debian). A minimal Debian has no make: the
# README's first command, `sh scripts/setup.sh`, installs it and then runs `make setup-test`.
#   make demo        - install what the quickstart needs, then run examples/quickstart.py
#   make test        - install what the tests need, then ruff, mypy --strict, pytest, and the
#                      unit suite again under Debian's own python3 (when .venv uses another one)
#   make fresh-check - the README's set-up commands in a new minimal Debian bookworm root
#   make systemd-check - the set-up and a few tests in such a root booted with systemd as PID 1:
#                      no containerd / registry service is left enabled or running
#   make bench       - every benchmark case in one run, one table (BENCH_QUICK=1: a smoke run)
# Debian packages are installed without starting or enabling their services (scripts/ensure_debs.sh).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

DEMO_DEBS := busybox-static runc
TEST_DEBS := $(DEMO_DEBS) containerd crun criu docker-registry skopeo openssl apache2-utils \
	golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev \
	golang-github-gogo-protobuf-dev golang-github-gogo-googleapis-dev \
	containernetworking-plugins iptables iproute2 golang-github-opencontainers-specs-dev
PYTEST_ARGS ?=
# Debian's own interpreter: the oldest 3.11 build the project promises to run on.
SYSTEM_PYTHON ?= /usr/bin/python3
SYSTEM_VENV ?= .venv-system
SYSTEM_PYTEST_ARGS ?= tests/unit
# "yes" when $(PYTHON) (the one .venv is made from) is another interpreter than $(SYSTEM_PYTHON).
python_id = $(shell $(1) -c 'import sys; print(sys.base_prefix, sys.version)' 2>/dev/null)
SYSTEM_DIFFERS = $(if $(filter-out $(call python_id,$(PYTHON)),$(call python_id,$(SYSTEM_PYTHON))),yes)

.PHONY: demo test bench setup-demo setup-test lint typecheck pytest pytest-system debs-demo \
	debs-test venv venv-demo venv-system fresh-check systemd-check clean

demo: debs-demo venv-demo
	$(PY) examples/quickstart.py

test: debs-test venv lint typecheck pytest pytest-system

setup-demo: debs-demo venv-demo

setup-test: debs-test venv $(if $(SYSTEM_DIFFERS),venv-system)

# Not part of `test`: minutes long and only meaningful on a quiet machine.
bench: debs-test venv
	@scripts/ensure_debs.sh podman conmon golang-go
	$(PY) benchmarks/bench.py --json bench.json

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy --strict libcontainerd
	# the named-pipe code as Windows sees it (Linux skips its win32 branches)
	$(VENV)/bin/mypy --strict --platform win32 --follow-imports silent \
		--cache-dir .mypy_cache/win32 libcontainerd/remote/_relay.py \
		libcontainerd/remote/_npipe.py libcontainerd/remote/_npipe_win32.py

pytest: venv
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The unit suite under $(SYSTEM_PYTHON) in its own venv; nothing to do when .venv already is
# that interpreter (the main run covered it, as on a fresh Debian).
pytest-system: venv $(if $(SYSTEM_DIFFERS),venv-system)
ifeq ($(SYSTEM_DIFFERS),yes)
	$(SYSTEM_VENV)/bin/python -m pytest -p no:cacheprovider $(SYSTEM_PYTEST_ARGS)
else
	@echo "pytest-system: .venv already runs $(SYSTEM_PYTHON); the main run covered it"
endif

fresh-check:
	@scripts/ensure_debs.sh debootstrap
	bash scripts/fresh_check.sh

systemd-check:
	@scripts/ensure_debs.sh debootstrap systemd-container
	bash scripts/systemd_check.sh

debs-demo:
	@scripts/ensure_debs.sh $(DEMO_DEBS)

debs-test:
	@scripts/ensure_debs.sh $(TEST_DEBS)

# Re-install only when pyproject.toml changed since the last install.
venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || scripts/ensure_debs.sh python3-venv
	@$(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || scripts/ensure_debs.sh python3-venv
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv-system: $(SYSTEM_VENV)/.installed

$(SYSTEM_VENV)/.installed: pyproject.toml
	@scripts/ensure_debs.sh python3 python3-venv
	test -x $(SYSTEM_VENV)/bin/python || $(SYSTEM_PYTHON) -m venv $(SYSTEM_VENV)
	$(SYSTEM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SYSTEM_VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

# The demo needs the package and its [cli] extra only, not the development toolchain.
venv-demo: $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || scripts/ensure_debs.sh python3-venv
	@$(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || scripts/ensure_debs.sh python3-venv
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[cli]'
	touch $(DEMO_STAMP)

clean:
	rm -rf $(VENV) $(SYSTEM_VENV) build *.egg-info
