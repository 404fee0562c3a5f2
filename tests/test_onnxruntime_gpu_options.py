"""ONNX Runtime's CUDA / TensorRT execution-provider setup, driven on the CPU build of onnxruntime.

The CPU package has no CUDA or TensorRT provider, so these tests replace `get_available_providers` and wrap
`InferenceSession` to record what the backend asks for (providers and their options, I/O binding calls),
while a real CPU session does the work. They check our side of the calls, not onnxruntime-gpu itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from df2infer.artifact import ModelLoadError, read_onnx_contract
from df2infer.backends import onnxruntime_backend as ob
from df2infer.contract import INPUT_NAME, OUTPUT_NAMES, Contract

BUNDLED = Path(ob.__file__).resolve().parent.parent / "models" / "default.onnx"  # a gated-head graph
GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
REAL_SESSION = ort.InferenceSession


class RecordingSession:
    """A real CPU session that reports the providers it was asked for and records I/O binding calls."""

    def __init__(self, path, sess_options=None, providers=None, record=None):
        self._real = REAL_SESSION(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
        self._providers = providers
        self._record = record

    def get_providers(self):
        return [p[0] if isinstance(p, tuple) else p for p in self._providers]

    def io_binding(self):
        return RecordingBinding(self._real, self._record)

    def run_with_iobinding(self, binding):
        binding.run()

    def __getattr__(self, name):
        return getattr(self._real, name)


class FakeOrtValue:
    def __init__(self, array, device):
        self.array, self.device = array, device

    def numpy(self):
        return self.array


class RecordingBinding:
    def __init__(self, session, record):
        self._session, self._record, self._inputs, self._outputs = session, record, {}, []

    def bind_ortvalue_input(self, name, value):
        self._record.append(("bind_ortvalue_input", name, value.device))
        self._inputs[name] = value.array

    def bind_cpu_input(self, name, value):
        self._record.append(("bind_cpu_input", name))
        self._inputs[name] = value

    def bind_output(self, name, device_type="cpu", device_id=0, *rest):
        self._record.append(("bind_output", name, device_type, device_id))
        self._outputs.append(name)

    def run(self):
        self._values = self._session.run(self._outputs, self._inputs)

    def get_outputs(self):
        return [FakeOrtValue(v, "cuda") for v in self._values]

    def copy_outputs_to_cpu(self):
        return self._values


@pytest.fixture
def fake_gpu_ort(monkeypatch):
    record: list = []
    created: list = []

    def session(path, sess_options=None, providers=None):
        created.append(providers)
        return RecordingSession(path, sess_options, providers, record)

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_PROVIDERS))
    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(
        ort.OrtValue, "ortvalue_from_numpy", staticmethod(lambda a, device="cpu", index=0: FakeOrtValue(a, f"{device}:{index}"))
    )
    return record, created


def test_tensorrt_provider_gets_caches_and_a_batch_profile(fake_gpu_ort, tmp_path):
    _, created = fake_gpu_ort
    ob.OnnxRuntimeBackend(BUNDLED, "cuda:0", tensorrt_ep=True, trt_cache_dir=str(tmp_path / "cache"), trt_opt_batch=2)
    name, opts = created[0][0]
    assert name == "TensorrtExecutionProvider"
    c = read_onnx_contract(BUNDLED)
    chw = f"3x{c.input_height}x{c.input_width}"
    assert opts["trt_engine_cache_enable"] is True and opts["trt_timing_cache_enable"] is True
    assert opts["trt_engine_cache_path"] == opts["trt_timing_cache_path"] == str(tmp_path / "cache")
    assert (tmp_path / "cache").is_dir()
    assert opts["trt_profile_min_shapes"] == f"{INPUT_NAME}:1x{chw}"
    assert opts["trt_profile_opt_shapes"] == f"{INPUT_NAME}:2x{chw}"
    assert opts["trt_profile_max_shapes"] == f"{INPUT_NAME}:{c.max_batch}x{chw}"
    assert created[0][1][0] == "CUDAExecutionProvider"


def test_provider_option_names_are_onnxruntime_s():
    """The names as onnxruntime's tensorrt_execution_provider_info.cc spells them (checked against its source)."""
    opts = ob.tensorrt_provider_options(Contract(input_height=32, input_width=64, max_detections=5, max_batch=4), 1)
    assert set(opts) == {
        "device_id",
        "trt_engine_cache_enable",
        "trt_engine_cache_path",
        "trt_timing_cache_enable",
        "trt_timing_cache_path",
        "trt_profile_min_shapes",
        "trt_profile_opt_shapes",
        "trt_profile_max_shapes",
    }
    assert opts["trt_profile_max_shapes"] == "images:4x3x32x64" and opts["device_id"] == 1


def test_cuda_session_binds_device_buffers(fake_gpu_ort):
    record, _ = fake_gpu_ort
    be = ob.OnnxRuntimeBackend(BUNDLED, "cuda:0")
    c = be.contract
    batch = np.full((2, 3, c.input_height, c.input_width), 114.0, np.float32)
    out = be.run(batch)
    assert set(out) == set(OUTPUT_NAMES) and out["boxes"].shape == (2, c.max_detections, 4)
    inputs = [r for r in record if r[0].startswith("bind_") and r[0] != "bind_output"]
    # the image batch is an OrtValue on the GPU; so is the head gate, a real graph input since the bundle was re-exported
    assert inputs == [("bind_ortvalue_input", INPUT_NAME, "cuda:0"), ("bind_ortvalue_input", "min_head_score", "cuda:0")], inputs
    outputs = [r for r in record if r[0] == "bind_output"]
    assert [r[1] for r in outputs] == list(OUTPUT_NAMES) and {r[2] for r in outputs} == {"cuda"}
    device_out = be.run_ortvalues({INPUT_NAME: FakeOrtValue(batch, "cuda:0")})
    assert {v.device for v in device_out.values()} == {"cuda"}


def test_tensorrt_build_failure_of_a_gated_graph_says_so(fake_gpu_ort, monkeypatch, tmp_path):
    def failing(path, sess_options=None, providers=None):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : TensorRT EP failed to create engine from network.")

    monkeypatch.setattr(ort, "InferenceSession", failing)
    with pytest.raises(ModelLoadError) as e:
        ob.OnnxRuntimeBackend(BUNDLED, "cuda:0", tensorrt_ep=True, trt_cache_dir=str(tmp_path))
    msg = str(e.value)
    assert "TensorRT execution provider failed to build" in msg and "gated-head graph" in msg
    assert "truncated" not in msg and "failed to create engine" in msg
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelLoadError, match="truncated, corrupt or not ONNX"):
        ob.OnnxRuntimeBackend(bad, "cuda:0")


def test_missing_onnxruntime_names_both_extras(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"df2infer\[cpu\].*df2infer\[gpu\]"):
        ob.import_onnxruntime()
