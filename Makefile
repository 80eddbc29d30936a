# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make demo   runs the exchange on the embedded broker and shows the queues
#   make test   runs lint, types, layering and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo inbox test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/safeguard demo

# the demo, then Camden's and Islington's inboxes on :8300 and :8301 until Ctrl-C
inbox: $(STAMP)
	$(BIN)/safeguard demo --inbox 8300

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) lint
	scripts/ensure-postgres.sh
	scripts/ensure-tools.sh
	scripts/ensure-kafka.sh start >/dev/null
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --both

clean:
	rm -rf $(VENV) .sgx .sgx-demo .mypy_cache .ruff_cache .pytest_cache
