"""Shared fixtures. `strict_gpu`: the strict CUDA/TensorRT stand-ins (tests/strict_gpu.py) for one test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def missing(what: str) -> None:
    """Skip saying what to install; under CI (which installs everything `make setup` lists) fail instead."""
    if os.environ.get("CI"):
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
