# adsrel: every target sets up what it needs. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install test lint bench demo clean

# The stamp depends on setup.cfg so a change of dependencies reinstalls.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m benchmarks.adapter_speed

demo: install
	$(VENV)/bin/adsrel demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
