# mdk: the two commands that matter are `make up` and `make test` (see README.md).
# Every target sets up what it needs; a second run only redoes what changed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache

# node_modules/.bin first: the pinned Node 22 and CDK CLI from package.json, then the venv's tools.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The SageMaker Python SDK v3 for the real-client tests: its own venv (it pins rich<15; ~1 GB), never an image.
SDK_VENV := $(CACHE)/sdk-venv
SDK_STAMP := $(SDK_VENV)/.installed
# The benchmark's peers (BentoML, LitServe; bench/peers): their own venv, never an image.
BENCH_VENV := $(CACHE)/bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_GPU_VENV := $(CACHE)/bench-gpu-venv
.PHONY: help setup sdk models up test synth lint format typecheck bench bench-env bench-gpu wrk reliability lock lock-bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY_STAMP): requirements.txt requirements-dev.txt layers/requirements.txt layers/requirements-processing.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

$(SDK_STAMP): requirements-sdk.txt
	@test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(SDK_VENV)/bin/python -m pip install --quiet -r requirements-sdk.txt
	@touch $@

$(BENCH_STAMP): requirements-bench.txt constraints-bench.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements-bench.txt -c constraints-bench.txt
	@touch $@

# wrk, the C load generator the peers comparison uses, from the OS packages when it is missing.
wrk:
	@command -v wrk >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "error: wrk is not installed and there is no apt-get here: install wrk (https://github.com/wg/wrk) with this OS's package manager" >&2; exit 2; }; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update && $$sudo apt-get install -y wrk; }

bench-env: $(BENCH_STAMP) wrk ## the benchmark-only venv (.cache/bench-venv: BentoML, LitServe) and wrk

sdk: $(SDK_STAMP) ## the SageMaker Python SDK v3 in .cache/sdk-venv, for the tests that use it as a client

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

models: $(PY_STAMP) ## build the example models that are missing (they are committed; --force rebuilds)
	@$(PY) -m mdk.examples

setup: $(PY_STAMP) $(NODE_STAMP) models ## install everything (Python venv, Node 22 + CDK CLI, example models)

up: setup ## deploy the stacks onto the embedded local AWS and serve them (Ctrl-C stops)
	$(VENV)/bin/mdk local up

test: setup sdk wrk lint typecheck ## lint, type-check and run every test (wrk: the load generator tests/bench drives)
	$(PY) -m pytest

synth: setup ## the CloudFormation templates in cdk.out/ (offline; cdk-nag runs on them)
	npx cdk synth --quiet

lint: $(PY_STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(PY_STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(PY_STAMP) ## mypy --strict over the kit, runtime, handlers and tests
	$(VENV)/bin/mypy

bench: setup $(BENCH_STAMP) wrk ## the benchmark report (bench/results/report.md); figures, not pass/fail
	$(PY) -m bench

bench-gpu: ## on a machine with an NVIDIA GPU: the peers comparison on CUDA (bench/results/gpu/)
	PYTHON=$(PYTHON) BENCH_GPU_VENV=$(BENCH_GPU_VENV) bash bench/peers/gpu.sh

reliability: setup ## fuzzing, fault injection and a 5-minute load test on the local cloud (build/reliability/report.md)
	$(PY) -m reliability

lock: ## re-resolve constraints.txt and layers/constraints.txt (the image's) from the requirements (needs the index)
	rm -rf $(CACHE)/lock-venv $(CACHE)/lock-image
	$(PYTHON) -m venv $(CACHE)/lock-venv
	$(CACHE)/lock-venv/bin/pip install --quiet -r requirements-dev.txt
	{ echo "# Every transitive version, resolved from requirements-dev.txt by \`make lock\`."; \
	  $(CACHE)/lock-venv/bin/pip freeze --exclude-editable; } > constraints.txt
	$(PYTHON) -m venv $(CACHE)/lock-image
	$(CACHE)/lock-image/bin/pip install --quiet -r layers/requirements.txt -r layers/requirements-processing.txt -c constraints.txt
	{ echo "# The images' runtime dependencies, every version: the closure of requirements.txt and of"; \
	  echo "# requirements-processing.txt (what a model's declared processing installs into its own image only),"; \
	  echo "# resolved under ../constraints.txt by \`make lock\` (so the images and the dev environment agree)."; \
	  $(CACHE)/lock-image/bin/pip freeze; } > layers/constraints.txt
	rm -rf $(CACHE)/lock-venv $(CACHE)/lock-image

lock-bench: ## re-resolve constraints-bench.txt (and its GPU variant) from requirements-bench*.txt (needs the index)
	rm -rf $(CACHE)/lock-bench
	$(PYTHON) -m venv $(CACHE)/lock-bench
	$(CACHE)/lock-bench/bin/pip install --quiet -r requirements-bench.txt
	{ echo "# Every transitive version of requirements-bench.txt, resolved by \`make lock-bench\`."; \
	  $(CACHE)/lock-bench/bin/pip freeze; } > constraints-bench.txt
	rm -rf $(CACHE)/lock-bench
	$(PYTHON) -m venv $(CACHE)/lock-bench
	$(CACHE)/lock-bench/bin/pip install --quiet --dry-run --ignore-installed --report $(CACHE)/lock-bench/report.json -r requirements-bench-gpu.txt
	{ echo "# Every transitive version of requirements-bench-gpu.txt (Linux x86_64), resolved by \`make lock-bench\`"; \
	  echo "# (pip --dry-run: onnxruntime-gpu and NVIDIA's CUDA wheels are resolved, not installed). It agrees with"; \
	  echo "# layers/constraints.txt (the image) but for opentelemetry-api: BentoML's opentelemetry-sdk pins its own."; \
	  $(CACHE)/lock-bench/bin/python -c 'import json, sys; r = json.load(open(sys.argv[1])); print("\n".join(sorted((i["metadata"]["name"] + "==" + i["metadata"]["version"] for i in r["install"]), key=str.lower)))' $(CACHE)/lock-bench/report.json; } > constraints-bench-gpu.txt
	rm -rf $(CACHE)/lock-bench

clean: ## remove what make and the tests created (the venv and node_modules stay)
	rm -rf build cdk.out $(CACHE)/staged $(CACHE)/local-layers .pytest_cache .mypy_cache .ruff_cache bench/results
