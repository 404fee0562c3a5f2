"""Every CUDA runtime call of the GPU code, run through cuda-python's own argument conversion, in both majors.

The TensorRT backend and engine builder are driven end to end (fake `tensorrt`, tests/fake_gpu.py) with
`CheckedCudart` over the real `cuda.bindings.runtime`: each call converts its arguments as on a GPU machine
(a wrong type, a renamed enum or constant fails here), then, without a driver, returns
cudaErrorInsufficientDriver, which the proxy records and replaces by a placeholder. This checks call
signatures against the installed cuda-bindings (13.x, for CUDA 13 drivers) and, in a subprocess, against
cuda-bindings 12.x (CUDA 12 drivers and JetPack 6), installed by `make setup` into a venv of its own,
build/cuda-bindings-12, whose site-packages the subprocess puts first on its path.
It does not check results: that needs a GPU.

On a machine with a driver the real calls succeed; the scenario only uses valid handles there (its own
allocations, the legacy and per-thread default streams) and never lets the fake engine touch memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed (make setup installs it)")

from df2infer import artifact  # noqa: E402
from df2infer.backends import tensorrt_backend as tb  # noqa: E402
from df2infer.contract import Contract  # noqa: E402
from df2infer.gpu.cuda_check import CudaError, cuda_call, device_properties  # noqa: E402
from df2infer_export import tensorrt_builder as builder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_gpu import CheckedCudart, fake_tensorrt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The venv `make setup` installs cuda-bindings 12 into (made with this interpreter, so the same python3.X)
BINDINGS_12 = ROOT / "build" / "cuda-bindings-12" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
EXPECT_MAJOR = "DF2INFER_EXPECT_CUDA_BINDINGS_MAJOR"
CONTRACT = Contract(input_height=64, input_width=96, max_detections=10)
# What the GPU code calls (tensorrt_backend, tensorrt_builder, cuda_check); the scenario must reach them all.
EXPECTED_CALLS = {
    "cudaSetDevice",
    "cudaGetDeviceProperties",
    "cudaStreamCreateWithFlags",
    "cudaEventCreateWithFlags",
    "cudaMallocHost",
    "cudaMalloc",
    "cudaMemcpyAsync",
    "cudaMemcpy",
    "cudaStreamSynchronize",
    "cudaEventRecord",
    "cudaStreamWaitEvent",
    "cudaFree",
    "cudaFreeHost",
    "cudaEventDestroy",
    "cudaStreamDestroy",
    "cudaGetErrorName",
    "cudaGetErrorString",
}
NO_DRIVER = {"cudaErrorInsufficientDriver", "cudaErrorNoDevice", "cudaErrorInitializationError"}


class _CaiV2:
    def __init__(self, shape, ptr):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f4", "data": (ptr, False), "version": 2}


def run_gpu_code(monkeypatch, tmp_path: Path) -> CheckedCudart:
    log: list = []
    cudart = CheckedCudart(log)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(log, version="10.3.0.30", contract=CONTRACT))
    for mod in (tb, builder):
        monkeypatch.setattr(mod, "import_cudart", lambda: cudart)
    import df2infer.gpu.cuda_check as cc_mod

    monkeypatch.setattr(cc_mod, "import_cudart", lambda: cudart)

    gpu_name, cc = device_properties(cudart, 0)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    artifact.engine_sidecar_path(engine).write_text(
        json.dumps(
            {"contract": json.loads(CONTRACT.to_json()), "tensorrt_version": "10.3.0.30", "compute_capability": cc, "gpu_name": gpu_name}
        )
    )
    with tb.TensorRTBackend(engine) as be:
        be.run(np.zeros((2, 3, 64, 96), np.float32))
        inp = be._buffers["images"].device_ptr  # a real device allocation where a driver exists
        be.run_device(_CaiV2((2, 3, 64, 96), inp), 2)  # no stream key: waits on the legacy default stream
        be.run_device(inp, 1, producer_stream=2)  # per-thread default stream
        be.run_device_outputs(np.zeros((1, 3, 64, 96), np.float32))

    # the builder's own calls, and the INT8 calibrator's buffer
    b = builder.EngineBuilder()
    assert b.compute_capability == cc
    data = np.zeros((2, 3, 64, 96), np.float32)
    cal = builder.make_entropy_calibrator(builder.CalibrationBatches(data, CONTRACT, batch_size=2), builder.CalibrationCache(None))
    assert len(cal.get_batch(["images"])) == 1
    cal.free()

    with pytest.raises(CudaError, match="cudaErrorMemoryAllocation"):  # error text from cudaGetErrorName/String
        cuda_call(cudart, (rt.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc(1)")
    return cudart


def test_gpu_code_calls_convert_with_the_installed_cuda_bindings(monkeypatch, tmp_path):
    import cuda.bindings

    major = cuda.bindings.__version__.split(".")[0]
    if os.environ.get(EXPECT_MAJOR):
        assert major == os.environ[EXPECT_MAJOR], (
            f"expected cuda-bindings {os.environ[EXPECT_MAJOR]}.x, got {cuda.bindings.__version__} from {cuda.bindings.__file__}"
        )
    cudart = run_gpu_code(monkeypatch, tmp_path)
    assert EXPECTED_CALLS <= set(cudart.calls), f"not reached: {EXPECTED_CALLS - set(cudart.calls)}"
    unexpected = [(c, status) for c, status in cudart.failures if status not in NO_DRIVER]
    assert not unexpected, f"calls failed for another reason than a missing driver: {unexpected}"


def test_gpu_code_calls_convert_with_cuda_bindings_12(tmp_path):
    if not (BINDINGS_12 / "cuda" / "bindings").is_dir():
        msg = f"cuda-bindings 12.x is not installed in {BINDINGS_12} (make setup installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BINDINGS_12), os.environ.get("PYTHONPATH", "")]), **{EXPECT_MAJOR: "12"})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "inner"),
            f"{Path(__file__).resolve()}::test_gpu_code_calls_convert_with_the_installed_cuda_bindings",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
