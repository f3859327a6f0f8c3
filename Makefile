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
# Debian packages that the tests run and no wheel ships, as command:package: docker-compose
# (validates docker-compose.yml, no daemon), nginx and h2load (bench/gateway.py compares
# the gateway with nginx under h2load), ip and tc (tests that build hosts in namespaces).
SYSTEM_TOOLS := docker-compose:docker-compose nginx:nginx-light h2load:nghttp2-client ip:iproute2 tc:iproute2

.PHONY: up test lint system-packages venv install install-dev protos lint-protos bench clean

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

# Installed when missing if we are root (CI is); otherwise stop at once, naming them.
system-packages:
	@missing=$$(for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null || [ -x "/usr/sbin/$${pair%%:*}" ] || echo "$${pair#*:}"; \
	done | sort -u | xargs); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make test needs the Debian packages $$missing; install them with: sudo apt-get install $$missing" >&2; \
	    exit 1; \
	  fi; \
	fi

# The gate: lint, formatting and strict types, before the suite.
lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: system-packages install-dev lint
	$(PY) -m pytest $(PYTEST_ARGS)

protos: install-dev
	$(PY) -m astra._codegen

bench: install-dev
	$(PY) bench/store.py

clean:
	rm -rf $(VENV) build node_modules .pytest_cache
