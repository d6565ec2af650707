# The two commands of the contract: `make demo` and `make test` work on a
# fresh clone with only Python >= 3.10 and make installed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A second environment pins the oldest supported SQLAlchemy series (2.0),
# and a third its oldest supported release (CI runs it).
VENV20 ?= .venv-sa20
SA20 ?= sqlalchemy>=2.0.35,<2.1
VENV_FLOOR ?= .venv-sa-floor
SA_FLOOR ?= sqlalchemy==2.0.35

.PHONY: help install demo test test-sa21 test-sa20 test-sa-floor test-pure test-parallel coverage lint typecheck \
        proxies check-proxies bench bench-all docs clean

help:
	@echo "make demo      run the demo workload on an embedded SQLite file"
	@echo "make test      install everything and run the test suite (SQLAlchemy 2.1 and 2.0)"
	@echo "make test-pure the test suite without the C extension (SCOPED_NO_EXTENSIONS=1)"
	@echo "make test-parallel the registry, proxy and guarantee tests, each run by 4 threads at once"
	@echo "make test-sa-floor the test suite on the oldest supported SQLAlchemy (2.0.35)"
	@echo "make test-peers SQLAlchemy's, Flask-SQLAlchemy's and other suites, pristine and with scoped swapped in"
	@echo "make coverage  the test suite under branch coverage of scoped/; fails below the gate"
	@echo "make lint      ruff check, ruff format --check, mypy --strict (scoped, tests, bench)"
	@echo "make proxies   measure the Session proxies' spec and regenerate their typed source"
	@echo "make bench     per-call proxy overhead against SQLAlchemy's"
	@echo "make bench-all every benchmark in bench/ (scope functions, scopes, logging, asyncio, web, report)"
	@echo "make docs      build the Sphinx documentation"

# Installing also compiles the optional C extension in place, hence its source.
$(BIN)/.installed: pyproject.toml scoped/_speedups.c
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "scoped needs Python >= 3.10 (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV20)/bin/.installed: pyproject.toml scoped/_speedups.c
	$(PYTHON) -m venv $(VENV20)
	$(VENV20)/bin/python -m pip install --quiet --upgrade pip
	$(VENV20)/bin/python -m pip install --quiet -e '.[dev]' '$(SA20)'
	touch $@

$(VENV_FLOOR)/bin/.installed: pyproject.toml scoped/_speedups.c
	$(PYTHON) -m venv $(VENV_FLOOR)
	$(VENV_FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_FLOOR)/bin/python -m pip install --quiet -e '.[dev]' '$(SA_FLOOR)'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python -m scoped demo

test: test-sa21 test-sa20

test-sa21: $(BIN)/.installed
	$(BIN)/python -m pytest

test-sa20: $(VENV20)/bin/.installed
	$(VENV20)/bin/python -m pytest

test-sa-floor: $(VENV_FLOOR)/bin/.installed
	$(VENV_FLOOR)/bin/python -m pytest

test-pure: $(BIN)/.installed
	SCOPED_NO_EXTENSIONS=1 $(BIN)/python -m pytest

# Each test runs in 4 threads at once (pytest-run-parallel); those marked
# thread_unsafe run once, in one thread.
PARALLEL_TESTS := tests/test_registry.py tests/test_proxies.py tests/test_guarantees.py \
                  tests/test_guarantees_async.py
test-parallel: $(BIN)/.installed
	$(BIN)/python -m pytest --parallel-threads=4 $(PARALLEL_TESTS)

# Branch coverage of scoped/ over the suite (SQLAlchemy 2.1, C extension built);
# the gate is fail_under in pyproject.toml. Left to `make test`: the stress tests,
# whose forced thread switches the tracer slows many times over, and the churn
# test, which measures memory growth that coverage's per-thread tracers add to.
coverage: $(BIN)/.installed
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest --cov --cov-report=term -m 'not stress' \
	  --deselect tests/test_cleanup.py::test_churn_of_ten_thousand_scopes_leaves_nothing

# Other projects' own suites, pristine and with scoped's classes installed in
# SQLAlchemy's place, on SQLAlchemy 2.1 and 2.0 (sdists cached in .cache/peers).
.PHONY: test-peers
test-peers: $(BIN)/.installed $(VENV20)/bin/.installed
	$(BIN)/python tools/peers.py
	$(VENV20)/bin/python tools/peers.py

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check scoped tests bench
	$(BIN)/mypy --strict scoped tests bench

proxies: $(BIN)/.installed
	$(BIN)/python tools/proxies.py --write

check-proxies: $(BIN)/.installed
	$(BIN)/python tools/proxies.py --check

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

# Every benchmark, one after another (several minutes on a 2-core machine).
bench-all: bench
	$(BIN)/python bench/bench_scopefuncs.py
	$(BIN)/python bench/bench_scopes.py
	$(BIN)/python bench/bench_logging.py
	$(BIN)/python bench/bench_asyncio.py
	$(BIN)/python bench/bench_web.py
	$(BIN)/python bench/bench_report.py

docs: $(BIN)/.installed
	$(BIN)/sphinx-build -n -W -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(VENV20) $(VENV_FLOOR) docs/_build .mypy_cache .ruff_cache .pytest_cache \
	  .coverage .coverage.* htmlcov \
	  build *.egg-info scoped/*.so
