# The two commands of the README: `make run` (install, migrate, seed, serve) and `make test` (lint, type check, all
# tests); and `make agent`, which enrolls this machine into the demo that `make run` serves and runs its agent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# manage.py reads DEBUG=1 from $(ENV_FILE) (.env), as the README's own `.venv/bin/python manage.py …` commands do.
ENV_FILE ?= .env
MANAGE := RMM_ENV_FILE=$(ENV_FILE) $(BIN)/python manage.py

.PHONY: install run test lint typecheck format agent

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

# This machine as a managed device of the demo, after `make run` in another terminal: a fresh single-use key for the
# demo's first organization and site, enrollment with the agent's state under var/agent/ (skipped when that state
# already belongs to AGENT_SERVER), then the agent in the foreground (Ctrl-C stops it).
AGENT_SERVER ?= http://127.0.0.1:8000
AGENT_STATE ?= var/agent
AGENT_ORG ?= acme-corp
AGENT_SITE ?= Headquarters
AGENT := $(BIN)/rmm-agent --state-dir $(AGENT_STATE)
ENROLLED_HERE := import sys; from rmm_agent.state import StateDir; \
	identity = StateDir(sys.argv[1]).identity(); sys.exit(0 if identity and identity.server == sys.argv[2] else 1)

agent: install $(ENV_FILE)
	@if $(BIN)/python -c '$(ENROLLED_HERE)' '$(AGENT_STATE)' '$(AGENT_SERVER)' 2>/dev/null; then \
		echo "$(AGENT_STATE) is already enrolled with $(AGENT_SERVER): running the agent"; \
	else \
		made=$$($(MANAGE) create_enrollment_key --org '$(AGENT_ORG)' --site '$(AGENT_SITE)' --max-usage 1 \
			--expires-in-hours 1 --name "make agent on $$(hostname)") || exit 1; \
		key=$$(printf '%s\n' "$$made" | tail -n 1); \
		printf '%s\n' "$$key" | $(AGENT) enroll --server '$(AGENT_SERVER)' --key - --force || { \
			echo "enrollment failed: is the server running (make run in another terminal)?" >&2; exit 1; }; \
	fi
	$(AGENT) run

# The end-to-end agent test (tests/agent_e2e/) spends most of its four minutes waiting through a three-minute server
# outage, so it runs beside the rest of the suite, on a test database of its own; its output follows the suite's.
# `pytest` alone runs everything, one after the other.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@mkdir -p var
	@RMM_TEST_DATABASE_SUFFIX=e2e $(BIN)/pytest tests/agent_e2e > var/agent-e2e-test.log 2>&1 & e2e=$$!; \
	$(BIN)/pytest --ignore=tests/agent_e2e; suite=$$?; \
	wait $$e2e; e2e_status=$$?; \
	echo "=== tests/agent_e2e (ran beside the suite; var/agent-e2e-test.log)"; cat var/agent-e2e-test.log; \
	[ $$suite -eq 0 ] && [ $$e2e_status -eq 0 ]

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The paths and settings are in pyproject.toml ([tool.mypy]); it needs no database (rmm/settings_typecheck.py).
typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
