# `make run` and `make test` set everything up on a fresh Debian machine: missing Debian packages
# (apt-get), uv, and the locked virtualenv in .venv. Later runs skip whatever is already there.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# uv must use the machine's python3 and never download an interpreter.
export UV_PYTHON_DOWNLOADS := never

VENV   := .venv
PYTHON := $(VENV)/bin/python
# Sentinel: the venv matches uv.lock. It lives in the venv, so deleting .venv resets it.
SYNCED := $(VENV)/.make-synced

HOST ?= 0.0.0.0
PORT ?= 8080
PYTEST_ARGS ?=

# uv from the PATH, else the copy `pip install --user uv` put in python3's user site.
UV = $(if $(shell command -v uv),uv,python3 -m uv)
HAVE_UV_OR_PIP = $(shell (command -v uv || python3 -m uv --version || python3 -m pip --version) 2>/dev/null)

# Debian packages to install, each listed only when what it provides is missing.
DEBS = $(if $(shell command -v python3),,python3) $(if $(HAVE_UV_OR_PIP),,python3-pip)
# espeak-ng and flite are the fallback text-to-speech engines; the tests also make speech with them.
# graphviz draws agent graphs as SVG (`opusagent agent graph -o x.svg`).
DEBS += $(if $(shell command -v espeak-ng),,espeak-ng) $(if $(shell command -v flite),,flite) $(if $(shell command -v dot),,graphviz)
# redis-server: the tests start a throwaway one (sessions that survive a drop or a crash).
DEBS += $(if $(shell command -v redis-server),,redis-server)
# chromium + chromium-driver: the softphone test places a call from a real headless browser.
DEBS += $(if $(wildcard /usr/bin/chromium),,chromium) $(if $(wildcard /usr/bin/chromedriver),,chromium-driver)
# docker-compose: the tests validate deploy/docker-compose.yml with `docker-compose config`.
DEBS += $(if $(shell command -v docker-compose),,docker-compose)

SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help run test test-fast fuzz lint bench bench-pipecat soak docs clean debs llm-server

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# One BLAS thread: numpy's sentence embeddings stall on busy machines otherwise (bench/nlu.py).
run: $(SYNCED) ## Start the server on 0.0.0.0:8080 (change with HOST=... PORT=...)
	OPENBLAS_NUM_THREADS=1 $(VENV)/bin/opusagent serve --host $(HOST) --port $(PORT)

# pytest exits 5 when it collects no test; that is not a failure here.
test: $(SYNCED) llm-server ## Run the whole test suite, slow tests included
	$(PYTHON) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: $(SYNCED) llm-server ## Run the tests not marked slow
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

fuzz: $(SYNCED) ## Fuzz every bridge with 1M random messages each (test runs 10k)
	OPUSAGENT_FUZZ_MESSAGES=1000000 OPUSAGENT_FUZZ_RANDOM=1 $(PYTHON) -m pytest tests/fuzz $(PYTEST_ARGS)

lint: $(SYNCED) ## ruff check, ruff format --check, mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict src/opusagent

bench: $(SYNCED) ## Measure the framework's per-frame overhead
	$(PYTHON) bench/frame_path.py

bench-pipecat: $(SYNCED) ## Compare with Pipecat 1.14 at 1, 5, 20 calls (builds .venv-bench)
	scripts/bench-pipecat-env
	$(PYTHON) bench/compare_pipecat.py --quick

soak: $(SYNCED) ## 200 calls for 10 minutes: all succeed, no leak, no gap > 60 ms (not in test)
	$(PYTHON) bench/soak.py $(SOAK_ARGS)

docs: $(SYNCED) ## Regenerate docs/settings.md
	$(VENV)/bin/opusagent config --markdown > docs/settings.md

clean: ## Remove caches, build and test artefacts (keeps .venv, re-syncs it next time)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist htmlcov .coverage $(SYNCED)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

$(SYNCED): pyproject.toml uv.lock | debs
	$(UV) --version >/dev/null 2>&1 || PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --user uv
	$(UV) sync --locked --extra piper --extra postgres --extra anthropic --extra otlp --extra loadtest --python python3
	touch $@

# The loopback OpenAI-compatible server the LLM tests use (its own venv; built once, then cached).
llm-server: $(SYNCED)
	scripts/llm-server-env

debs:
	@if [ -n "$(strip $(DEBS))" ]; then \
		echo "Installing Debian packages: $(strip $(DEBS))"; \
		$(SUDO) apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends $(strip $(DEBS)); \
	fi
