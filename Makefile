# Two entry points: `make demo` starts the web app with the demo project, `make test` installs
# what the tests need and runs them all. Both create the virtual environment .venv when it is
# missing, with the first Python 3.11 or newer found on PATH (or PYTHON=/path/to/python).

VENV := .venv
BIN := $(VENV)/bin
# torch comes first and pinned: an unpinned torch, asked for by the nn and embeddings extras,
# would pull a CUDA build of several GB instead of the CPU wheel.
TORCH := torch==2.13.0
TEST_EXTRAS := .[test,nn,embeddings,celery]
PYTEST_ARGS ?=

.PHONY: demo test lint check-tests chromium clean-venv

demo: $(VENV)/.installed-base
	$(BIN)/labelandlearn demo

test: $(VENV)/.installed-test chromium
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
	$(MAKE) --no-print-directory check-tests

# pytest exits with 5 when it collected no tests; that is a failure here, not a pass.
check-tests:
	@status=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

$(BIN)/python:
	@python=$${PYTHON:-}; \
	if [ -z "$$python" ]; then \
	  for candidate in python3.13 python3.12 python3.11 python3; do \
	    if command -v $$candidate >/dev/null 2>&1 && \
	       $$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	      python=$$candidate; break; \
	    fi; \
	  done; \
	fi; \
	if [ -z "$$python" ]; then \
	  echo "error: Label and Learn needs Python 3.11 or newer; install it or set PYTHON=" >&2; \
	  exit 1; \
	fi; \
	echo "creating $(VENV) with $$python"; \
	$$python -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '$(TEST_EXTRAS)'
	touch $(VENV)/.installed-base $@

# The browser tests drive Debian's chromium. CI runs as root and installs it; elsewhere the
# browser tests skip when it is missing.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "note: /usr/bin/chromium is missing, so the browser tests will be skipped"; \
	  fi; \
	fi

clean-venv:
	rm -rf $(VENV)
