# Every target that needs Python depends on $(STAMP): a fresh clone sets itself up.
SHELL := /bin/bash
PYTHON_BOOTSTRAP ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
DATA_DIR ?= data/default
CONFIG ?= default
PYTEST_ARGS ?=

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.DEFAULT_GOAL := help
.PHONY: help venv data describe train evaluate tensorboard test bench-input bench-default bench-flickr8k clean

help: ## List every target with one line each
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	@echo "[setup] creating $(VENV) and installing requirements.txt (first run only)"
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@cp requirements.txt $(STAMP)

venv: $(STAMP) ## Create .venv and install requirements (done automatically by other targets)

data: $(STAMP) ## Build the embedded default dataset into data/default (skipped if present)
	$(PY) -m pipeline data build --out $(DATA_DIR)

describe: $(STAMP) ## Describe a dataset: make describe DATA=path/to/dataset
	$(PY) -m pipeline data describe $(or $(DATA),$(DATA_DIR))

train: $(STAMP) ## Set up, build the default dataset if missing, train CONFIG (default), evaluate on test, export
	@$(PY) -m pipeline data build --out $(DATA_DIR)
	$(PY) -m pipeline train --config $(CONFIG) $(ARGS)

evaluate: $(STAMP) ## Evaluate a run on a dataset: make evaluate RUN=latest DATA=path SPLIT=test
	$(PY) -m pipeline evaluate --run $(or $(RUN),latest) $(if $(DATA),--data $(DATA)) --split $(or $(SPLIT),test)

tensorboard: $(STAMP) ## Serve TensorBoard over every run in saved_models/runs
	$(VENV)/bin/tensorboard --logdir saved_models/runs --bind_all

test: $(STAMP) ## Run the test suite (tests needing ../shared run when it exists)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench-input: $(STAMP) ## Input-pipeline throughput vs a plain Python loop (needs ../shared)
	$(PY) -m benchmarks.bench_input

bench-default: $(STAMP) ## Text models (conv, lstm, serial) on the default dataset, incl. its word-order subset
	@$(PY) -m pipeline data build --out $(DATA_DIR)
	$(PY) -m benchmarks.bench_default

bench-flickr8k: $(STAMP) ## Flickr8k image-text retrieval, one row per text model / loss / GloVe (needs ../shared)
	$(PY) -m benchmarks.bench_flickr8k $(ARGS)

clean: ## Remove the virtual environment and caches (keeps data/ and saved_models/runs)
	rm -rf $(VENV) .pytest_cache saved_models/cache
