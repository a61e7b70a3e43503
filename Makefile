# AlertLake: the two set-up commands are `make demo` (whole pipeline on the local stack) and `make test`.
# Every target installs what it needs by itself; re-running is a no-op when nothing changed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
STACK := $(PY) infra/stack.py

.PHONY: install venv jvm browser fink-client services-up services-down services-status lint test test-unit demo bench clean-state

install: venv jvm browser fink-client

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.txt
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

jvm: venv
	$(STACK) install

# fink-client lives in its own virtualenv in the cache: the tests read our streams with it unchanged.
FINK_VENV := $(HOME)/.cache/alertlake/fink-client-venv
fink-client: $(FINK_VENV)/.installed

$(FINK_VENV)/.installed: infra/fink-client-requirements.txt venv
	@test -x $(FINK_VENV)/bin/python || $(PYTHON) -m venv $(FINK_VENV)
	$(VENV)/bin/uv pip install -q --python $(FINK_VENV)/bin/python -r infra/fink-client-requirements.txt
	@touch $@

# Debian's Chromium drives the Airflow UI test (no browser download from elsewhere).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

services-up: install
	$(STACK) up

services-down:
	@if [ -x $(PY) ]; then $(STACK) down; fi

services-status: venv
	$(STACK) status

PY_FILES = $(shell find alertlake jobs dags modules filters bench infra tests -name '*.py' -not -path '*/.*' 2>/dev/null)

lint: venv
	$(VENV)/bin/ruff check $(PY_FILES)
	$(VENV)/bin/ruff format --check $(PY_FILES)
	$(VENV)/bin/mypy $(PY_FILES)

test-unit: venv
	$(VENV)/bin/pytest -q tests/unit

test: install lint services-up
	$(VENV)/bin/pytest -q --timeout=1500 --durations=25

demo: services-up
	$(PY) -m alertlake.demo

bench: services-up
	$(PY) bench/run_all.py

clean-state: services-down
	rm -rf .state
