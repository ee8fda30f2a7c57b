# PatchRings: the two commands a newcomer needs are `make demo` and `make test`.
# Both bootstrap what they need: a virtual environment from the requirements files
# and Azurite from npm into ./node_modules. Nothing is installed outside the repository.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SCENARIO ?= happy
AUTO_APPROVE ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist): 2 matches CI's 2 cores; TEST_WORKERS=0 runs every test in one process.
# --dist loadgroup hands tests out one at a time, except the groups tests/conftest.py forms (a file
# whose tests share a module-scoped platform, or a fixed folder such as .local/demo) run on one worker.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadgroup)

.PHONY: help bootstrap chromium test lint typecheck unit functional demo bench clean

help:
	@echo "make demo [SCENARIO=happy|bad-patch] [AUTO_APPROVE=1]   run a complete three-ring rollout locally"
	@echo "make test [TEST_WORKERS=2|0]                            lint, import contracts, types and the whole test suite (on 2 processes; 0: in one)"
	@echo "make bench                                              benchmarks (ratios, see bench/README.md)"

# The Python worker's own function-loading code (azure-functions-runtime, the code the Azure
# Python worker uses to index and validate functions): the local host runs every function
# through its Registry.add_indexed_function so it refuses exactly what Azure refuses (a PEP 585
# annotation makes the worker refuse the whole app). The wheel declares Requires-Python >=3.13
# but the loader works on 3.11; --ignore-requires-python lets it install, --no-deps keeps its
# worker-only dependencies (grpc, protobuf) out: the loader needs none of them.
WORKER_LOADER := azure-functions-runtime==1.3.0

$(VENV)/.installed: requirements.txt requirements-dev.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python $(WORKER_LOADER)
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

bootstrap: $(VENV)/.installed node_modules/.installed chromium

# The operator page's browser test (tests/functional/test_ui_browser.py) drives Debian's headless
# Chromium through Playwright. Installed from Debian's packages when missing and we are root (CI
# runs as root on a fresh machine); otherwise say how, and the test skips with the same hint.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and chromium-driver (browser test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else \
	  echo "note: /usr/bin/chromium is missing and this is not root: the browser test will be skipped;"; \
	  echo "      install it with: sudo apt-get install -y chromium chromium-driver"; \
	fi

# ruff, then the import contracts (pyproject.toml [tool.importlinter]: which layer may import which,
# drawn in docs/architecture.md). The architecture tests (tests/architecture) run with pytest.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy .

test: bootstrap lint typecheck
	$(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)

# One process: the unit tier is ~45 s of pure Python, and two workers' start-up and collection cost more
# than they save (49 s in one process, 55 s on two, measured on 2 cores).
unit: $(VENV)/.installed
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

functional: bootstrap
	$(PY) -m pytest -q -m functional $(XDIST) $(PYTEST_ARGS)

demo: bootstrap
	$(PY) -m demo --scenario $(SCENARIO) $(if $(AUTO_APPROVE),--auto-approve,)

bench: bootstrap
	$(PY) -m bench

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
