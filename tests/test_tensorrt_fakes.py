"""The TensorRT backend and engine builder driven end to end on the strict CUDA/TensorRT stand-ins (tests/strict_gpu.py).

The stand-ins record every TensorRT and CUDA call and refuse what the real ones refuse (an engine whose plugins
are not registered, a version-compatible engine without host code allowed, a pointer that is not device
memory...). These tests check call order and arguments: plugin registration before deserialization, the
engine version rule, stream ordering for device inputs, no CUDA graph capture, device-resident outputs, the
NMS box limit. Nothing here runs on a GPU; see docs/tensorrt.md for what the stand-ins cannot catch.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.runtime")

from df2infer import artifact  # noqa: E402
from df2infer.backends import tensorrt_backend as tb  # noqa: E402
from df2infer.backends.base import DeviceOutputBackend  # noqa: E402
from df2infer.contract import OUTPUT_NAMES, Contract, ContractError  # noqa: E402
from df2infer.engine import builder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_gpu import names, write_fake_engine  # noqa: E402
from strict_gpu import Device, engine_blob, make_tensorrt, vc_plugin_library  # noqa: E402

CONTRACT = Contract(input_height=64, input_width=96, max_detections=10)
SHAPE = (2, 3, 64, 96)


def write_engine(tmp_path: Path, **meta) -> Path:
    """An engine of the stand-in TensorRT (using the RoiAlign plugin, as the deploy graphs do) and its sidecar."""
    vc, version = bool(meta.get("version_compatible")), meta.get("tensorrt_version", "10.3.0.30")
    libs = (vc_plugin_library(version),) if vc else ()  # what the builder serializes into a version-compatible engine
    blob = engine_blob(CONTRACT, trt_version=version, version_compatible=vc, plugins=("ROIAlign_TRT",), vc_plugin_libraries=libs)
    return write_fake_engine(tmp_path, CONTRACT, payload=blob, **meta)


@pytest.fixture
def gpu(strict_gpu, monkeypatch):
    """The strict stand-ins (one Orin-like GPU); returns (log, sim, install): install(version=...) swaps in a
    TensorRT of another version."""
    sim = strict_gpu(devices=[Device(0, name="Orin")])

    def install(version: str = "10.3.0.30", plugins_ok: bool = True):
        sim.plugins_ok = plugins_ok
        monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(sim, version))

    return sim.log, sim, install


class CaiV2:
    """What a CUDA torch tensor exposes: interface version 2, no `stream` key."""

    def __init__(self, ptr: int, **extra) -> None:
        self.__cuda_array_interface__ = {"shape": SHAPE, "typestr": "<f4", "data": (ptr, False), "version": 2, "strides": None, **extra}


# ------------------------------------------------------------------ defect 1: plugins before deserialization
def test_plugins_are_registered_before_the_engine_is_deserialized(gpu, tmp_path):
    log, _, _ = gpu
    with tb.TensorRTBackend(write_engine(tmp_path)):
        pass
    calls = names(log, "trt.")
    assert "trt.init_libnvinfer_plugins" in calls, f"plugins never registered; TensorRT calls: {calls}"
    assert calls.index("trt.init_libnvinfer_plugins") < calls.index("trt.deserialize_cuda_engine"), calls
    assert ("trt.init_libnvinfer_plugins", "") in log  # the default (empty) plugin namespace


def test_failed_plugin_registration_is_logged(gpu, tmp_path, caplog):
    _, _, install = gpu
    install(plugins_ok=False)
    with caplog.at_level(logging.WARNING), pytest.raises(artifact.ModelLoadError, match="could not deserialize"):
        tb.TensorRTBackend(write_engine(tmp_path))  # the engine uses ROIAlign_TRT, which is then missing
    assert "init_libnvinfer_plugins failed" in caplog.text


# ------------------------------------------------------------------ defect 2: exact-version rule
def test_plain_engine_needs_the_exact_tensorrt_version(tmp_path):
    engine = write_engine(tmp_path, tensorrt_version="10.3.0.26")
    meta = artifact.read_engine_sidecar(engine)
    with pytest.raises(artifact.EngineCompatibilityError) as e:
        artifact.check_engine_compatibility(meta, engine_path=engine, tensorrt_version="10.3.0.30", compute_capability="8.7")
    assert "10.3.0.26" in str(e.value) and "10.3.0.30" in str(e.value) and "VERSION_COMPATIBLE" in str(e.value)
    artifact.check_engine_compatibility(meta, engine_path=engine, tensorrt_version="10.3.0.26", compute_capability="8.7")


@pytest.mark.parametrize(
    "installed, ok",
    [
        ("10.3.0.26", True),
        ("10.3.0.30", True),
        ("10.13.0.35", True),
        ("11.0.0.1", True),  # TensorRT 10 version-compatible engines run on TensorRT 11
        ("10.1.0.27", False),
        ("12.0.0.1", False),
        ("9.0", False),
    ],
)
def test_version_compatible_engine_loads_on_newer_same_major_and_on_the_next(tmp_path, installed, ok):
    engine = write_engine(tmp_path, tensorrt_version="10.3.0.26", version_compatible=True)
    meta = artifact.read_engine_sidecar(engine)

    def check():
        return artifact.check_engine_compatibility(meta, engine_path=engine, tensorrt_version=installed, compute_capability="8.7")

    if ok:
        check()
    else:
        with pytest.raises(artifact.EngineCompatibilityError, match=installed):
            check()


def test_version_compatible_engine_allows_host_code_before_deserializing(gpu, tmp_path):
    log, _, install = gpu
    install(version="10.4.0.26")
    with tb.TensorRTBackend(write_engine(tmp_path, tensorrt_version="10.3.0.30", version_compatible=True), trust_engine_code=True):
        pass
    calls = names(log, "trt.")
    assert calls.index("trt.Runtime.engine_host_code_allowed") < calls.index("trt.deserialize_cuda_engine")
    log.clear()
    install(version="10.3.0.30")
    with tb.TensorRTBackend(write_engine(tmp_path)):  # a plain engine: no host code allowed
        pass
    assert "trt.Runtime.engine_host_code_allowed" not in names(log)


def _tiny_onnx(
    tmp_path: Path, nms_boxes: int = 0, nms_classes: int = 1, score_threshold: float | None = 0.05, contract: Contract = CONTRACT
) -> Path:
    """A graph with the contract's input, optionally one NonMaxSuppression over [1, nms_boxes, 4] boxes."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Identity", ["images"], ["y"])]
    inits, outputs = [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3, 64, 96])]
    if nms_boxes:
        inits += [
            numpy_helper.from_array(np.zeros((1, nms_boxes, 4), np.float32), "boxes"),
            numpy_helper.from_array(np.zeros((1, nms_classes, nms_boxes), np.float32), "scores"),
            numpy_helper.from_array(np.array([10], np.int64), "max_out"),
            numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
        ]
        ins = ["boxes", "scores", "max_out", "iou"]
        if score_threshold is not None:
            inits.append(numpy_helper.from_array(np.array([score_threshold], np.float32), "thr"))
            ins.append("thr")
        nodes.append(helper.make_node("NonMaxSuppression", ins, ["sel"], name="nms/det"))
        outputs.append(helper.make_tensor_value_info("sel", TensorProto.INT64, ["K", 3]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, 64, 96])], outputs, initializer=inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"df2infer.contract": contract.to_json()})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("version_compatible", [False, True])
def test_builder_records_version_compatibility_in_the_sidecar(gpu, tmp_path, version_compatible):
    log, _, _ = gpu
    trt = sys.modules["tensorrt"]
    engine = builder.build_engine(_tiny_onnx(tmp_path), tmp_path / "m", max_batch=4, version_compatible=version_compatible)
    meta = json.loads(artifact.engine_sidecar_path(engine).read_text())
    assert meta["version_compatible"] is version_compatible and meta["tensorrt_version"] == "10.3.0.30"
    flag_set = ("trt.config.set_flag", trt.BuilderFlag.VERSION_COMPATIBLE) in log
    assert flag_set is version_compatible


# ------------------------------------------------------------------ defect 3: stream ordering of device inputs
def _order(log: list) -> list:
    return [e for e in log if e[0] in ("cuda.cudaEventRecord", "cuda.cudaStreamWaitEvent", "trt.execute_async_v3")]


def test_device_input_without_stream_key_waits_on_the_legacy_default_stream(gpu, tmp_path):
    log, _, _ = gpu
    with tb.TensorRTBackend(write_engine(tmp_path)) as be:
        log.clear()
        be.run_device(CaiV2(be._buffers["images"].device_ptr), 2)
        stream, event = be._stream, be._event
    order = _order(log)
    assert [e[0] for e in order] == ["cuda.cudaEventRecord", "cuda.cudaStreamWaitEvent", "trt.execute_async_v3"], order
    assert order[0][1] is event and order[0][2] == 1  # recorded on cudaStreamLegacy (handle 1)
    assert order[1][1] is stream and order[1][2] is event


def test_device_input_with_stream_none_or_a_stream(gpu, tmp_path):
    log, _, _ = gpu
    with tb.TensorRTBackend(write_engine(tmp_path)) as be:
        ptr = be._buffers["images"].device_ptr
        log.clear()
        be.run_device(CaiV2(ptr, version=3, stream=None), 2)  # v3 `stream: None`: the producer guarantees readiness
        assert [e[0] for e in _order(log)] == ["trt.execute_async_v3"]
        log.clear()
        producer = be._cudart.cudaStreamCreateWithFlags(0)[1]
        be.run_device(CaiV2(ptr, version=3, stream=int(producer)), 2)
        assert _order(log)[0][:1] + _order(log)[0][2:] == ("cuda.cudaEventRecord", int(producer))
        be._cudart.cudaStreamDestroy(producer)
        log.clear()
        be.run_device(ptr, 2, producer_stream=2)  # raw pointer, producer on the per-thread stream
        assert _order(log)[0][2] == 2 and _order(log)[-1][0] == "trt.execute_async_v3"


# ------------------------------------------------------------------ defect 4: no CUDA graph capture
def test_cuda_graphs_are_refused_with_the_reason(gpu, tmp_path):
    with pytest.raises(ValueError, match="data-dependent shapes"):
        tb.TensorRTBackend(write_engine(tmp_path), use_cuda_graph=True)


def test_batch_changes_set_the_shape_before_every_enqueue_and_never_capture(gpu, tmp_path):
    log, sim, _ = gpu
    with tb.TensorRTBackend(write_engine(tmp_path)) as be:
        log.clear()
        for b in (2, 3, 2, 2):
            out = be.run(np.zeros((b, 3, 64, 96), np.float32))
            assert out["boxes"].shape == (b, 10, 4) and out["num_dets"].dtype == np.int32
    assert not {"cudaStreamBeginCapture", "cudaGraphLaunch", "cudaGraphInstantiate"} & set(sim.calls)
    shapes = [e[2][0] for e in log if e[0] == "trt.set_input_shape"]
    assert shapes == [2, 3, 2]  # set on every change of batch size, and only then
    assert names(log).count("trt.execute_async_v3") == 4


# ------------------------------------------------------------------ the seam: device-resident outputs
def test_device_outputs_stay_on_the_gpu_and_name_the_stream(gpu, tmp_path):
    log, sim, _ = gpu
    with tb.TensorRTBackend(write_engine(tmp_path)) as be:
        assert isinstance(be, DeviceOutputBackend)
        log.clear()
        outs = be.run_device_outputs(np.zeros((3, 3, 64, 96), np.float32))
        assert "cuda.cudaStreamSynchronize" not in names(log)
        d2h = [e for e in log if e[0] == "cuda.cudaMemcpyAsync" and e[4] == be._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost]
        assert not d2h
        assert set(outs) == set(OUTPUT_NAMES)
        masks = outs["masks"].__cuda_array_interface__
        assert masks["shape"] == (3, 10, 28, 28) and masks["typestr"] == "<f4" and masks["version"] == 3
        assert masks["data"][0] == be._buffers["masks"].device_ptr and masks["stream"] == int(be._stream)
        assert outs["labels"].__cuda_array_interface__["typestr"] == "<i4"
        dev = be.run_device_outputs(CaiV2(be._buffers["images"].device_ptr), 2)
        assert dev["boxes"].shape == (2, 10, 4)


# ------------------------------------------------------------------ defect 6: NMS box limit
DEFAULT_PROPOSALS, DEFAULT_CLASSES = 1000, 13  # export/config.py defaults: rpn_post_nms_top_n_test, 13 categories


def test_nms_candidates_over_the_limit_with_a_threshold_warn_with_the_numbers(tmp_path, caplog):
    onnx = pytest.importorskip("onnx")
    # the class-aware NMS of the default config: 13 classes x 1000 proposals as class-offset boxes
    path = _tiny_onnx(tmp_path, nms_boxes=DEFAULT_CLASSES * DEFAULT_PROPOSALS, score_threshold=0.05)
    with caplog.at_level(logging.WARNING):
        warnings_ = builder.check_nms_box_limit(onnx.load(str(path)), "8.7", source=str(path))
    assert len(warnings_) == 1 and "13000 candidates" in warnings_[0] and "at most 5000" in warnings_[0]
    assert "13000 candidates" in caplog.text
    (c,) = builder.nms_candidates(onnx.load(str(path)))
    assert (c.boxes, c.classes, c.candidates, c.score_threshold) == (13000, 1, 13000, pytest.approx(0.05))


def test_nms_without_threshold_over_the_limit_stops_the_build(gpu, tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    path = _tiny_onnx(tmp_path, nms_boxes=1500, nms_classes=2, score_threshold=None)  # 3000 candidates
    assert builder.check_nms_box_limit(onnx.load(str(path)), "8.7") == []  # under 5000
    with pytest.raises(builder.BuildError, match=r"3000 candidates.*at most 2000.*compute capability 6\.2"):
        builder.check_nms_box_limit(onnx.load(str(path)), "6.2")
    # and the engine build runs the check against the GPU it builds on
    monkeypatch.setattr(builder, "device_properties", lambda cudart, i: ("Jetson TX2", "6.2"))
    with pytest.raises(builder.BuildError, match="3000 candidates"):
        builder.build_engine(path, tmp_path / "m", max_batch=2)


def test_build_sidecar_carries_the_nms_warning(gpu, tmp_path):
    path = _tiny_onnx(tmp_path, nms_boxes=6000, score_threshold=0.05)
    engine = builder.build_engine(path, tmp_path / "m", max_batch=2)
    meta = json.loads(artifact.engine_sidecar_path(engine).read_text())
    assert len(meta["nms_warnings"]) == 1 and "6000 candidates" in meta["nms_warnings"][0]


# ------------------------------------------------------------------ INT8: ONNX Runtime's CPU form is not TensorRT's
def _int8_contract(activations: str) -> Contract:
    return Contract(
        input_height=64,
        input_width=96,
        max_detections=10,
        precision="int8",
        model={"int8_activations": activations, "int8_weight_range": [-64, 64]},
    )


def test_builder_refuses_the_cpu_int8_form_and_names_the_export_command(gpu, tmp_path):
    log, _, _ = gpu
    path = _tiny_onnx(tmp_path, contract=_int8_contract("uint8"))
    with pytest.raises(ContractError, match=r"m\.onnx.*int8_activations='uint8'.*df2infer export .*--precision int8"):
        builder.build_engine(path, tmp_path / "m", max_batch=2)
    assert "trt.OnnxParser" not in names(log)  # refused before TensorRT parses anything
    assert not list(tmp_path.glob("m*.engine"))


def test_builder_takes_the_tensorrt_int8_form(gpu, tmp_path):
    engine = builder.build_engine(_tiny_onnx(tmp_path, contract=_int8_contract("int8")), tmp_path / "m", max_batch=2)
    assert json.loads(artifact.engine_sidecar_path(engine).read_text())["contract"]["precision"] == "int8"
