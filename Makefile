# HealthScore: `make demo` sets everything up and serves it; `make test` runs the suite.
# The lock holds the dev and spark extras (pyspark for `--engine spark` and its tests).
SHELL := /bin/bash
PY := .venv/bin/python
HS := .venv/bin/healthscore
DEMO_ACCOUNTS ?= 1500
DEMO_DAYS ?= 730
DEMO_START ?= 2024-01-01

# Offline machine: no telemetry, no DNS look-ups; BentoML's store inside the project.
export BENTOML_DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export SPARK_LOCAL_IP := 127.0.0.1
export BENTOML_HOME := $(CURDIR)/bentoml_home
export PYTHONHASHSEED := 0

.PHONY: venv demo test bench lint clean

venv: .venv/.installed

.venv/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

DEMO_ADMIN_KEY ?= demo-admin-key

demo: venv
	$(HS) generate --accounts $(DEMO_ACCOUNTS) --start $(DEMO_START) --days $(DEMO_DAYS) --seed 7 --out data/raw
	$(HS) ingest data/raw
	$(HS) train --truth data/raw/truth.parquet
	$(HS) score
	@echo
	@echo "Dashboard: http://127.0.0.1:3000/  (sign in with an API key, e.g. the demo admin key below)"
	@echo "Serving the HealthScore API on http://127.0.0.1:3000/v1 (docs: /v1/docs, OpenAPI: /v1/openapi.json)."
	@echo "Demo admin key: $(DEMO_ADMIN_KEY)  e.g.  curl -H 'Authorization: Bearer $(DEMO_ADMIN_KEY)' ..."
	@echo "MLflow runs and models: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns.db"
	HEALTHSCORE_SERVING__ADMIN_KEY=$(DEMO_ADMIN_KEY) $(HS) serve

test: venv
	$(PY) -m pytest -n 2 --dist loadgroup -q

bench: venv
	$(PY) bench/run.py

lint: venv
	$(PY) -m ruff check features scoring training serving healthscore tests bench
	$(PY) -m mypy features/registry.py features/contract/tables.py features/settings.py \
		training/labels.py scoring/health/ scoring/pipeline.py
	.venv/bin/lint-imports --no-cache

clean:
	rm -rf .venv data mlruns mlruns.db bentoml_home
