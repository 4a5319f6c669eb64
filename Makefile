# Two entry points, both safe to run again and on a machine that has none of it (as root on Debian):
#   make demo  - install what the quickstart needs, then run examples/quickstart.py
#   make test  - install what the tests need, then ruff, mypy --strict and pytest

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

DEMO_DEBS := busybox-static runc
TEST_DEBS := $(DEMO_DEBS) containerd crun criu docker-registry skopeo openssl apache2-utils \
	golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev \
	golang-github-gogo-protobuf-dev golang-github-gogo-googleapis-dev
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest debs-demo debs-test venv venv-demo clean

demo: debs-demo venv-demo
	$(PY) examples/quickstart.py

test: debs-test venv lint typecheck pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy --strict libcontainerd

pytest: venv
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

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

# The demo needs the package and its [cli] extra only, not the development toolchain.
venv-demo: $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || scripts/ensure_debs.sh python3-venv
	@$(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || scripts/ensure_debs.sh python3-venv
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[cli]'
	touch $(DEMO_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
