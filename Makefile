# Two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-faults lint bench bench-embeddings clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Each worker serves Prometheus metrics on 9310 + its queue's index (see docs/metrics.md).
run: export JOBQUEUE_METRICS_PORT ?= 9310
run: $(STAMP)
	$(BIN)/jobqueue dev $(ARGS)

# Changes nothing outside .venv: tests that need what is not here (chromium, a TLS-capable
# redis-server, JOBQUEUE_TEST_DATABASE_URL for PostgreSQL) are skipped, each reason in the summary.
# .ci/run installs those on CI's machine first.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest
	$(MAKE) --no-print-directory docs

# The fault suite alone (also part of `make test`, at its CI size); FAULTS_SCALE=full for full sizes.
test-faults: $(STAMP)
	$(BIN)/pytest -q tests/faults

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link, anchor or API
# reference fails the build. `make test` runs it too.
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench

bench-embeddings: $(STAMP)
	$(BIN)/python -m bench embeddings

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
