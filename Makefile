# The two commands of the contract: `make demo` and `make test` work on a
# fresh clone with only Python >= 3.10 and make installed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The test matrix (noxfile.py): nox and uv live in .venv, each leg in .nox/.
NOX := $(BIN)/nox
REPORT := .nox/report.json
# The peer suites run once more under SQLAlchemy 2.0, from this environment.
VENV20 ?= .venv-sa20
SA20 ?= sqlalchemy>=2.0.35,<2.1

.PHONY: help install demo test matrix matrix-rest test-pure test-sa-floor test-parallel coverage \
        lint typecheck proxies check-proxies package bench bench-all docs clean

help:
	@echo "make demo      run the demo workload on an embedded SQLite file"
	@echo "make test      the test suite on the newest Python found, SQLAlchemy 2.1 and 2.0"
	@echo "make matrix    every leg: each supported Python x SQLAlchemy series, without the"
	@echo "               C extension, SQLAlchemy 2.0.35, the checks, the built wheel (CI)"
	@echo "               one leg: $(NOX) -s tests-3.12-sa2.0 (list: $(NOX) -l)"
	@echo "make test-pure the test suite without the C extension, where the proxies use it"
	@echo "make test-parallel the registry, proxy and guarantee tests, each run by 4 threads at once"
	@echo "make test-sa-floor the test suite on the oldest supported SQLAlchemy (2.0.35)"
	@echo "make test-peers SQLAlchemy's, Flask-SQLAlchemy's and other suites, pristine and with scoped swapped in"
	@echo "make coverage  the test suite under branch coverage of scoped/; fails below the gate"
	@echo "make lint      ruff check, ruff format --check, mypy --strict (scoped, tests, bench)"
	@echo "make package   build the sdist and wheel, twine check, test the installed wheel"
	@echo "make proxies   measure the Session proxies' spec and regenerate their typed source"
	@echo "make bench     per-call proxy overhead against SQLAlchemy's"
	@echo "make bench-all every benchmark in bench/ (scope functions, scopes, logging, asyncio, web, report)"
	@echo "make docs      build the Sphinx documentation"

# Installing also compiles the optional C extension in place, hence its source.
# pip 25.1 reads dependency groups (--group).
$(BIN)/.installed: pyproject.toml scoped/_speedups.c
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "scoped needs Python >= 3.10 (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[dev]' --group tools
	touch $@

$(VENV20)/bin/.installed: pyproject.toml scoped/_speedups.c
	$(PYTHON) -m venv $(VENV20)
	$(VENV20)/bin/python -m pip install --quiet --upgrade pip
	$(VENV20)/bin/python -m pip install --quiet -e '.[dev]' '$(SA20)'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python -m scoped demo

# The newest Python found is there by definition: a miss means none was found.
test: $(BIN)/.installed
	$(NOX) -t fast --error-on-missing-interpreters

# Every leg: make test's, then the rest (CI runs the two separately).
matrix: test matrix-rest

# The legs make test does not run, then each one's outcome and wall time;
# fails if any leg failed.
matrix-rest: $(BIN)/.installed
	@status=0; $(NOX) -t rest --report $(REPORT) || status=$$?; \
	$(BIN)/python -c 'import json, sys; [print("{name:<24} {result:<8} {duration:5.0f} s".format(**s)) for s in json.load(open(sys.argv[1]))["sessions"]]' $(REPORT); \
	exit $$status

test-pure: $(BIN)/.installed
	$(NOX) -t pure

test-sa-floor: $(BIN)/.installed
	$(NOX) -t floor

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
	$(NOX) -s lint

typecheck: lint

package: $(BIN)/.installed
	$(NOX) -t release

proxies: $(BIN)/.installed
	$(BIN)/python tools/proxies.py --write

check-proxies: $(BIN)/.installed
	$(NOX) -s proxies

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
	$(BIN)/python bench/bench_instructions.py

docs: $(BIN)/.installed
	$(NOX) -s docs

clean:
	rm -rf $(VENV) $(VENV20) .nox dist docs/_build .mypy_cache .ruff_cache .pytest_cache \
	  .coverage .coverage.* htmlcov \
	  build *.egg-info scoped/*.so
