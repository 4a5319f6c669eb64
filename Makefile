# Two entry points, both safe to run again and on a machine that has none of it (as root on Debian):
#   make demo  - install what the quickstart needs, then run examples/quickstart.py
#   make test  - install what the tests need, then ruff, mypy --strict and pytest

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DEMO_DEBS := busybox-static runc
TEST_DEBS := $(DEMO_DEBS) containerd crun criu docker-registry skopeo openssl apache2-utils \
	golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev \
	golang-github-gogo-protobuf-dev golang-github-gogo-googleapis-dev \
	golang-github-opencontainers-specs-dev
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest debs-demo debs-test venv clean

demo: debs-demo venv
	$(PY) examples/quickstart.py

test: debs-test venv lint typecheck pytest

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

clean:
	rm -rf $(VENV) build *.egg-info
