"""The CPU host shim: the package's .cu kernels compiled with the system C++ compiler and run as loops.

`cuda_shim.h` defines the CUDA built-ins the kernels use; `runner.cpp` includes the .cu files and
exposes `shim_launch(name, grid, block, params)` with cuLaunchKernel's calling convention. `build()`
compiles it once per source hash (g++ or $CXX, -ffp-contract=off so that, like the GPU code compiled
with --fmad=false, no product is fused unless a kernel calls fmaf) and `ShimDriver` runs the pipeline
classes on host memory with it: "device pointers" are host addresses.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.ops.cuda import compiler
from df2infer.ops.cuda.launch import pack_params

SHIM_DIR = Path(__file__).resolve().parent
CXX_FLAGS = ("-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC")


class ShimBuildError(RuntimeError):
    """No C++ compiler, or the kernels do not compile for the CPU (message has the compiler's output)."""


def _sources() -> list[Path]:
    return [SHIM_DIR / "cuda_shim.h", SHIM_DIR / "runner.cpp"] + [compiler.KERNEL_DIR / s for s in compiler.KERNELS]


def build(directory: Path | None = None) -> Path:
    """Compile the runner into a shared library (cached by source hash); return its path."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise ShimBuildError("no C++ compiler found (install g++ or set $CXX); the CUDA kernel shim needs one")
    h = hashlib.sha256(" ".join((cxx, *CXX_FLAGS)).encode())
    for p in _sources():
        h.update(p.read_bytes())
    root = Path(directory) if directory is not None else compiler.cache_dir() / "shim"
    root.mkdir(parents=True, exist_ok=True)
    lib = root / f"df2infer_kernel_shim-{h.hexdigest()[:16]}.so"
    if lib.is_file():
        return lib
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-", suffix=".so")
    os.close(fd)
    cmd = [cxx, *CXX_FLAGS, "-o", tmp, str(SHIM_DIR / "runner.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise ShimBuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    os.replace(tmp, lib)
    return lib


_LIB: dict[Path, ctypes.CDLL] = {}


def load(directory: Path | None = None) -> ctypes.CDLL:
    path = build(directory)
    if path not in _LIB:
        lib = ctypes.CDLL(str(path))
        lib.shim_launch.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        lib.shim_launch.restype = ctypes.c_int
        lib.shim_kernel_name.restype = ctypes.c_char_p
        lib.shim_f32_to_f16_bits.argtypes = [ctypes.c_float]
        lib.shim_f32_to_f16_bits.restype = ctypes.c_ushort
        _LIB[path] = lib
    return _LIB[path]


def kernel_names(lib: ctypes.CDLL) -> list[str]:
    return [lib.shim_kernel_name(i).decode() for i in range(lib.shim_kernel_count())]


class ShimDriver:
    """The Driver interface (launch.Driver) on host memory, running the kernels through the CPU shim.

    It records every call in `calls` as (operation, detail) so tests can check what a GPU would have
    done: how many launches, how many bytes went each way.
    """

    integrated = False

    def __init__(self, directory: Path | None = None):
        self.lib = load(directory)
        self.calls: list[tuple[str, Any]] = []
        self._buffers: dict[int, np.ndarray] = {}

    def launch(self, kernel: str, grid: Sequence[int], block: Sequence[int], args: Sequence[Any]) -> None:
        params = pack_params(kernel, args)
        g = (ctypes.c_uint * 3)(*[int(v) for v in grid])
        b = (ctypes.c_uint * 3)(*[int(v) for v in block])
        if self.lib.shim_launch(kernel.encode(), g, b, params.address) != 0:
            raise KeyError(f"the shim has no kernel {kernel!r}; it has {kernel_names(self.lib)}")
        self.calls.append(("launch", kernel))

    def alloc(self, nbytes: int) -> int:
        buf = np.zeros(max(int(nbytes), 1), np.uint8)
        ptr = buf.ctypes.data
        self._buffers[ptr] = buf
        self.calls.append(("alloc", int(nbytes)))
        return ptr

    def free(self, ptr: int) -> None:
        if self._buffers.pop(int(ptr), None) is None:
            raise ValueError(f"ShimDriver.free: {ptr:#x} was not allocated by this driver")
        self.calls.append(("free", 0))

    def host_buffer(self, nbytes: int) -> np.ndarray:
        return np.zeros(max(int(nbytes), 1), np.uint8)

    def free_host(self, host: np.ndarray) -> None:
        self.calls.append(("free_host", int(host.nbytes)))

    def mapped_pointer(self, host: np.ndarray) -> int | None:
        return None

    def _check(self, ptr: int, nbytes: int, what: str) -> None:
        for base, buf in self._buffers.items():
            if base <= ptr and ptr + nbytes <= base + buf.nbytes:
                return
        raise ValueError(f"ShimDriver.{what}: [{ptr:#x}, +{nbytes}) is not inside one allocation")

    def upload(self, dst: int, src: np.ndarray) -> None:
        src = np.ascontiguousarray(src)
        self._check(int(dst), src.nbytes, "upload")
        ctypes.memmove(int(dst), src.ctypes.data, src.nbytes)
        self.calls.append(("upload", src.nbytes))

    def download(self, dst: np.ndarray, src: int) -> None:
        if not dst.flags.c_contiguous:
            raise ValueError("ShimDriver.download: destination must be C-contiguous")
        self._check(int(src), dst.nbytes, "download")
        ctypes.memmove(dst.ctypes.data, int(src), dst.nbytes)
        self.calls.append(("download", dst.nbytes))

    def synchronize(self) -> None:
        self.calls.append(("synchronize", 0))

    def close(self) -> None:
        self._buffers.clear()
