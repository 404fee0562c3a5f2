"""The GPU path's defects found by review, each reproduced on the strict CUDA/TensorRT stand-ins (tests/strict_gpu.py).

Every test here failed on the code before its fix (docs/tensorrt.md lists them): the stand-ins refuse what the
real CUDA and TensorRT refuse, so the defect shows as the error or the wrong data a GPU would give. Defect 7
(no NVRTC in the x86 extras) is a packaging defect: its test is in tests/test_install_extras.py.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed (make setup installs it)")

from fake_gpu import names, write_fake_engine  # noqa: E402
from strict_gpu import Device, engine_blob, make_tensorrt, vc_plugin_library  # noqa: E402
from test_gpu_pipeline import CONTRACT, H, HostBackend, W, assert_same_detections, engine_outputs, frames  # noqa: E402

import df2infer  # noqa: E402
from df2infer import artifact  # noqa: E402
from df2infer.api import Predictor  # noqa: E402
from df2infer.backends import tensorrt_backend as tb  # noqa: E402
from df2infer.backends.base import DeviceError  # noqa: E402
from df2infer.contract import INPUT_NAME  # noqa: E402
from df2infer.engine import builder  # noqa: E402
from df2infer.ops.cuda.launch import CudaDriver  # noqa: E402
from df2infer.ops.cuda.pipeline import GpuPreprocessor  # noqa: E402
from df2infer.ops.letterbox import to_input_batch  # noqa: E402

ORIN = Device(0, name="Orin")


def make_sim(strict_gpu, **kw):
    sim = strict_gpu(**{"devices": [ORIN], **kw})
    outputs = engine_outputs()
    sim.engine_fn = lambda inputs: {k: v[: len(inputs[INPUT_NAME])] for k, v in outputs.items()}
    return sim, outputs


def engine_file(tmp_path, *, version="10.3.0.30", version_compatible=False, serialized_plugins=True):
    libs = (vc_plugin_library(version),) if version_compatible and serialized_plugins else ()
    blob = engine_blob(
        CONTRACT, trt_version=version, version_compatible=version_compatible, plugins=("ROIAlign_TRT",), vc_plugin_libraries=libs
    )
    return write_fake_engine(tmp_path, CONTRACT, payload=blob, tensorrt_version=version, version_compatible=version_compatible)


def on_thread(fn):
    """Run fn() on a new thread (no CUDA context current there, as on `df2infer video`'s inference thread)."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    t = threading.Thread(target=run, name="inference")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


# ------------------------------------------------------------------ 1. the CUDA context is current per thread
@pytest.mark.parametrize("index", [0, 1])
def test_1_predict_on_another_thread_than_load(strict_gpu, tmp_path, index):
    """Loaded on the main thread, predicting on another: before the fix the kernels' first driver call there
    failed with CUDA_ERROR_INVALID_CONTEXT."""
    sim, outputs = make_sim(strict_gpu, devices=[ORIN, Device(1, name="Orin")])
    imgs = frames()
    ref = Predictor(HostBackend(outputs)).predict_batch(imgs, conf=0.3)
    backend = tb.TensorRTBackend(engine_file(tmp_path), f"cuda:{index}")
    try:
        got = on_thread(lambda: Predictor(backend).predict_batch(imgs, conf=0.3))
    finally:
        backend.close()
    assert_same_detections(got, ref, "subpixel")
    assert sim.launches[0] == "letterbox_kernel" and len(sim.engine_inputs) == 1
    assert not sim.errors, sim.errors


def test_1_runtime_calls_on_another_thread_reach_the_chosen_device(strict_gpu, tmp_path):
    """cudaSetDevice ran at load only: on another thread the runtime and TensorRT used device 0's primary context,
    and the backend's device-1 stream was an invalid handle there (no kernels here to make the context current)."""
    sim, outputs = make_sim(strict_gpu, devices=[ORIN, Device(1, name="Orin")])
    backend = tb.TensorRTBackend(engine_file(tmp_path), "cuda:1", gpu_ops=False)
    try:
        out = on_thread(lambda: backend.run(np.zeros((2, 3, H, W), np.float32)))
        assert {a.device for a in sim.allocations.values() if a.kind == "device"} == {1}  # engine and buffers on cuda:1
    finally:
        backend.close()
    assert np.array_equal(out["boxes"], outputs["boxes"][:2]) and not sim.errors, sim.errors


def test_1_cuda_driver_works_on_a_thread_it_was_not_made_on(strict_gpu):
    """CudaDriver made its context current once, in __init__; its calls on another thread (without the backend
    around it) failed with CUDA_ERROR_INVALID_CONTEXT."""
    strict_gpu(devices=[ORIN])
    drv = CudaDriver(0)
    pre = GpuPreprocessor(drv, (H, W), CONTRACT.pad_value)
    imgs = frames()[:2]
    out = drv.alloc(len(imgs) * 3 * H * W * 4)
    try:

        def letterbox() -> np.ndarray:
            pre(imgs, out)
            host = np.empty((len(imgs), 3, H, W), np.float32)
            drv.download(host.view(np.uint8).reshape(-1), out)
            drv.synchronize()
            return host

        got = on_thread(letterbox)
    finally:
        drv.free(out)
        pre.close()
        drv.close()
    expect, _ = to_input_batch(imgs, CONTRACT)
    np.testing.assert_array_equal(got, expect)


# ------------------------------------------------------------------ 2. a CUDA runtime newer than a Jetson's driver
def test_2_runtime_newer_than_a_jetson_driver_says_which_bindings_to_install(strict_gpu, tmp_path):
    """JetPack 6's driver is CUDA 12.6; cuda-bindings 12.9 links CUDA runtime 12.9. Before the fix the load said only
    'no usable CUDA device (cudaErrorInsufficientDriver)'."""
    make_sim(strict_gpu, devices=[Device(0, name="Orin", integrated=True)], driver_version=12060, runtime_version=12090)
    with pytest.raises(DeviceError) as e:
        tb.TensorRTBackend(engine_file(tmp_path))
    msg = str(e.value)
    assert "cudaErrorInsufficientDriver" in msg and "12.9" in msg and "12.6" in msg
    assert "df2infer[jetson]" in msg and "cuda-python>=12.6.2,<12.7" in msg and "cuda-compat" in msg


def test_2_jetpack_5_is_refused_with_a_clear_message(strict_gpu, tmp_path):
    make_sim(strict_gpu, devices=[Device(0, name="Xavier", cc=(7, 2), integrated=True)], driver_version=11040, runtime_version=12060)
    with pytest.raises(DeviceError, match=r"CUDA 11\.4 only.*JetPack 5"):
        tb.TensorRTBackend(engine_file(tmp_path))


def test_2_engine_builder_explains_it_too(strict_gpu):
    make_sim(strict_gpu, devices=[Device(0, name="Orin", integrated=True)], driver_version=12060, runtime_version=12090)
    with pytest.raises(builder.BuildError, match=r"runtime 12\.9, newer than the driver's CUDA 12\.6"):
        builder.EngineBuilder()


def test_2_stand_in_keeps_minor_version_compatibility_on_x86(strict_gpu, tmp_path):
    """Not a defect: on a discrete GPU a CUDA 12.9 runtime runs on a 12.6 driver (minor-version compatibility)."""
    make_sim(strict_gpu, driver_version=12060, runtime_version=12090)
    with tb.TensorRTBackend(engine_file(tmp_path), gpu_ops=False) as be:
        be.run(np.zeros((1, 3, H, W), np.float32))


# ------------------------------------------------------------------ 3 + 4 + 8. version-compatible engines
def roi_align_onnx(tmp_path):
    """A graph with the contract's input and one RoiAlign (imported by TensorRT's parser as the ROIAlign_TRT plugin)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("RoiAlign", ["images", "rois", "bidx"], ["y"], output_height=7, output_width=7, name="roi")]
    inits = [
        numpy_helper.from_array(np.array([[0, 0, 8, 8]], np.float32), "rois"),
        numpy_helper.from_array(np.array([0], np.int64), "bidx"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["B", 3, H, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 7, 7])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"df2infer.contract": CONTRACT.to_json()})
    path = tmp_path / "roi.onnx"
    onnx.save(model, str(path))
    return path


def test_3_version_compatible_engine_with_roialign_loads(strict_gpu, tmp_path):
    """Before the fix the builder set VERSION_COMPATIBLE but never serialized the VC plugin library the parser
    used, so the engine failed to deserialize (ROIAlign_TRT not found) wherever it was loaded."""
    sim, _ = make_sim(strict_gpu)
    engine = builder.build_engine(roi_align_onnx(tmp_path), tmp_path / "m", max_batch=2, version_compatible=True)
    meta = json.loads(artifact.engine_sidecar_path(engine).read_text())
    assert meta["version_compatible"] is True and meta["vc_plugin_libraries"] == [vc_plugin_library("10.3.0.30")]
    sim.log.clear()
    with tb.TensorRTBackend(engine, trust_engine_code=True, gpu_ops=False) as be:
        out = be.run(np.zeros((2, 3, H, W), np.float32))
    assert out["boxes"].shape == (2, CONTRACT.max_detections, 4)
    assert not sim.trt_errors, sim.trt_errors


def test_3_a_plain_engine_needs_no_plugin_libraries_inside(strict_gpu, tmp_path):
    make_sim(strict_gpu)
    engine = builder.build_engine(roi_align_onnx(tmp_path), tmp_path / "m", max_batch=2)
    assert "vc_plugin_libraries" not in json.loads(artifact.engine_sidecar_path(engine).read_text())
    with tb.TensorRTBackend(engine, gpu_ops=False) as be:  # its plugin comes from init_libnvinfer_plugins
        be.run(np.zeros((1, 3, H, W), np.float32))


@pytest.mark.parametrize(
    "built, installed, ok",
    [("10.3.0.30", "11.0.0.1", True), ("10.3.0.30", "11.4.1.2", True), ("8.6.1.6", "10.3.0.30", True), ("10.3.0.30", "12.0.0.1", False)],
)
def test_4_version_rule_across_major_versions(built, installed, ok):
    problem = artifact.engine_version_problem(built, installed, version_compatible=True)
    assert (problem is None) is ok, problem
    assert artifact.engine_version_problem(built, installed, version_compatible=False) is not None  # plain: exact only


def test_4_tensorrt_10_version_compatible_engine_runs_on_tensorrt_11(strict_gpu, tmp_path, monkeypatch):
    """TensorRT allows a TensorRT 10 version-compatible engine on TensorRT 11; the old rule refused it before
    TensorRT was asked."""
    sim, _ = make_sim(strict_gpu)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", make_tensorrt(sim, "11.0.0.1"))
    with tb.TensorRTBackend(engine_file(tmp_path, version_compatible=True), trust_engine_code=True, gpu_ops=False) as be:
        be.run(np.zeros((1, 3, H, W), np.float32))
    assert len(sim.engine_inputs) == 1


def test_8_version_compatible_engine_code_runs_only_when_trusted(strict_gpu, tmp_path):
    """A version-compatible engine carries host code TensorRT runs in-process; the sidecar alone used to allow it."""
    sim, _ = make_sim(strict_gpu)
    engine = engine_file(tmp_path, version_compatible=True)
    with pytest.raises(artifact.ModelLoadError, match=r"model\.engine is VERSION_COMPATIBLE.*trust_engine_code=True.*--trust-engine-code"):
        tb.TensorRTBackend(engine)
    assert "trt.deserialize_cuda_engine" not in names(sim.log) and "trt.Runtime.engine_host_code_allowed" not in names(sim.log)
    predictor = df2infer.load(engine, device="cuda:0", trust_engine_code=True)  # the public API passes it through
    try:
        assert ("trt.Runtime.engine_host_code_allowed", True) in sim.log
    finally:
        predictor.backend.close()


def test_8_a_plain_engine_never_allows_host_code(strict_gpu, tmp_path):
    sim, _ = make_sim(strict_gpu)
    with tb.TensorRTBackend(engine_file(tmp_path), trust_engine_code=True, gpu_ops=False):
        pass
    assert "trt.Runtime.engine_host_code_allowed" not in names(sim.log)


# ------------------------------------------------------------------ 5. the pinned input buffer reused too early
def test_5_run_device_outputs_twice_does_not_overwrite_the_queued_input(strict_gpu, tmp_path):
    """run_device_outputs(host array) returns without waiting; the next call wrote the pinned input buffer while the
    previous host-to-device copy from it could still be queued, so the first engine run read the second input.
    eager=0: the stand-in GPU runs nothing before a synchronization (the worst case a GPU may produce)."""
    sim, _ = make_sim(strict_gpu, eager=0.0)
    with tb.TensorRTBackend(engine_file(tmp_path), gpu_ops=False) as be:
        for value in (1.0, 2.0):
            be.run_device_outputs(np.full((1, 3, H, W), value, np.float32))
        be.run(np.full((1, 3, H, W), 3.0, np.float32))
    seen = [float(x[INPUT_NAME].mean()) for x in sim.engine_inputs]
    assert seen == [1.0, 2.0, 3.0], f"the engine runs read {seen} ({sim.describe()})"


# ------------------------------------------------------------------ 6. staging buffers: leaks and unused twins
def _live(sim, what: str) -> list:
    return [a for a in sim.allocations.values() if a.what == what]


def test_6_growing_staging_buffer_frees_the_old_pinned_one(strict_gpu):
    sim = strict_gpu(devices=[ORIN])
    drv = CudaDriver(0)
    pre = GpuPreprocessor(drv, (H, W), CONTRACT.pad_value)
    out = drv.alloc(4 * 3 * H * W * 4)
    try:
        pre([np.zeros((20, 30, 3), np.uint8)], out)
        assert len(_live(sim, "cuMemHostAlloc")) == 1
        pre([np.zeros((400, 600, 3), np.uint8)] * 4, out)  # grows the staging buffer
        pinned = _live(sim, "cuMemHostAlloc")
        assert len(pinned) == 1 and pinned[0].size >= 4 * 400 * 600 * 3, [a.size for a in pinned]
        drv.synchronize()
    finally:
        drv.free(out)
        pre.close()
        drv.close()


def test_6_integrated_gpu_allocates_no_device_twin_for_the_frames(strict_gpu):
    sim = strict_gpu(devices=[Device(0, name="Orin", integrated=True)], driver_version=12060, runtime_version=12060)
    drv = CudaDriver(0)
    pre = GpuPreprocessor(drv, (H, W), CONTRACT.pad_value)
    out = drv.alloc(2 * 3 * H * W * 4)
    try:
        pre(frames()[:2], out)
        drv.synchronize()
        assert [a.base for a in _live(sim, "cuMemAlloc")] == [out]  # only the output: the frames are read in place
        assert sim.launches == ["letterbox_kernel"] and "cuda.cuMemcpyHtoDAsync" not in names(sim.log)
    finally:
        drv.free(out)
        pre.close()
        drv.close()
