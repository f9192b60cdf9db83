# The two commands of the README: `make demo` and `make test`.
# Each creates its own virtual environment in .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# PostgreSQL for the storage tests (trust auth on loopback); override as needed.
VAULT_TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export VAULT_TEST_DATABASE_URL

.PHONY: demo test lint install audit-deps clean

# One pip call for both: the vault depends on preference-vault-sdk, which pip must take
# from ./client_sdk and never look for on a package index.
$(STAMP): pyproject.toml client_sdk/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./client_sdk -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/prefvault demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	scripts/ensure-chromium
	$(BIN)/pytest

# Known vulnerabilities in every installed dependency of the vault, the SDK and the tests,
# from the advisory database behind PyPI; --strict fails when a package could not be checked.
audit-deps: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-audit
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
