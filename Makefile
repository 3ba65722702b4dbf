# Two commands on a fresh machine: `make demo` (the main job) and `make test` (every check).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: setup demo test lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

demo: setup
	$(BIN)/getbill demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict getbill_async tests
	$(BIN)/bandit -q -c pyproject.toml -r getbill_async
	$(BIN)/python scripts/audit-deps $(BIN)/pip-audit

# The site (guides, API and CLI reference) into site/; --strict fails on a broken link or name.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Three workers, one test file each at a time: most tests wait on sockets, timers and child
# processes, not on the CPU, so three share two cores well (the suite takes half the time).
test: lint docs
	scripts/ensure-redis
	$(BIN)/pytest -n 3 --dist loadfile --durations=25

# Every benchmark in benchmarks/, one table: writes benchmarks/results.md and results.png.
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
