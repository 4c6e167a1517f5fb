# Two commands: `make demo` (train + evaluate a small RetinaNet on the synthetic shapes
# dataset; `make demo MODEL=mask_rcnn` for Mask R-CNN, also faster_rcnn, cascade_mask_rcnn,
# shapemask) and
# `make test` (the whole test suite). Both create .venv and install into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?= retinanet
# Test processes (pytest-xdist): most of a test's time is single-threaded tracing and XLA
# compiling, so two processes keep 2 cores busy.
TEST_WORKERS ?= 2
DEMO_DIR ?= runs/shapes_$(MODEL)

.PHONY: demo test install bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m detection.tools.demo --model $(MODEL) --model_dir $(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

bench: $(STAMP)
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) runs data .pytest_cache
