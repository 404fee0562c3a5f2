# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo lint test check-extras bundle clean

# The video tests' RTSP server is GStreamer's gst-rtsp-server, run by the system python3 through
# python3-gi (tests/stream_servers.py). Installed when missing and we are root with apt (CI);
# otherwise the RTSP test is skipped and says what to install.
SYSTEM_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
RTSP_CHECK := /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer; Gst.init(None); assert Gst.ElementFactory.find('x264enc')"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision come from this machine's local wheel store (see README, "Install").
	# `cpu`: the CPU onnxruntime (GPU users install `gpu` or `gpu-cu12` instead; see README, "Install").
	$(PY) -m pip install -q -e '.[export,dev,cpu,retrieval]'
	# TensorRT itself cannot be installed without an NVIDIA GPU; its type stubs let mypy check our
	# TensorRT code (--no-deps: the stubs pin a tensorrt wheel that is not installable here).
	$(PY) -m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1
	$(PY) -m pip install -q cuda-bindings==13.5.0
	# cuda-bindings 12.x in a venv of its own (not importable by default): tests/test_cuda_bindings_calls.py runs the
	# GPU code's CUDA calls through both majors (CUDA 12 drivers, Jetson; CUDA 13 drivers). Its own venv, so pip checks
	# it only against its own dependencies, not against torch's cuda-bindings 13 requirement in $(VENV).
	rm -rf build/cuda-bindings-12 && $(PYTHON) -m venv --without-pip build/cuda-bindings-12
	$(PY) -m pip --python build/cuda-bindings-12/bin/python install -q 'cuda-bindings>=12.9,<13'
	touch $(STAMP)

setup: $(STAMP) system-deps

system-deps:
	@if $(RTSP_CHECK) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(SYSTEM_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null \
			|| echo "warning: apt-get could not install $(SYSTEM_PACKAGES); the RTSP video test will be skipped"; \
	else echo "note: the RTSP video test will be skipped; to run it: sudo apt-get install $(SYSTEM_PACKAGES)"; fi

demo: $(STAMP)
	$(PY) -m df2infer demo --out demo_out

# The runtime core (with the rooms stream/, sinks/ and retrieval/) and the TensorRT code are type-checked (the TensorRT code against tensorrt-stubs, copied
# and fixed into build/typing-stubs by tests/trt_stubs.py; see mypy.ini).
MYPY_FILES := df2infer/api.py df2infer/artifact.py df2infer/contract.py df2infer/cpu_features.py df2infer/errors.py df2infer/images.py df2infer/latency.py df2infer/results.py \
	df2infer/backends df2infer/ops df2infer/gpu df2infer/stream df2infer/sinks df2infer/retrieval export/tensorrt_builder.py

lint: $(STAMP)
	$(PY) -m ruff check df2infer export tests benchmarks
	$(PY) -m ruff format --check df2infer export tests benchmarks
	$(PY) tests/trt_stubs.py
	$(PY) -m mypy --config-file mypy.ini $(MYPY_FILES)

# Includes the slow tests: the held-out accuracy, the wheel's contents, and the package installed into a fresh
# venv, without extras (imports; load() names the ONNX Runtime extras) then with `cpu` running
# df2infer.load().predict (tests/test_packaging.py).
test: lint system-deps
	$(PY) -m pytest -q -ra

# Do the GPU install extras resolve against the package index? (also part of `make test`; skips offline)
check-extras: $(STAMP)
	$(PY) -m pytest -q -ra tests/test_install_extras.py

# Regenerate df2infer/models/default{,.int8}.onnx from export/checkpoints/ (see export/bundle.py).
bundle: $(STAMP)
	$(PY) -m df2infer_export.bundle

clean:
	rm -rf $(VENV) demo_out .pytest_cache build *.egg-info
