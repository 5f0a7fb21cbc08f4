# adsrel: every target sets up what it needs. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install test lint bench bench-quality demo mlflow-ui clean

# The stamp depends on setup.cfg so a change of dependencies reinstalls. The class archive makes
# every local Spark job start faster (pipelines/class_archive.py); a job runs without it too.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e '.[dev,bench]'
	$(PY) -m pipelines.class_archive || echo "warning: Spark jobs run without a class archive"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check .

# Each benchmark is a module of benchmarks/ run with `python -m`; add yours to the list.
BENCHMARKS := benchmarks.adapter_speed benchmarks.prepare_throughput benchmarks.train_throughput

bench: install
	@for b in $(BENCHMARKS); do echo "== $$b"; $(PY) -m $$b || exit 1; done

# Quality of every method per segment (issue 6): about an hour on 2 cores; see benchmarks/quality.py.
bench-quality: install
	$(PY) -m benchmarks.quality

demo: install
	$(VENV)/bin/adsrel demo

# The MLflow UI on the default store of every verb (./mlflow.db): runs, metrics, plots, registry aliases.
mlflow-ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
