# The two commands: `make demo` and `make test`. Both create .venv when it is missing,
# install the package with the pinned constraints, and are safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean install

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/neuralfolio demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/labels.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
