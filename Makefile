# Two commands on a fresh machine: `make demo` (the main job) and `make test` (every check).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The checks install from a lock (requirements/dev.txt, exact versions and hashes), so a fresh
# clone checks what was checked; `make lock` writes it anew. The package's own dependencies
# stay ranges in pyproject.toml: `make test-lowest` and `make test-latest` try both ends.
LOCK := requirements/bootstrap.txt requirements/dev.txt
UV := $(BIN)/uv
# The whole suite (see `test` for the workers).
PYTEST := $(BIN)/pytest -n 3 --dist loadfile --durations=25

.PHONY: setup demo test lint docs bench clean lock test-lowest test-latest pytest

$(STAMP): $(LOCK) pyproject.toml
	PYTHON=$(PYTHON) scripts/make-venv locked $(VENV)
	touch $(STAMP)

setup: $(STAMP)

# Regenerate the locks from pyproject.toml: every extra, for every platform and Python >= 3.10
# (dev.txt); and, on the Python the suite runs on, the package's own dependencies and user-facing
# extras each at the lowest version its range allows (lowest-runtime.txt), with the test tools
# at their newest versions that go with those (lowest.txt): the ranges users rely on are the
# promise tested, not the dev tools' own floors.
RUNTIME_EXTRAS := --extra redis --extra progress --extra fast --extra otel --extra parquet \
	--extra dlt
lock: $(STAMP)
	$(UV) pip compile --quiet --universal --generate-hashes requirements/bootstrap.in \
		-o requirements/bootstrap.txt
	$(UV) pip compile --quiet --universal --python-version 3.10 --all-extras --generate-hashes \
		pyproject.toml -o requirements/dev.txt
	$(UV) pip compile --quiet --python-version 3.11 --resolution lowest-direct $(RUNTIME_EXTRAS) \
		pyproject.toml -o requirements/lowest-runtime.txt
	$(UV) pip compile --quiet --python-version 3.11 --all-extras --generate-hashes \
		-c requirements/lowest-runtime.txt pyproject.toml -o requirements/lowest.txt

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
	$(PYTEST)

# Every test with each range of pyproject.toml at its lowest version, in a fresh venv. The
# lint and docs steps are left out: they check our code, not what it runs on.
test-lowest:
	PYTHON=$(PYTHON) scripts/make-venv lowest .venv-lowest
	scripts/ensure-redis
	$(MAKE) --no-print-directory pytest VENV=.venv-lowest

# Every check with the newest release of everything, in a fresh venv: an upstream release
# that breaks us shows up here, and is fixed on purpose; it never turns a fresh clone red.
test-latest:
	PYTHON=$(PYTHON) scripts/make-venv latest .venv-latest
	touch .venv-latest/.installed-stamp
	$(MAKE) --no-print-directory test VENV=.venv-latest

pytest:
	$(PYTEST)

# Every benchmark in benchmarks/, one table: writes benchmarks/results.md and results.png.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-lowest .venv-latest .mypy_cache .ruff_cache .pytest_cache site
