# The two commands of the README:
#   make up     set up and run AstraRay on this machine (embedded store)
#   make test   set up and run the whole test suite (starts real etcd and Redis itself)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

# The installs run again only when what they build from changed (stamps in the venv): the
# editable install reads Python files from the tree, so only pyproject.toml and the C++
# core (compiled into gateway._core at install time) call for `pip install` again.
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev
NATIVE := CMakeLists.txt $(wildcard gateway/src/*)
NODE_MODULES := node_modules/.package-lock.json

.PHONY: up test venv install install-dev protos lint-protos bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

install: $(INSTALLED)

install-dev: $(INSTALLED_DEV) $(NODE_MODULES)

$(INSTALLED): pyproject.toml $(NATIVE) | $(PY)
	$(PIP) install -q -e .
	touch $@

# The dev extra is a superset: it counts as the plain install too.
$(INSTALLED_DEV): pyproject.toml $(NATIVE) | $(PY)
	$(PIP) install -q -e '.[dev]'
	touch $(INSTALLED) $@

# `npm install` honours package-lock.json; `npm ci` refuses a lock that lists only
# the platform packages this registry serves (buf ships one binary package per platform).
$(NODE_MODULES): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

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
