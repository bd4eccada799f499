# The two commands: `make demo` and `make test`. Both create .venv when it is missing,
# install the package with the pinned constraints, and are safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean install browser

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/neuralfolio demo

# The report's test renders it in headless Chromium (Debian's package; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the report's browser test..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else \
	    echo "chromium not found and not root: the report's browser test will be skipped."; \
	  fi; }

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/labels.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
