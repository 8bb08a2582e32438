# Every target creates (or reuses) .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-unit test-gpu lint docs bench bench-full bench-smoke bench-quality bench-torch-free bench-distributed clean

install: $(STAMP)

# torch is pinned and installed first: the local CPU wheel, not a CUDA build of several GB.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cherche-faiss demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration" tests/unit

# Linter, formatter and type checker (their settings are in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (docs/, mkdocs.yml): any warning fails the build. mkdocstrings reads the
# docstrings statically, so nothing of the package (nor torch) is imported.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Cherche 2.2.1 is a baseline of the benchmarks only: the bench extra, never a runtime dependency.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py --size quick

# The full suite needs every SciFact sentence encoded (about 7 minutes once, then cached).
bench-full: $(BENCH_STAMP)
	$(BIN)/python benchmarks/embeddings.py --build --all
	$(BIN)/python benchmarks/run.py --size full --results-dir benchmarks/results/full

# Retrieval quality on SciFact (../shared): the README's quality table, about 4 minutes.
bench-quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py

# Torch-free serving against torch and Cherche 2.2.1 (about 10 minutes the first time: SciFact's
# abstracts are encoded once for its nDCG@10, then cached).
bench-torch-free: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py --size quick --only torch_free --results-dir benchmarks/results/torch_free

# Sharded retrieval on a three-node Ray cluster of this machine against one index (about 4 minutes).
bench-distributed: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py --size quick --only distributed --results-dir benchmarks/results/distributed

bench-smoke: $(STAMP)
	$(BIN)/python benchmarks/run.py --size smoke --results-dir benchmarks/results/smoke

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu tests/gpu

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
