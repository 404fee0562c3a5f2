"""The install extras (pyproject.toml): their shape, and that the x86-64 GPU ones resolve against the index.

Offline checks: ONNX Runtime is an extra (`cpu` / `gpu` / `gpu-cu12`, one distribution each, never in the core
dependencies, so an onnxruntime-gpu user is not made to install the CPU package too); the TensorRT extras pair
TensorRT 10.x/11.x with the cuda-bindings major of the same CUDA and NVRTC; the Jetson extra has no TensorRT
(JetPack's apt package provides it) and the CUDA 12.6 bindings of JetPack 6.

Online check (skipped, with the reason, when the index cannot be reached): `pip install --dry-run --no-deps`
resolves every requirement of the x86-64 GPU extras on this machine, and the binary wheels that NVIDIA's
TensorRT meta-package and cuda-bindings need exist for Python 3.10 on x86-64 (and cuda-python 12.6 on aarch64,
for Jetson). `--no-deps`: NVIDIA's `tensorrt-cu12/13-libs` are stubs that download from pypi.nvidia.com at
install time, which a dry run here cannot reach; the resolved meta-package pins them, and that pin is checked.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from packaging.requirements import Requirement  # noqa: E402
from packaging.specifiers import SpecifierSet  # noqa: E402
from packaging.version import Version  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = {name: [Requirement(r) for r in reqs] for name, reqs in PROJECT["optional-dependencies"].items()}
INDEX = "https://pypi.org/simple/"


def names(reqs: list[Requirement]) -> set[str]:
    return {r.name.lower().replace("_", "-") for r in reqs}


def req(extra: str, name: str) -> Requirement:
    (r,) = [r for r in EXTRAS[extra] if r.name.lower() == name]
    return r


def test_onnxruntime_is_an_extra_one_distribution_each():
    core = names([Requirement(r) for r in PROJECT["dependencies"]])
    assert not core & {"onnxruntime", "onnxruntime-gpu"}, "core dependencies must not pick an ONNX Runtime"
    assert names(EXTRAS["cpu"]) == {"onnxruntime"}
    assert names(EXTRAS["gpu"]) == {"onnxruntime-gpu"} and names(EXTRAS["gpu-cu12"]) == {"onnxruntime-gpu"}
    for extra in EXTRAS:  # no extra drags the CPU package in beside the GPU one
        assert not {"onnxruntime", "onnxruntime-gpu"} <= names(EXTRAS[extra]), extra
    assert Version("1.26.0") in req("gpu-cu12", "onnxruntime-gpu").specifier  # last CUDA 12 build
    assert Version("1.27.0") not in req("gpu-cu12", "onnxruntime-gpu").specifier  # first CUDA 13 build
    assert Version("1.27.0") in req("gpu", "onnxruntime-gpu").specifier


@pytest.mark.parametrize("extra, cuda", [("tensorrt-cu12", 12), ("tensorrt-cu13", 13)])
def test_tensorrt_extras_match_the_cuda_major(extra, cuda):
    trt = req(extra, f"tensorrt-cu{cuda}")
    assert Version("10.13.3.9") in trt.specifier and Version("11.4.0.106") in trt.specifier
    assert Version("12.0") not in trt.specifier  # an unknown future major is not picked up blindly
    bindings = req(extra, "cuda-bindings").specifier
    assert Version(f"{cuda}.9.0") in bindings and Version(f"{cuda - 1}.9.0") not in bindings
    assert Version(f"{cuda + 1}.0.0") not in bindings


@pytest.mark.parametrize("extra, cuda", [("tensorrt-cu12", 12), ("tensorrt-cu13", 13)])
def test_x86_tensorrt_extras_bring_nvrtc_of_their_cuda_major(extra, cuda):
    """The GPU letterbox/decode kernels are compiled by NVRTC at load; cuda-bindings ships libnvrtc only with its
    `all` extra, so without an NVRTC wheel here they silently fall back to the CPU (one warning)."""
    wheel = "nvidia-cuda-nvrtc-cu12" if cuda == 12 else "nvidia-cuda-nvrtc"
    reqs = [r for r in EXTRAS[extra] if r.name.lower() == wheel or (r.name.lower() == "cuda-bindings" and "all" in r.extras)]
    assert reqs, f"{extra} installs no NVRTC ({wheel} or cuda-bindings[all])"
    for r in reqs:
        if r.name.lower() == wheel:
            assert Version(f"{cuda}.9.0") in r.specifier and Version(f"{cuda + 1}.0.0") not in r.specifier, r


def test_jetson_extra_has_no_tensorrt_and_the_bindings_of_jetpack_6s_cuda():
    """JetPack 6.1/6.2's driver is CUDA 12.6 and a Jetson has no minor-version compatibility: cuda-bindings' runtime
    (statically linked, its own version) must not be newer, or every runtime call is cudaErrorInsufficientDriver."""
    assert not any(n.startswith("tensorrt") for n in names(EXTRAS["jetson"]))
    assert "cuda-bindings" not in names(EXTRAS["jetson"])  # its first 12.x release is 12.8: too new for CUDA 12.6
    bindings = req("jetson", "cuda-python").specifier
    assert Version("12.6.2.post1") in bindings
    assert Version("12.8.0") not in bindings and Version("12.9.10") not in bindings and Version("13.0.0") not in bindings
    assert Version("3.10") in SpecifierSet(PROJECT["requires-python"])  # JetPack 6's Python
    assert Version("3.8") not in SpecifierSet(PROJECT["requires-python"])  # JetPack 5 is refused at install


# ------------------------------------------------------------------------------------------ against the index
def _index_reachable() -> str | None:
    try:
        with urllib.request.urlopen(INDEX + "cuda-bindings/", timeout=15) as r:
            r.read(64)
        return None
    except OSError as e:
        return f"{INDEX} is not reachable ({e})"


def _pip(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def index():
    problem = _index_reachable()
    if problem:
        pytest.skip(problem)


@pytest.mark.parametrize("extras", [("gpu", "tensorrt-cu13"), ("gpu-cu12", "tensorrt-cu12")])
def test_x86_gpu_extras_resolve(index, tmp_path, extras):
    if not (sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")):
        pytest.skip("the x86-64 GPU extras are resolved on an x86-64 Linux machine")
    reqs = [str(r) for e in extras for r in EXTRAS[e]]
    report = tmp_path / "report.json"
    done = _pip("install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet", "--report", str(report), *reqs)
    assert done.returncode == 0, f"pip could not resolve {reqs}:\n{done.stderr[-3000:]}"
    resolved = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"] for i in json.loads(report.read_text())["install"]}
    assert names([Requirement(r) for r in reqs]) <= set(resolved), resolved.keys()
    cuda = 13 if "tensorrt-cu13" in extras else 12
    trt = resolved[f"tensorrt-cu{cuda}"]
    pins = [Requirement(d) for d in trt.get("requires_dist", []) if "extra ==" not in d]
    assert {p.name.replace("_", "-") for p in pins} == {f"tensorrt-cu{cuda}-libs", f"tensorrt-cu{cuda}-bindings"}, pins
    # The Python bindings NVIDIA pins are binary wheels on the index for Python 3.10 and 3.11 on x86-64.
    (bindings,) = [p for p in pins if p.name.replace("_", "-").endswith("bindings")]
    for py in ("3.10", "3.11"):
        done = _pip(
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            py,
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
            str(tmp_path / "wheels"),
            str(bindings),
        )
        assert done.returncode == 0, f"no {bindings} wheel for Python {py}:\n{done.stderr[-2000:]}"


def test_jetson_bindings_have_aarch64_wheels_for_python_310(index, tmp_path):
    """JetPack 6: Python 3.10 on aarch64; cuda-python 12.6 must come as a binary wheel (no CUDA toolkit build)
    that has the cuda.bindings modules the code imports."""
    spec = str(req("jetson", "cuda-python"))
    # JetPack 6 is Ubuntu 22.04 (glibc 2.35): any manylinux tag up to 2.35 installs; pip takes the tags listed
    platforms = [
        a
        for tag in ("manylinux_2_35", "manylinux_2_34", "manylinux_2_28", "manylinux_2_24", "manylinux_2_17", "manylinux2014")
        for a in ("--platform", f"{tag}_aarch64")
    ]
    done = _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.10", *platforms, "-d", str(tmp_path), spec)
    assert done.returncode == 0, f"no aarch64 / Python 3.10 wheel for {spec}:\n{done.stderr[-2000:]}"
    (wheel,) = tmp_path.glob("cuda_python-12.6.*-cp310-*aarch64*.whl")
    import zipfile

    members = zipfile.ZipFile(wheel).namelist()
    for module in ("driver", "runtime", "nvrtc"):
        assert any(m.startswith(f"cuda/bindings/{module}.cpython-310-aarch64") for m in members), module
