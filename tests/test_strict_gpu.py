"""The strict CUDA/TensorRT stand-ins (tests/strict_gpu.py) refuse what the real APIs refuse.

A stand-in is only worth what it refuses: each test here is a rule of the real CUDA driver/runtime or TensorRT
(per NVIDIA's documentation, docs/tensorrt.md) that the stand-ins enforce, plus failure injection through the
real backend (named errors, nothing leaked) and the switch that runs a subprocess on them.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed (make setup installs it)")

import strict_gpu as sg  # noqa: E402
from fake_gpu import write_fake_engine  # noqa: E402
from test_gpu_pipeline import CONTRACT, H, W, engine_outputs, frames  # noqa: E402

from df2infer import artifact  # noqa: E402
from df2infer.api import Predictor  # noqa: E402
from df2infer.backends import tensorrt_backend as tb  # noqa: E402
from df2infer.contract import INPUT_NAME  # noqa: E402
from df2infer.gpu.cuda_check import CudaError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def modules(sim):
    return sys.modules["cuda.bindings.driver"], sys.modules["cuda.bindings.runtime"], sys.modules["tensorrt"]


def ok(result):
    assert int(result[0]) == 0, result
    return result[1] if len(result) > 1 else None


def engine(tmp_path):
    return write_fake_engine(tmp_path, CONTRACT, payload=sg.engine_blob(CONTRACT, plugins=("ROIAlign_TRT",)))


# ------------------------------------------------------------------ contexts per thread
def test_driver_call_without_a_current_context_fails_and_runtime_call_makes_the_primary_current(strict_gpu):
    sim = strict_gpu(devices=[sg.Device(0), sg.Device(1)])
    drv, rt, _ = modules(sim)
    ok(drv.cuInit(0))
    err, ptr = drv.cuMemAlloc(16)
    assert err == drv.CUresult.CUDA_ERROR_INVALID_CONTEXT and ptr is None
    ok(rt.cudaSetDevice(1))  # the runtime makes device 1's primary context current on this thread
    p = ok(drv.cuMemAlloc(16))
    assert sim.allocations[p].device == 1
    ok(drv.cuMemFree(p))
    ok(drv.cuCtxSetCurrent(0))  # nothing current again: the runtime takes the thread's device's primary context
    p = ok(rt.cudaMalloc(16))
    assert sim.allocations[p].device == 1
    ok(rt.cudaFree(p))


def test_work_on_a_stream_of_another_device_is_an_invalid_handle(strict_gpu):
    sim = strict_gpu(devices=[sg.Device(0), sg.Device(1)])
    _, rt, _ = modules(sim)
    ok(rt.cudaSetDevice(1))
    stream = ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    dev = ok(rt.cudaMalloc(64))
    host = np.zeros(64, np.uint8)
    ok(rt.cudaSetDevice(0))
    err = rt.cudaMemcpyAsync(dev, host.ctypes.data, 64, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)[0]
    assert err == rt.cudaError_t.cudaErrorInvalidResourceHandle
    ok(rt.cudaSetDevice(1))
    ok(rt.cudaFree(dev))
    ok(rt.cudaStreamDestroy(stream))


# ------------------------------------------------------------------ memory
def test_device_memory_is_its_own_address_space_and_copies_stay_inside_one_allocation(strict_gpu):
    sim = strict_gpu()
    _, rt, _ = modules(sim)
    dev = ok(rt.cudaMalloc(64))
    assert dev >= sg.DEVICE_BASE  # not a host address: host code dereferencing it faults, as on a discrete GPU
    host = np.arange(128, dtype=np.uint8)
    h2d = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
    assert rt.cudaMemcpy(dev + 32, host.ctypes.data, 64, h2d)[0] == rt.cudaError_t.cudaErrorInvalidValue  # past the end
    assert rt.cudaMemcpy(host.ctypes.data, dev, 64, h2d)[0] == rt.cudaError_t.cudaErrorInvalidValue  # wrong direction
    ok(rt.cudaMemcpy(dev, host.ctypes.data, 64, h2d))
    assert sim.read(dev, 64) == host[:64].tobytes()
    assert sim.live() == {"device memory": [f"{dev:#x}+64 cudaMalloc"]}  # counted until freed
    ok(rt.cudaFree(dev))
    assert rt.cudaFree(dev)[0] == rt.cudaError_t.cudaErrorInvalidValue  # twice


def test_a_pinned_source_is_read_when_the_copy_runs_a_pageable_one_when_enqueued(strict_gpu):
    sim = strict_gpu(eager=0.0)
    _, rt, _ = modules(sim)
    stream = ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    dev = ok(rt.cudaMalloc(8))
    pinned_ptr = ok(rt.cudaMallocHost(8))
    pinned = np.ctypeslib.as_array((ctypes.c_uint8 * 8).from_address(pinned_ptr))
    pageable = np.zeros(8, np.uint8)
    h2d = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
    pinned[:] = 1
    ok(rt.cudaMemcpyAsync(dev, pinned_ptr, 8, h2d, stream))
    pinned[:] = 2  # reused before the copy ran: the GPU copies the new contents
    ok(rt.cudaStreamSynchronize(stream))
    assert sim.read(dev, 8) == bytes([2] * 8)
    pageable[:] = 3
    ok(rt.cudaMemcpyAsync(dev, pageable.ctypes.data, 8, h2d, stream))
    pageable[:] = 4  # the driver staged pageable memory at the call
    ok(rt.cudaStreamSynchronize(stream))
    assert sim.read(dev, 8) == bytes([3] * 8)
    for call in (rt.cudaFree(dev), rt.cudaFreeHost(pinned_ptr), rt.cudaStreamDestroy(stream)):
        ok(call)


def test_an_event_wait_orders_one_stream_after_another(strict_gpu):
    sim = strict_gpu(eager=0.0)
    _, rt, _ = modules(sim)
    a, b = (ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking)) for _ in range(2))
    ev = ok(rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming))
    src, dst = ok(rt.cudaMalloc(4)), ok(rt.cudaMalloc(4))
    host = np.full(4, 7, np.uint8)
    ok(rt.cudaMemcpyAsync(src, host.ctypes.data, 4, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, a))
    ok(rt.cudaEventRecord(ev, a))
    ok(rt.cudaStreamWaitEvent(b, ev, 0))
    ok(rt.cudaMemcpyAsync(dst, src, 4, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, b))
    assert sim.read(src, 4) == bytes(4)  # nothing ran yet
    ok(rt.cudaStreamSynchronize(b))  # b's wait runs a's copy first
    assert sim.read(dst, 4) == bytes([7] * 4)
    for call in (rt.cudaFree(src), rt.cudaFree(dst), rt.cudaEventDestroy(ev), rt.cudaStreamDestroy(a), rt.cudaStreamDestroy(b)):
        ok(call)


def test_the_leak_check_sees_what_is_not_freed(strict_gpu):
    sim = strict_gpu()
    _, rt, _ = modules(sim)
    dev, stream = ok(rt.cudaMalloc(32)), ok(rt.cudaStreamCreateWithFlags(0))
    assert set(sim.live()) == {"device memory", "streams"}  # the fixture would fail the test on these
    ok(rt.cudaFree(dev))
    ok(rt.cudaStreamDestroy(stream))


# ------------------------------------------------------------------ versions
def test_runtime_newer_than_driver(strict_gpu):
    sim = strict_gpu(driver_version=12060, runtime_version=13000)  # across majors: never
    _, rt, _ = modules(sim)
    assert rt.cudaGetDeviceCount()[0] == rt.cudaError_t.cudaErrorInsufficientDriver
    assert ok(rt.cudaDriverGetVersion()) == 12060 and ok(rt.cudaRuntimeGetVersion()) == 13000  # these still answer


# ------------------------------------------------------------------ TensorRT
def test_output_shapes_are_unknown_until_every_input_shape_is_set(strict_gpu):
    sim = strict_gpu()
    _, rt, trt = modules(sim)
    runtime = trt.Runtime(trt.Logger())
    trt.init_libnvinfer_plugins(None, "")
    eng = runtime.deserialize_cuda_engine(sg.engine_blob(CONTRACT, plugins=("ROIAlign_TRT",)))
    ctx = eng.create_execution_context()
    assert ctx.get_tensor_shape("boxes")[0] == -1 and ctx.get_tensor_shape(INPUT_NAME)[0] == -1
    stream = ok(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
    assert ctx.execute_async_v3(int(stream)) is False  # no input shape yet
    assert not ctx.set_input_shape(INPUT_NAME, (CONTRACT.max_batch + 1, 3, H, W))  # outside the profile
    assert ctx.set_input_shape(INPUT_NAME, (2, 3, H, W))
    assert ctx.get_tensor_shape("boxes") == (2, CONTRACT.max_detections, 4)
    assert ctx.execute_async_v3(int(stream)) is False  # no tensor addresses yet
    assert any("no address" in e for e in sim.trt_errors)
    ok(rt.cudaStreamDestroy(stream))
    del ctx, eng


def test_exact_engines_load_on_their_version_only_and_vc_ones_need_host_code(strict_gpu):
    sim = strict_gpu()
    trt = sg.make_tensorrt(sim, "10.3.0.31")
    runtime = trt.Runtime(trt.Logger())
    assert runtime.deserialize_cuda_engine(sg.engine_blob(CONTRACT, trt_version="10.3.0.30")) is None
    vc = sg.engine_blob(CONTRACT, trt_version="10.3.0.30", version_compatible=True)
    assert runtime.deserialize_cuda_engine(vc) is None  # host code not allowed
    runtime.engine_host_code_allowed = True
    assert runtime.deserialize_cuda_engine(vc) is not None
    assert len(sim.trt_errors) == 2


# ------------------------------------------------------------------ failure injection through the backend
@pytest.mark.parametrize("call, nth, error, match", [
    ("cudaMalloc", 3, CudaError, r"cudaMalloc\(\d+\) for \w+ failed: cudaErrorMemoryAllocation"),
    ("cudaMallocHost", 1, CudaError, r"cudaMallocHost\(\d+\) for images failed: cudaErrorMemoryAllocation"),
    ("deserialize_cuda_engine", 1, artifact.ModelLoadError, r"model\.engine: TensorRT could not deserialize"),
])  # fmt: skip
def test_a_failure_at_load_is_named_and_leaks_nothing(strict_gpu, tmp_path, call, nth, error, match):
    sim = strict_gpu()
    sim.fail(call, nth)
    with pytest.raises(error, match=match):
        tb.TensorRTBackend(engine(tmp_path))
    # the strict_gpu fixture then checks that nothing is left allocated


def test_a_launch_failure_is_named_and_the_backend_still_closes_clean(strict_gpu, tmp_path):
    sim = strict_gpu()
    outputs = engine_outputs()
    sim.engine_fn = lambda inputs: {k: v[: len(inputs[INPUT_NAME])] for k, v in outputs.items()}
    with tb.TensorRTBackend(engine(tmp_path)) as be:
        sim.fail("cuLaunchKernel")
        with pytest.raises(CudaError, match=r"cuLaunchKernel\(letterbox_kernel.*CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"):
            Predictor(be).predict_batch(frames(), conf=0.3)
        Predictor(be).predict_batch(frames(), conf=0.3)  # not sticky: the next batch runs


# ------------------------------------------------------------------ the switch for subprocesses
@pytest.mark.parametrize("close", [True, False])
def test_a_subprocess_runs_on_the_stand_ins_when_test_code_switches_them_on(tmp_path, shim_dir, close):
    outputs = engine_outputs()
    np.savez(tmp_path / "outputs.npz", **outputs)
    path = engine(tmp_path)
    report = tmp_path / "report.json"
    config = {"devices": [{"index": 0, "name": "Orin"}], "report": str(report), "shim_dir": str(shim_dir), "seed": 7}
    config["engine_outputs"] = str(tmp_path / "outputs.npz")
    script = (
        "import numpy as np, df2infer\n"
        f"p = df2infer.load({str(path)!r}, device='cuda:0')\n"
        "d = p.predict_batch([np.zeros((50, 60, 3), np.uint8)], conf=0.3)[0]\n"
        "print('detections', len(d.boxes))\n" + ("p.backend.close()\n" if close else "")
    )
    env = sg.subprocess_env(config)
    env["DF2INFER_KERNEL_CACHE"] = str(tmp_path / "kernels")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "strict GPU stand-in seed=7" in done.stderr and "detections" in done.stdout
    got = json.loads(report.read_text())
    assert got["engine_runs"] == 1 and got["launches"][0] == "letterbox_kernel", got
    if close:
        assert got["live"] == {}, got
    else:  # the report shows what a process left allocated
        assert {"device memory", "pinned memory", "streams", "modules"} <= set(got["live"]), got


@pytest.mark.parametrize("trust", [False, True])
def test_the_cli_runs_on_the_stand_ins_and_asks_before_running_engine_code(tmp_path, shim_dir, trust):
    """`df2infer detect` in a subprocess on the stand-ins, with a version-compatible engine: refused (exit 2,
    naming the flag, TensorRT never asked) unless --trust-engine-code."""
    cv2 = pytest.importorskip("cv2")
    np.savez(tmp_path / "outputs.npz", **engine_outputs())
    blob = sg.engine_blob(
        CONTRACT, version_compatible=True, plugins=("ROIAlign_TRT",), vc_plugin_libraries=(sg.vc_plugin_library("10.3.0.30"),)
    )
    path = write_fake_engine(tmp_path, CONTRACT, payload=blob, version_compatible=True)
    image = tmp_path / "a.jpg"
    cv2.imwrite(str(image), np.full((50, 60, 3), 128, np.uint8))
    report = tmp_path / "report.json"
    config = {"devices": [{"index": 0, "name": "Orin"}], "report": str(report), "shim_dir": str(shim_dir)}
    config["engine_outputs"] = str(tmp_path / "outputs.npz")
    env = sg.subprocess_env(config)
    env["DF2INFER_KERNEL_CACHE"] = str(tmp_path / "kernels")
    cmd = [sys.executable, "-m", "df2infer", "detect", str(image), "--model", str(path), "--device", "cuda:0"]
    cmd += ["--out", str(tmp_path / "out"), "--no-draw"] + (["--trust-engine-code"] if trust else [])
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    got = json.loads(report.read_text())
    assert got["live"] == {}, got
    if trust:
        assert done.returncode == 0, done.stderr[-3000:]
        assert got["engine_runs"] == 1 and (tmp_path / "out" / "detections.jsonl").is_file()
    else:
        assert done.returncode == 2 and "--trust-engine-code" in done.stderr, done.stderr[-3000:]
        assert got["engine_runs"] == 0 and not got["trt_errors"]


def test_the_shipped_runtime_never_reads_the_switch():
    text = "\n".join(p.read_text() for p in (ROOT / "df2infer").rglob("*.py"))
    assert sg.SWITCH_ENV not in text and sg.CONFIG_ENV not in text and "strict_gpu" not in text
