# The two commands of the quick start. Both set up what they need first.
#   make demo   - embedded broker + synthetic traffic + the daemon, live, for a minute
#   make test   - lint, type-check and the whole test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real receivers the tests run against, from Debian's packages.
ALERTMANAGER := /usr/bin/prometheus-alertmanager
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup lint

$(STAMP): pyproject.toml
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

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint $(ALERTMANAGER)
	$(VENV)/bin/pytest -q
