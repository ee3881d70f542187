# koe — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := libs/koe_kit libs/koe_directory services/feedback services/aggregator services/notifier
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt $(foreach p,$(PACKAGES),-e $(p))
	touch $(STAMP)

venv: $(STAMP) ## install koe and its tools into .venv

run: $(STAMP) ## start koe locally, no Docker (broker, SQLite, SMTP sink, every service)
	$(BIN)/python -m koe_kit.local_stack

test: $(STAMP) ## run the whole test suite on real parts (PostgreSQL, broker, SMTP)
	$(BIN)/python -m pytest

bench: $(STAMP) ## run the benchmarks and print their numbers
	$(BIN)/python bench/run_all.py

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the virtualenv and local data under var/
	rm -rf $(VENV) var

.PHONY: help venv run test bench lint fmt clean
