# The two commands of the README:
#   make up     set up and run AstraRay on this machine (embedded store)
#   make test   set up and run the whole test suite (starts real etcd and Redis itself)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: up test venv install install-dev protos lint-protos bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

install: venv
	$(PIP) install -q -e .

install-dev: venv
	$(PIP) install -q -e '.[dev]'
	# `npm install` honours package-lock.json; `npm ci` refuses a lock that lists only
	# the platform packages this registry serves (buf ships one binary package per platform).
	npm install --no-audit --no-fund --loglevel=error

up: install
	$(VENV)/bin/astra up

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

protos: install-dev
	$(PY) -m astra._codegen

bench: install-dev
	$(PY) bench/store.py

clean:
	rm -rf $(VENV) build node_modules .pytest_cache
