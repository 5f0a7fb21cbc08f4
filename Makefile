# adsrel: every target sets up what it needs. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install test lint bench bench-quality bench-rollout bench-distill demo mlflow-ui clean

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

test: install airflow
	$(PY) -m pytest -q tests

# Airflow 3 in its own virtualenv, apart from the ML stack: the DAGs of airflow_dags/ import only
# Airflow and the standard library and run the adsrel CLI of .venv (ADSREL_BIN).
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_HOME ?= $(CURDIR)/runs/airflow/home
AIRFLOW_PORT ?= 8080
.PHONY: airflow airflow-up

$(AIRFLOW_VENV)/.installed: configs/airflow-requirements.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r configs/airflow-requirements.txt
	touch $@

airflow: $(AIRFLOW_VENV)/.installed

# Scheduler, DAG processor, triggerer and the UI/API on http://127.0.0.1:$(AIRFLOW_PORT) with this project's
# DAGs; the admin password is in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated.
# ADSREL_BIN, MLFLOW_TRACKING_URI and ADSREL_SPARK_MASTER are taken from the environment when set.
airflow-up: install airflow
	mkdir -p $(AIRFLOW_HOME)
	AIRFLOW_HOME=$(AIRFLOW_HOME) \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/airflow_dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__API__BASE_URL=http://127.0.0.1:$(AIRFLOW_PORT) \
	ADSREL_BIN="$${ADSREL_BIN:-$(CURDIR)/$(VENV)/bin/adsrel}" \
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
	PATH="$(abspath $(AIRFLOW_VENV))/bin:$$PATH" \
	airflow standalone

lint: install
	$(VENV)/bin/ruff check .

# Each benchmark is a module of benchmarks/ run with `python -m`; add yours to the list.
BENCHMARKS := benchmarks.adapter_speed benchmarks.prepare_throughput benchmarks.train_throughput benchmarks.score_throughput benchmarks.serving_latency benchmarks.routed_scoring benchmarks.monitor_cost benchmarks.checkpointing

bench: install
	@for b in $(BENCHMARKS); do echo "== $$b"; $(PY) -m $$b || exit 1; done

# Quality of every method per segment: about 1.5 hours on 2 cores, resumable; see benchmarks/quality.py.
bench-quality: install
	$(PY) -m benchmarks.quality

# Teacher -> student: the teacher and 12 students (3 and 2 blocks, labels-only and distilled, 3 seeds):
# about 25 minutes on 2 cores, resumes where it stopped; see benchmarks/distill.py.
bench-distill: install
	$(PY) -m benchmarks.distill

# The whole gate against the per-segment gate on the demo's two models and their recipes trained with
# another seed (run `make demo` first; about 3 minutes more on 2 cores for the two trainings).
bench-rollout: install
	$(PY) -m benchmarks.rollout_policy --shards demo-out/shards --model mtl_lora=demo-out/models/mtl_lora \
		--model lora=demo-out/models/lora --reseed 1

demo: install
	$(VENV)/bin/adsrel demo

# The MLflow UI on the default store of every verb (./mlflow.db): runs, metrics, plots, registry aliases.
mlflow-ui: install
	@MLFLOW_TRACKING_URI=sqlite:///mlflow.db $(PY) -c "from evaluation.tracking import ui_links; print('Open:', *ui_links(), sep='\n  ')" 2>/dev/null
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
