# `make run` and `make test` work from a fresh clone with nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on the development machines; GPU hosts may pin their own build.
TORCH_SPEC ?= torch==2.13.0
PORT ?= 8000
HOST ?= 127.0.0.1
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/rewardlab
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test lint format system-deps migrate demo clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

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

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: install system-deps lint
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache test-artifacts
