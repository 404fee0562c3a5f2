# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision come from this machine's local wheel store (see README, "Install").
	$(PY) -m pip install -q -e '.[export,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m df2infer demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -ra

clean:
	rm -rf $(VENV) demo_out .pytest_cache build *.egg-info
