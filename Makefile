# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo lint test check-extras arm-check bundle clean

# The video tests' RTSP server is GStreamer's gst-rtsp-server, run by the system python3 through
# python3-gi (tests/stream_servers.py); g++ builds the CPU shim of the CUDA kernels (df2infer/ops/cuda/shim).
# The GStreamer source (df2infer/stream/gst.py) needs the GStreamer typelibs, the software H.264 decoder
# (gstreamer1.0-libav), and, to build PyGObject into the venv (the `gstreamer` extra), libgirepository1.0-dev,
# libcairo2-dev and pkg-config. The MQTT events test runs Debian's mosquitto broker (tests/test_outputs_mqtt.py),
# the live page's test Debian's headless chromium (tests/test_outputs_web.py). Installed when missing and we are
# root with apt (CI); otherwise those tests are skipped and say what to install. Under CI (CI set) a missing one
# fails its tests instead (tests/system_deps.py).
SYSTEM_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly g++ \
	gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-libav libgirepository1.0-dev libcairo2-dev pkg-config \
	mosquitto chromium
RTSP_CHECK := pkg-config --exists gobject-introspection-1.0 cairo && /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); \
	gi.require_version('GstApp', '1.0'); from gi.repository import Gst, GstRtspServer, GstApp; Gst.init(None); \
	assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('avdec_h264')" \
	&& test -x /usr/sbin/mosquitto && test -x /usr/bin/chromium

# system-deps first: the `gstreamer` extra builds PyGObject against the system's girepository and cairo.
$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision come from this machine's local wheel store (see README, "Install").
	# `cpu`: the CPU onnxruntime (GPU users install `gpu` or `gpu-cu12` instead; see README, "Install"); `openvino`: the
	# second CPU backend (tests/test_openvino_backend.py).
	$(PY) -m pip install -q -e '.[export,dev,cpu,retrieval,bench,openvino]'
	# GStreamer's Python bindings (PyGObject<3.51, built here in ~25 s); without the system packages the build fails
	# and the GStreamer tests say what to install (under CI=true they fail).
	$(PY) -m pip install -q -e '.[gstreamer]' || echo "warning: PyGObject did not build; the GStreamer source tests will be skipped"
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
	@if $(RTSP_CHECK) >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(SYSTEM_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null \
			|| echo "warning: apt-get could not install $(SYSTEM_PACKAGES); the RTSP video, CUDA-shim, MQTT and page tests will be skipped (fail under CI)"; \
	else echo "note: the RTSP video, CUDA-shim, MQTT and page tests will be skipped; to run them: sudo apt-get install $(SYSTEM_PACKAGES)"; fi

demo: $(STAMP)
	$(PY) -m df2infer demo --out demo_out

# The runtime core (with the rooms stream/, sinks/ and retrieval/) and the TensorRT code are type-checked (the TensorRT code against tensorrt-stubs, copied
# and fixed into build/typing-stubs by tests/trt_stubs.py; see mypy.ini).
MYPY_FILES := df2infer/api.py df2infer/artifact.py df2infer/contract.py df2infer/cpu_features.py df2infer/credentials.py df2infer/errors.py df2infer/images.py df2infer/latency.py df2infer/results.py \
	df2infer/backends df2infer/ops df2infer/stream df2infer/sinks df2infer/retrieval df2infer/engine

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

# The CPU path and the INT8 file on aarch64 under qemu-user (no ARM hardware needed): FP32 and INT8 detections and AP
# against x86, the INT8 refusal rule under emulated CPUs with and without dotprod / i8mm, the `jetson` extra resolved
# for aarch64 / Python 3.10. Needs root and the network; not part of `make test` (on the shared 2-core machine ~1 h the
# first time, ~27 min with the userland cached: docs/int8.md, "ARM, under emulation"). Writes
# benchmarks/results/arm_check_aarch64.{json,md}; fails when a check does.
arm-check: $(STAMP)
	benchmarks/arm_check.sh

# Regenerate df2infer/models/default{,.int8}.onnx from export/checkpoints/ (see export/bundle.py).
bundle: $(STAMP)
	$(PY) -m df2infer_export.bundle

clean:
	rm -rf $(VENV) demo_out .pytest_cache build *.egg-info
