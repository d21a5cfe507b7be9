# darkshower: the two commands a user needs are `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: demo check test test-all bench install clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; set PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/darkshower demo --out $(DEMO_OUT)

# static checks (configs in pyproject.toml: [tool.ruff], [tool.mypy]); run first by `make test`
check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

test: check
	$(BIN)/python -m pytest -q -m "not slow"

test-all: check
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) runs build *.egg-info
