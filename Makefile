# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bundle clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision come from this machine's local wheel store (see README, "Install").
	$(PY) -m pip install -q -e '.[export,dev,retrieval]'
	# TensorRT itself cannot be installed without an NVIDIA GPU; its type stubs let mypy check our
	# TensorRT code (--no-deps: the stubs pin a tensorrt wheel that is not installable here).
	$(PY) -m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1
	$(PY) -m pip install -q cuda-bindings==13.5.0
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m df2infer demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -ra

# Regenerate df2infer/models/default{,.int8}.onnx from export/checkpoints/ (see export/bundle.py).
bundle: $(STAMP)
	$(PY) -m export.bundle

clean:
	rm -rf $(VENV) demo_out .pytest_cache build *.egg-info
