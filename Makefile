# Two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-embeddings clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Each worker serves Prometheus metrics on 9310 + its queue's index (see README "Metrics").
run: export JOBQUEUE_METRICS_PORT ?= 9310
run: $(STAMP)
	$(BIN)/jobqueue dev $(ARGS)

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

# The dashboard's browser test drives Debian's chromium; install it where apt can and it is absent.
chromium:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && apt-get install -y -qq chromium; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench

bench-embeddings: $(STAMP)
	$(BIN)/python -m bench embeddings

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
