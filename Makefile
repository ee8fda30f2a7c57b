# PatchRings: the two commands a newcomer needs are `make demo` and `make test`.
# Both bootstrap what they need: a virtual environment from the requirements files
# and Azurite from npm into ./node_modules. Nothing is installed outside the repository.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
SCENARIO ?= happy
AUTO_APPROVE ?=
PYTEST_ARGS ?=

.PHONY: help bootstrap test lint typecheck unit functional demo bench clean

help:
	@echo "make demo [SCENARIO=happy|bad-patch] [AUTO_APPROVE=1]   run a complete three-ring rollout locally"
	@echo "make test                                               lint, types and the whole test suite"
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

bootstrap: $(VENV)/.installed node_modules/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy .

test: bootstrap lint typecheck
	$(PY) -m pytest -q $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

functional: bootstrap
	$(PY) -m pytest -q -m functional $(PYTEST_ARGS)

demo: bootstrap
	$(PY) -m demo --scenario $(SCENARIO) $(if $(AUTO_APPROVE),--auto-approve,)

bench: bootstrap
	$(PY) -m bench

clean:
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache
