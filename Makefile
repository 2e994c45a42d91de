# The two commands of the quick start. Both set up what they need first.
#   make demo   - embedded broker + synthetic traffic + the daemon, live, for a minute
#   make test   - lint, type-check and the whole test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real receivers the tests run against, from Debian's packages.
ALERTMANAGER := /usr/bin/prometheus-alertmanager
PROMTOOL := /usr/bin/promtool
# Tools the deploy and orchestrator tests call (usually present; installed if not).
SYSTEMD_ANALYZE := /usr/bin/systemd-analyze
IPROUTE := /usr/sbin/ip
# The drift report's browser test (tests/monitord/test_report.py) draws it in Chromium.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Prefect 3 and Airflow 3 for tests/orchestrators, MLflow 3 for tests/registry, each in a
# virtualenv of its own.
ORCHESTRATORS := $(or $(MONITORD_ORCHESTRATORS_DIR),.orchestrators)/.installed

.PHONY: demo test setup lint

$(STAMP): pyproject.toml
	# Debian's python3 makes virtualenvs only with python3-venv (ensurepip) installed.
	python3 -c 'import ensurepip' 2>/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/monitord demo --duration 60

$(ALERTMANAGER):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus-alertmanager
	# The package starts a service on :9093 where systemd runs; the tests start their own.
	-$(SUDO) systemctl disable --now prometheus-alertmanager 2>/dev/null

$(PROMTOOL):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus
	# Only promtool is needed (and a Prometheus the end-to-end test starts on loopback).
	-$(SUDO) systemctl disable --now prometheus prometheus-node-exporter 2>/dev/null

$(SYSTEMD_ANALYZE):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq systemd

$(IPROUTE):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq iproute2

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

$(ORCHESTRATORS): tests/orchestrators/install.sh
	tests/orchestrators/install.sh
	touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint $(ALERTMANAGER) $(PROMTOOL) $(SYSTEMD_ANALYZE) $(IPROUTE) $(CHROMIUM) $(ORCHESTRATORS)
	$(VENV)/bin/pytest -q
