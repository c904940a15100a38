# The README's two commands: `make demo` (main job) and `make test` (tests).
# Both create .venv and install the package with what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast docs bench paper-figures

$(BIN)/dnn-spring: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

install: $(BIN)/dnn-spring

# Quick noise x slope phase diagram on the embedded MNIST (mnist5k) -> results/figs/pd_ns_nl_quick.png
# (git-ignored: the committed figs/ are not rewritten)
demo: install
	PATH="$(abspath $(BIN)):$$PATH" PRESET=quick FIGDIR=results/figs bash bash/test_pd_ns_nl.sh

# The whole suite, after the strict docs build (a warning, a broken reference or a
# public name without a docstring fails it).  This is what CI runs.
test: install docs
	$(BIN)/python -m pytest

# The development loop: everything but the tests marked `slow` (about 2 minutes).
test-fast: install
	$(BIN)/python -m pytest -m "not slow" -q

docs: install
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html

bench: install
	$(BIN)/python benchmarks/bench_speed.py
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_spring.py
	$(BIN)/python benchmarks/bench_tracker.py
	$(BIN)/python benchmarks/bench_hf.py --n-seq 64 256 --max-classes 1024

# The paper's four MLP panels on mnist5k (3 seeds; resumable) -> figs/paper_mnist5k/
paper-figures: install
	PATH="$(abspath $(BIN)):$$PATH" bash bash/paper_figures.sh
