# Every target creates and uses .venv, so a fresh machine needs only Python, pip and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench bench-quick lint install docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hybridai demo

# One BLAS thread per process: tests run many processes on few cores, and OpenBLAS threads that
# spin waiting for a core made a small MLP's training take minutes instead of seconds. Three
# workers, a test file each at a time (module fixtures stay shared): most tests wait on the
# processes they start, so the run takes well under half its serial time on two cores.
test: $(STAMP)
	bash tests/system_packages.sh
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest tests -q -n 3 --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

bench: $(STAMP)
	$(BIN)/python bench/infer.py
	$(BIN)/python bench/router.py
	$(BIN)/python bench/tls.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/dataplane.py
	$(BIN)/python bench/lifecycle.py
	$(BIN)/python bench/cascade.py
	$(BIN)/python bench/hard_examples.py
	$(BIN)/python bench/operations.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/serving_binary.py
	$(BIN)/python bench/serving_batching.py
	$(BIN)/python bench/serving_remote.py
	$(BIN)/python bench/serving_grpc.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/install.py
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/usecases.py

bench-quick: $(STAMP)
	$(BIN)/python bench/infer.py --quick
	$(BIN)/python bench/router.py --quick
	$(BIN)/python bench/tls.py --quick
	$(BIN)/python bench/ingest.py --quick
	$(BIN)/python bench/dataplane.py --quick
	$(BIN)/python bench/lifecycle.py --quick
	$(BIN)/python bench/cascade.py --quick
	$(BIN)/python bench/hard_examples.py --quick
	$(BIN)/python bench/operations.py --quick
	$(BIN)/python bench/serving.py --quick
	$(BIN)/python bench/serving_binary.py --quick
	$(BIN)/python bench/serving_batching.py --quick
	$(BIN)/python bench/serving_remote.py --quick
	$(BIN)/python bench/serving_grpc.py --quick
	$(BIN)/python bench/fleet.py --quick
	$(BIN)/python bench/install.py --quick
	$(BIN)/python bench/planner.py --quick
	$(BIN)/python bench/usecases.py --quick

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/python -m hybridai.cli.docs > docs/settings.md
	$(BIN)/python -m hybridai.governance.rbac > docs/rbac.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
