# The two commands of the README: `make run` (install, migrate, seed, serve) and `make test` (lint, type check, all
# tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# manage.py reads DEBUG=1 from $(ENV_FILE) (.env), as the README's own `.venv/bin/python manage.py …` commands do.
ENV_FILE ?= .env
MANAGE := RMM_ENV_FILE=$(ENV_FILE) $(BIN)/python manage.py

.PHONY: install run test lint typecheck format

$(BIN)/.installed: pyproject.toml agent/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; run: make PYTHON=python3.12 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./agent
	@touch $@

install: $(BIN)/.installed

# The development environment manage.py reads (see manage.py); written once, then it is the developer's to edit.
$(ENV_FILE):
	@printf '%s\n' \
		'# Development settings, read by manage.py (written by `make run`, git-ignored). The real environment wins.' \
		'# Never used in production: the server (gunicorn) takes its settings from its own environment only.' \
		'DEBUG=1' > $@
	@echo "wrote $@ (DEBUG=1 for manage.py)"

run: install $(ENV_FILE)
	$(MANAGE) migrate --no-input
	$(MANAGE) loaddata default_roles
	$(MANAGE) seed_demo
	$(MANAGE) runserver 127.0.0.1:8000

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The paths and settings are in pyproject.toml ([tool.mypy]); it needs no database (rmm/settings_typecheck.py).
typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
