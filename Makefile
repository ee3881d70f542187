# koe — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The runtime packages: the image builds exactly these (tests/test_compose.py checks).
PACKAGES := libs/koe_kit libs/koe_directory libs/koe_contract services/feedback services/aggregator services/notifier
# Development only: `make run`'s local stack and the tests' helpers, never in the image.
DEV_PACKAGES := libs/koe_devkit
STAMP := $(VENV)/.installed
AXE := node_modules/axe-core/axe.min.js

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt constraints.txt $(foreach p,$(PACKAGES) $(DEV_PACKAGES),$(p)/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# constraints.txt: the tests run with the versions the image installs, not PyPI's newest.
	$(BIN)/pip install --quiet -c constraints.txt -r requirements-dev.txt $(foreach p,$(PACKAGES) $(DEV_PACKAGES),-e $(p))
	touch $(STAMP)

venv: $(STAMP) ## install koe and its tools into .venv

run: $(STAMP) ## start koe locally, no Docker (broker, SQLite, SMTP sink, every service)
	$(BIN)/python -m koe_devkit.local_stack

$(AXE): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $(AXE)

# The browser tests drive Debian's Chromium (Playwright cannot download one here).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk

# The reverse proxy's tests run compose's nginx config with Debian's nginx.
/usr/sbin/nginx:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx

# promtool (tests/test_prometheus.py) from Debian's prometheus package, unpacked, no server.
PROMTOOL := .tools/prometheus/usr/bin/promtool
$(PROMTOOL):
	mkdir -p .tools/download
	cd .tools/download && (apt-get download prometheus || (apt-get update -qq && apt-get download prometheus))
	dpkg -x .tools/download/prometheus_*.deb .tools/prometheus
	rm -rf .tools/download

promtool: $(PROMTOOL) ## unpack promtool for the alert-rule tests

test: $(STAMP) $(AXE) /usr/bin/chromium /usr/sbin/nginx $(PROMTOOL) ## run the test suite on real parts (PostgreSQL, broker, SMTP, Chromium)
	$(BIN)/python -m pytest --numprocesses=auto --ignore=tests/faults

# The unit tests alone (tests/kinds.py says which are): logic, no database, broker, SMTP
# server, subprocess or browser, so nothing to install beyond the virtualenv.
test-fast: $(STAMP) ## run the unit tests only, in seconds (make test runs them too)
	$(BIN)/python -m pytest -m unit --ignore=tests/faults

# The load in the fault suite and the benchmarks comes from wrk (Debian's).
/usr/bin/wrk:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk

# One test at a time: each stresses the whole machine and measures what its fault caught in flight.
test-faults: $(STAMP) /usr/bin/wrk ## break koe on purpose (broker cut, kill -9, SMTP and DB outages, poison, load) and check nothing is lost
	$(BIN)/python -m pytest tests/faults

bench: $(STAMP) /usr/bin/wrk ## run the benchmarks and print their numbers
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

.PHONY: help venv promtool run test test-fast test-faults bench lint fmt clean
