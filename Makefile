# `make run` and `make test` work from a fresh clone with nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Installs are exactly the versions in the lock files (`make lock` rewrites them from pyproject.toml's
# ranges), made with uv, which lives in the virtualenv itself.
LOCK := requirements/lock.txt
DEV_LOCK := requirements/dev.lock.txt
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
# The locked torch release: its CPU build on the development machines (found in /opt/wheels), the CUDA
# build from PyPI elsewhere on Linux x86_64. GPU hosts may pin their own build instead.
TORCH_SPEC ?= $(shell sed -n 's/^\(torch==[^ ]*\).*/\1/p' $(DEV_LOCK))
# uv reads no pip.conf: a directory of local wheels is passed to it where there is one.
FIND_LINKS ?= $(wildcard /opt/wheels)
UV_PIP_ARGS = --python $(PY) $(if $(FIND_LINKS),--find-links $(FIND_LINKS))
LOCK_ARGS ?=
UV_LOCK_ARGS = --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	$(if $(FIND_LINKS),--find-links $(FIND_LINKS)) --custom-compile-command "make lock" $(LOCK_ARGS)
PORT ?= 8000
HOST ?= 127.0.0.1
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/rewardlab
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: install lock run test lint format system-deps migrate demo clean

$(VENV)/.uv-$(UV_VERSION):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	touch $@

# sync makes the virtualenv exactly the lock (TORCH_SPEC in torch's place); the install after it
# adds what a different torch build needs beyond the lock (the CUDA libraries), a no-op otherwise.
$(VENV)/.installed: pyproject.toml $(DEV_LOCK) | $(VENV)/.uv-$(UV_VERSION)
	sed 's|^torch==.*|$(TORCH_SPEC)|' $(DEV_LOCK) > $(VENV)/requirements.txt
	$(UV) pip sync --quiet $(UV_PIP_ARGS) $(VENV)/requirements.txt
	$(UV) pip install --quiet $(UV_PIP_ARGS) "$(TORCH_SPEC)"
	$(UV) pip install --quiet $(UV_PIP_ARGS) --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Rewrites both lock files from pyproject.toml, keeping every pin that still fits (LOCK_ARGS=--upgrade,
# or --upgrade-package NAME, to move). They are resolved for Linux x86_64 and Python 3.11 against torch's
# CPU build (/opt/wheels here; elsewhere e.g. LOCK_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"),
# and name torch without its "+cpu" label so that PyPI's CUDA build satisfies the same pin.
lock: $(VENV)/.uv-$(UV_VERSION)
	mkdir -p requirements
	touch $(DEV_LOCK) $(LOCK)
	sed -i 's/^\(torch==[^+ ]*\)$$/\1+cpu/' $(DEV_LOCK) $(LOCK)
	$(UV) pip compile --quiet $(UV_LOCK_ARGS) pyproject.toml --extra dev -o $(DEV_LOCK)
	cp $(DEV_LOCK) $(LOCK)
	$(UV) pip compile --quiet $(UV_LOCK_ARGS) pyproject.toml -o $(LOCK)
	sed -i 's/^\(torch==[^+ ]*\)+.*/\1/' $(DEV_LOCK) $(LOCK)
	@! grep -q '^nvidia-' $(DEV_LOCK) || { echo "torch resolved to a CUDA build: give it the CPU build (see the Makefile)"; exit 1; }

# Chromium drives the browser tests, docker-compose validates docker-compose.yml.
system-deps:
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing$$missing from Debian's packages"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "Please install$$missing (apt-get install$$missing); the tests that need them will fail."; \
		fi; \
	fi

migrate: install
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput --verbosity 1

demo: migrate
	DEBUG=$${DEBUG:-1} $(PY) manage.py load_demo

run: demo
	@echo ""
	@echo "rewardlab is starting on http://$(HOST):$(PORT)/  (Ctrl-C stops web, worker and beat)"
	@echo ""
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" DEBUG=$${DEBUG:-1} PORT=$(PORT) HOST=$(HOST) honcho start -f Procfile

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: install system-deps lint
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache test-artifacts
