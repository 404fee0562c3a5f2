"""Shared fixtures and the loud-skip rule.

`strict_gpu`: the strict CUDA/TensorRT stand-ins (tests/strict_gpu.py) for one test.

Loud skips: in CI (`CI` set, as CI services do), a test that would skip because something `make test`
installs is missing fails instead, so a broken set-up cannot pass as a green run with fewer tests.

- Python packages: `pytest.importorskip` of a package that `make setup` installs (MAKE_INSTALLS);
- system packages and tools: tests call `system_deps.require(...)` (tests/system_deps.py), which fails under CI.
Everywhere else a skip stays a skip and says what to install; `pytest -ra` lists them all with their reasons.
What legitimately stays a skip in CI (no GPU, no nvcc in the image, no network) is listed in docs/testing.md.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from system_deps import in_ci  # noqa: E402


def missing(what: str) -> None:
    """Skip saying what to install; under CI (which installs everything `make setup` lists) fail instead."""
    if in_ci():
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="session")
def shim_dir(tmp_path_factory):
    """The CUDA kernels compiled for the CPU (the stand-in GPU runs them); needs a C++ compiler (g++)."""
    from df2infer.ops.cuda import shim

    directory = tmp_path_factory.mktemp("shim")
    try:
        shim.build(directory)
    except shim.ShimBuildError as e:
        missing(f"the CUDA kernel shim cannot be built here (install g++): {e}")
    return directory


@pytest.fixture
def strict_gpu(monkeypatch, tmp_path_factory, shim_dir):
    """make(**SimGpu options) -> a SimGpu installed as cuda.bindings.driver/.runtime and tensorrt for this test.
    At teardown nothing may be left allocated (device or pinned memory, streams, events, modules, retains)."""
    try:
        import cuda.bindings  # noqa: F401 - the stand-ins replace its driver and runtime modules, NVRTC stays
    except ImportError:
        missing("cuda-bindings is not installed (make setup installs it)")
    import strict_gpu as sg

    monkeypatch.setenv("DF2INFER_KERNEL_CACHE", str(tmp_path_factory.getbasetemp() / "kernel-cache"))
    made: list = []

    def make(**kw):
        gpu = sg.SimGpu(shim_dir=shim_dir, **kw)
        print(gpu.describe())  # shown with a failing test's output: the seed reproduces its stream interleaving
        sg.install(monkeypatch, gpu)
        made.append(gpu)
        return gpu

    yield make
    import gc

    gc.collect()  # TensorRT objects free their device memory when collected, as the real bindings do
    for gpu in made:
        assert not gpu.live(), f"left allocated after the test ({gpu.describe()}): {gpu.live()}"


# Top-level modules of the packages `make setup` installs (pyproject.toml extras export, dev, cpu, retrieval;
# cuda-bindings 13 in the venv, 12 in build/cuda-bindings-12).
MAKE_INSTALLS = {
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxslim",
    "onnxconverter_common",
    "yaml",
    "cuda",
    "mypy",
    "matplotlib",
    "faiss",
    "pymilvus",
    "milvus_lite",
    "ray",
    "nvidia",
    "av",
    "cv2",
    "pycocotools",
}


def _missing_module(report) -> str | None:
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    m = re.search(r"could not import '([\w.]+)'", str(report.longrepr[2]))
    return m.group(1) if m and m.group(1).split(".")[0] in MAKE_INSTALLS else None


def _fail_in_ci(report) -> None:
    mod = _missing_module(report) if in_ci() else None
    if mod is not None:
        report.outcome = "failed"
        report.longrepr = f"CI: {mod} is not importable, but `make setup` installs it ({report.longrepr[2]})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_in_ci(outcome.get_result())


STATIC_ONNX_SIZE = (192, 256)  # (h, w): small, to keep CI cheap


@pytest.fixture(scope="session")
def static_onnx(tmp_path_factory) -> Path:
    """A static-head export of the bundled checkpoint at STATIC_ONNX_SIZE, max_batch 4: what TensorRT builds (the
    bundled default.onnx has gated heads, which the engine builder refuses). Needs torch (the export side)."""
    try:
        from df2infer_export.onnx_export import export_onnx
    except ImportError as e:
        missing(f"the export side needs torch (make setup installs it): {e}")
    checkpoint = Path(__file__).resolve().parent.parent / "export" / "checkpoints" / "match_rcnn_small_synth.pt"
    path = tmp_path_factory.mktemp("static-onnx") / "static.onnx"
    return Path(export_onnx(checkpoint, path, input_size=STATIC_ONNX_SIZE, max_batch=4, gate_heads=False, simplify=False))
