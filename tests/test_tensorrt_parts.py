"""The TensorRT/CUDA code's own logic, tested without a GPU and without TensorRT.

Nothing here builds or runs an engine: that needs an NVIDIA GPU and TensorRT, which these machines lack.
Where a test installs a fake `tensorrt` module, it only drives this project's control flow (which error is
raised when a feature is missing); it says nothing about whether a real build works.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from df2infer import artifact
from df2infer.backends import tensorrt_backend as tb
from df2infer.backends.base import ModelLoadError
from df2infer.contract import Contract, ContractError
from df2infer.engine import builder
from df2infer.ops.cuda.cuda_array import parse_cuda_array_interface
from df2infer.ops.cuda.cuda_check import CudaError, cuda_call

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_gpu import write_fake_engine  # noqa: E402

CONTRACT = Contract(input_height=64, input_width=96, max_detections=10)


def _real_tensorrt_present() -> bool:
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Builder")


# ------------------------------------------------------------------ missing TensorRT
def test_build_without_tensorrt_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(tb.TensorRTUnavailable) as e:
        builder.build_engine(tmp_path / "m.onnx", tmp_path / "m")
    msg = str(e.value)
    assert "pip install tensorrt" in msg and "python3-libnvinfer" in msg


@pytest.mark.skipif(_real_tensorrt_present(), reason="real TensorRT is installed here")
def test_stub_only_tensorrt_is_not_mistaken_for_tensorrt(tmp_path):
    """tensorrt-stubs makes `import tensorrt` succeed as an empty namespace package; that must still be 'not installed'."""
    with pytest.raises(tb.TensorRTUnavailable, match="pip install tensorrt"):
        builder.build_engine(tmp_path / "m.onnx", tmp_path / "m")


def test_bad_batch_profile_is_refused_before_tensorrt(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        builder.build_engine(tmp_path / "m.onnx", tmp_path / "m", min_batch=4, opt_batch=2, max_batch=8)
    with pytest.raises(ValueError, match="weak_typing_precision"):
        builder.build_engine(tmp_path / "m.onnx", tmp_path / "m", weak_typing_precision="bf16")


# ------------------------------------------------------------------ feature detection, on the strict stand-in TensorRT
@pytest.fixture
def trt_version(strict_gpu, monkeypatch):
    """install(version) -> the stand-in `tensorrt` of that version (its API as that version has it)."""
    from strict_gpu import make_tensorrt

    sim = strict_gpu()

    def install(version: str):
        trt = make_tensorrt(sim, version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return install


def test_weak_typing_refused_where_tensorrt_removed_it(trt_version, tmp_path):
    """TensorRT 11 (no BuilderFlag.FP16/INT8, no calibrator): fp16/int8 weak typing is a clear error."""
    trt_version("11.0.0")
    with pytest.raises(builder.WeakTypingUnavailable, match=r"BuilderFlag\.FP16.*TensorRT 11\.0\.0") as e:
        builder.build_engine(tmp_path / "m.onnx", tmp_path / "m", weak_typing_precision="fp16")
    assert "leave weak_typing_precision unset" in str(e.value)
    with pytest.raises(builder.WeakTypingUnavailable, match="IInt8EntropyCalibrator2"):
        builder.build_engine(tmp_path / "m.onnx", tmp_path / "m", weak_typing_precision="int8")


def test_weak_typing_offered_where_tensorrt_still_has_it(trt_version, tmp_path):
    """JetPack 6's TensorRT 10.3 (flags and calibrator present): no refusal; the build then stops at the missing ONNX."""
    trt = trt_version("10.3.0.30")
    assert builder.weak_typing_problem(trt, "int8") is None
    with pytest.raises(FileNotFoundError, match="m.onnx"):
        builder.build_engine(tmp_path / "m.onnx", tmp_path / "m", weak_typing_precision="int8")


def test_tensorrt_without_strong_typing_asks_for_weak_precision(trt_version, tmp_path):
    """JetPack 5's TensorRT 8.5 (no STRONGLY_TYPED): the default strongly typed build explains the alternative."""
    trt_version("8.5.2.2")
    with pytest.raises(builder.BuildError, match="weak_typing_precision"):
        builder.build_engine(tmp_path / "m.onnx", tmp_path / "m")


# ------------------------------------------------------------------ sidecar checks in the backend
def _engine_with_sidecar(tmp_path: Path, **meta) -> Path:
    meta = {"precision": "fp16", "built_at": "2025-01-01T00:00:00+00:00", **meta}
    return write_fake_engine(tmp_path, CONTRACT, payload=b"not a real engine", **meta)


def test_engine_for_another_compute_capability_is_refused(monkeypatch, tmp_path):
    engine = _engine_with_sidecar(tmp_path, compute_capability="8.7", gpu_name="Orin")
    monkeypatch.setattr(tb, "_environment", lambda index: ("10.3.0.30", "NVIDIA H100", "9.0"))
    with pytest.raises(artifact.EngineCompatibilityError) as e:
        tb.TensorRTBackend(engine)
    msg = str(e.value)
    assert "8.7" in msg and "9.0" in msg and str(engine) in msg and "model.engine.json" in msg


def test_engine_for_another_tensorrt_version_is_refused(monkeypatch, tmp_path):
    engine = _engine_with_sidecar(tmp_path, tensorrt_version="10.13.0.35")
    monkeypatch.setattr(tb, "_environment", lambda index: ("10.3.0.30", "Orin", "8.7"))
    with pytest.raises(artifact.EngineCompatibilityError) as e:
        tb.TensorRTBackend(engine)
    msg = str(e.value)
    assert "10.13.0.35" in msg and "10.3.0.30" in msg and str(engine) in msg


def test_same_major_minor_is_not_enough(tmp_path):
    """An engine built without VERSION_COMPATIBLE loads only on the exact TensorRT version that built it."""
    engine = _engine_with_sidecar(tmp_path, tensorrt_version="10.3.0.26")
    meta = artifact.read_engine_sidecar(engine)
    with pytest.raises(artifact.EngineCompatibilityError, match=r"10\.3\.0\.26.*10\.3\.0\.30"):
        artifact.check_engine_compatibility(meta, engine_path=engine, tensorrt_version="10.3.0.30", compute_capability="8.7")


def test_missing_sidecar_names_it(tmp_path):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"model\.plan\.json"):
        tb.TensorRTBackend(engine)


def test_cpu_device_is_refused(tmp_path):
    engine = _engine_with_sidecar(tmp_path)
    with pytest.raises(tb.DeviceError, match="CUDA device"):
        tb.TensorRTBackend(engine, device="cpu")


# ------------------------------------------------------------------ __cuda_array_interface__
class FakeDeviceArray:
    """Only the interface dict, as CuPy / torch / pycuda expose it; no memory behind it."""

    def __init__(self, shape, typestr="<f4", strides=None, ptr=0x7F0000000000, **extra):
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "data": (ptr, False),
            "version": 3,
            "strides": strides,
            **extra,
        }


SHAPE = (2, 3, 64, 96)


def test_cuda_array_interface_accepts_contiguous_float32():
    view = parse_cuda_array_interface(FakeDeviceArray(SHAPE, stream=2), shape=SHAPE, dtype=np.float32)
    assert view.ptr == 0x7F0000000000 and view.shape == SHAPE and view.stream == 2
    explicit = (3 * 64 * 96 * 4, 64 * 96 * 4, 96 * 4, 4)
    parse_cuda_array_interface(FakeDeviceArray(SHAPE, strides=explicit), shape=SHAPE, dtype=np.float32)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(2, 3, 64, 95)), r"shape \(2, 3, 64, 95\), expected \(2, 3, 64, 96\)"),
        (dict(shape=SHAPE, typestr="<f2"), "dtype float16.*expected float32"),
        (dict(shape=SHAPE, typestr="|u1"), "dtype uint8"),
        (dict(shape=SHAPE, strides=(4, 2 * 64 * 96 * 4, 96 * 4, 4)), "not C-contiguous"),  # batch/channel swapped
        (dict(shape=SHAPE, strides=(3 * 64 * 96 * 4, 64 * 96 * 4, 4, 64 * 4)), "not C-contiguous"),  # transposed HW
        (dict(shape=SHAPE, mask=object()), "masked"),
        (dict(shape=SHAPE, ptr=0), "null device pointer"),
        (dict(shape=SHAPE, stream=0), "stream 0"),
    ],
)
def test_cuda_array_interface_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        parse_cuda_array_interface(FakeDeviceArray(**kwargs), shape=SHAPE, dtype=np.float32)


def test_cuda_array_interface_missing():
    with pytest.raises(TypeError, match="__cuda_array_interface__"):
        parse_cuda_array_interface(np.zeros(SHAPE, np.float32), shape=SHAPE, dtype=np.float32)


# ------------------------------------------------------------------ cuda-python error checking
def test_cuda_call_names_the_call_and_cuda_error_string():
    rt = pytest.importorskip("cuda.bindings.runtime")
    assert cuda_call(rt, (rt.cudaError_t.cudaSuccess, 42), "x") == 42
    with pytest.raises(CudaError) as e:
        cuda_call(rt, (rt.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc(1024)")
    assert "cudaMalloc(1024) failed" in str(e.value) and "cudaErrorMemoryAllocation" in str(e.value)
    assert "out of memory" in str(e.value)


# ------------------------------------------------------------------ calibration (plain Python parts)
def test_calibration_cache_roundtrip(tmp_path):
    cache = builder.CalibrationCache(tmp_path / "sub" / "calib.cache")
    assert cache.read() is None
    cache.write(b"TRT-8600-EntropyCalibration2\nimages: 3c010a14\n")
    assert cache.read() == b"TRT-8600-EntropyCalibration2\nimages: 3c010a14\n"
    (tmp_path / "sub" / "calib.cache").write_bytes(b"")
    assert cache.read() is None  # an empty file means: calibrate again
    builder.CalibrationCache(None).write(b"ignored")  # no path: nothing written, no error
    assert builder.CalibrationCache(None).read() is None


def test_calibration_batches_from_array():
    data = np.arange(5 * 3 * 64 * 96, dtype=np.float32).reshape(5, 3, 64, 96)
    batches = builder.CalibrationBatches(data, CONTRACT, batch_size=2)
    assert len(batches) == 2 and batches.batch_size == 2
    out = np.empty((2, 3, 64, 96), np.float32)
    assert batches.fill(out) and np.array_equal(out, data[:2])
    assert batches.fill(out) and np.array_equal(out, data[2:4])
    assert not batches.fill(out)  # the fifth image does not make a whole batch
    with pytest.raises(ValueError, match="expected"):
        builder.CalibrationBatches(np.zeros((2, 3, 32, 32), np.float32), CONTRACT)


def test_read_onnx_info(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["y"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, 64, 96])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3, 64, 96])],
    )
    model = helper.make_model(graph)
    helper.set_model_props(model, {"df2infer.contract": CONTRACT.to_json()})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    info = artifact.read_onnx_info(path)
    assert info.contract == CONTRACT and not info.has_qdq and len(info.sha256) == 64
    helper.set_model_props(model, {})
    onnx.save(model, str(path))
    with pytest.raises(ContractError, match="df2infer.contract"):
        artifact.read_onnx_info(path)
