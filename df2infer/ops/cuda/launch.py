"""Launching the kernels: one argument packing for the GPU (cuLaunchKernel) and the CPU shim alike.

`KERNEL_SIGNATURES` declares each kernel's parameter types as the .cu files define them (a test parses
the sources and checks they agree: cuLaunchKernel itself cannot). `pack_params` turns Python values
into cuLaunchKernel's `void** kernelParams` array. Two drivers carry out launches, copies and
allocations behind one interface:

- `CudaDriver`: the CUDA driver API through cuda-python (`cuda.bindings.driver`), on a given stream;
- `df2infer.ops.cuda.shim.ShimDriver`: host memory and the kernels compiled for the CPU, which lets the
  GPU pipeline classes (pipeline.py) run, and be tested, on a machine without a GPU.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from df2infer.ops.cuda import compiler
from df2infer.ops.cuda.cuda_check import CudaError

# Parameter kinds: "ptr" a device pointer; "i32" int; "i64" long long; "f32" float.
_CTYPES = {"ptr": ctypes.c_void_p, "i32": ctypes.c_int32, "i64": ctypes.c_int64, "f32": ctypes.c_float}

KERNEL_SIGNATURES: dict[str, tuple[str, ...]] = {
    "letterbox_kernel": (
        "ptr",
        "ptr",
        "ptr",
        "ptr",
        "ptr",
        "ptr",
        "i32",
        "i32",
        "i32",
        "i32",
        "f32",
        "f32",
        "f32",
        "f32",
        "f32",
        "f32",
        "f32",
    ),
    "letterbox_nv12_kernel": ("ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", *(("f32",) * 7)),
    "paste_masks_weights": ("ptr", "ptr", "ptr", "i32", "i32", "i32", "ptr", "ptr"),
    "paste_masks_compact": ("ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "f32", "ptr"),
    "paste_masks_instance_map": ("ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "f32", "ptr"),
    "landmarks_subpixel": ("ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "ptr"),
    "landmarks_cubic_tables": ("ptr", "ptr", "i32", "i32", "i32", "ptr"),
    "landmarks_torchvision_columns": ("ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "i32", "i32", "ptr", "ptr"),
    "landmarks_torchvision": ("ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "ptr"),
}

# Which source defines each kernel.
KERNEL_SOURCE = {k: src for src, names in compiler.KERNELS.items() for k in names}


def device_pointer(obj: Any, what: str = "argument") -> int:
    """An int device address from an int or an object with __cuda_array_interface__ (CuPy, torch, ...)."""
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is None:
        raise TypeError(f"{what}: expected a device pointer (int) or an object with __cuda_array_interface__, got {type(obj).__name__}")
    return int(cai["data"][0])


@dataclass
class PackedParams:
    """cuLaunchKernel's kernelParams: `address` of a void*[n] whose entries point at the values."""

    values: list = field(default_factory=list)  # ctypes scalars, kept alive with the array
    array: Any = None

    @property
    def address(self) -> int:
        return ctypes.addressof(self.array)


def pack_params(kernel: str, args: Sequence[Any]) -> PackedParams:
    """Pack `args` for `kernel` by its declared signature; pointer slots take ints or CUDA arrays."""
    sig = KERNEL_SIGNATURES.get(kernel)
    if sig is None:
        raise KeyError(f"unknown kernel {kernel!r}; known: {sorted(KERNEL_SIGNATURES)}")
    if len(args) != len(sig):
        raise TypeError(f"{kernel}: {len(args)} arguments given, its signature has {len(sig)} ({', '.join(sig)})")
    values: list[Any] = []
    for i, (kind, a) in enumerate(zip(sig, args)):
        if kind == "ptr":
            values.append(ctypes.c_void_p(device_pointer(a, f"{kernel} argument {i}")))
        elif kind == "f32":
            values.append(ctypes.c_float(float(a)))
        else:
            v = int(a)
            bits = 31 if kind == "i32" else 63
            if not -(1 << bits) <= v < (1 << bits):
                raise OverflowError(f"{kernel} argument {i} = {v} does not fit {kind}")
            values.append(_CTYPES[kind](v))
    array = (ctypes.c_void_p * max(len(values), 1))(*[ctypes.addressof(v) for v in values])
    return PackedParams(values=values, array=array)


def grid_1d(total: int, block: int = 256) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) covering `total` threads in one dimension (at least one block)."""
    return (max((int(total) + block - 1) // block, 1), 1, 1), (block, 1, 1)


class Driver(Protocol):
    """What the pipeline classes need from CUDA; CudaDriver is the GPU, ShimDriver the CPU stand-in."""

    def launch(self, kernel: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: Sequence[Any]) -> None: ...
    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def host_buffer(self, nbytes: int) -> np.ndarray: ...
    def free_host(self, host: np.ndarray) -> None: ...
    def upload(self, dst: int, src: np.ndarray) -> None: ...
    def download(self, dst: np.ndarray, src: int) -> None: ...
    def synchronize(self) -> None: ...
    def close(self) -> None: ...


def _cu(driver: Any, result: Any, call: str) -> Any:
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        try:
            name = driver.cuGetErrorName(err)[1].decode()
            desc = driver.cuGetErrorString(err)[1].decode()
            what = f"{name} ({desc})"
        except Exception:  # noqa: BLE001 - the message must not hide the original failure
            what = repr(err)
        raise CudaError(f"{call} failed: {what}")
    return values[0] if len(values) == 1 else (values or None)


class CudaDriver:
    """The kernels on a real GPU through cuda.bindings.driver, all work on one stream.

    `stream`: a CUstream handle (int) to run on, e.g. the TensorRT backend's; None creates one. The
    device's primary context (the one the CUDA runtime and TensorRT use) is made current on the calling thread
    by every method, since a context is current per thread and the driver may be used on another thread than
    the one that made it (driver calls there would fail with CUDA_ERROR_INVALID_CONTEXT). Modules are
    compiled (compiler.compiled_kernel, disk-cached) and loaded at first use of one of their kernels.
    On an integrated GPU (Jetson) host staging buffers are mapped, pinned memory the GPU reads in place.
    """

    def __init__(self, device_index: int = 0, stream: int | None = None):
        try:
            from cuda.bindings import driver
        except ImportError:
            raise CudaError("cuda-python is not installed: `pip install cuda-python nvidia-cuda-nvrtc`") from None
        self._cu = driver
        _cu(driver, driver.cuInit(0), "cuInit")
        self.device = _cu(driver, driver.cuDeviceGet(device_index), f"cuDeviceGet({device_index})")
        self._ctx = _cu(driver, driver.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain")
        _cu(driver, driver.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")
        attr = driver.CUdevice_attribute

        def attribute(name: str) -> int:
            return int(_cu(driver, driver.cuDeviceGetAttribute(getattr(attr, name), self.device), f"cuDeviceGetAttribute({name})"))

        major, minor = attribute("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR"), attribute("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR")
        self.arch = major * 10 + minor
        self.integrated = bool(attribute("CU_DEVICE_ATTRIBUTE_INTEGRATED"))
        self._own_stream = stream is None
        self.stream = int(_cu(driver, driver.cuStreamCreate(0), "cuStreamCreate")) if stream is None else int(stream)
        self._functions: dict[str, Any] = {}
        self._modules: dict[str, Any] = {}
        self._host: list[tuple[int, np.ndarray]] = []
        self.launches = 0

    def _bind(self) -> None:
        """This device's primary context, current on the calling thread (cheap when it already is)."""
        _cu(self._cu, self._cu.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")

    def function(self, kernel: str) -> Any:
        self._bind()
        fn = self._functions.get(kernel)
        if fn is None:
            src = KERNEL_SOURCE[kernel]
            if src not in self._modules:
                image = compiler.compiled_kernel(src, self.arch).image
                self._modules[src] = _cu(self._cu, self._cu.cuModuleLoadData(image), f"cuModuleLoadData({src})")
            fn = _cu(self._cu, self._cu.cuModuleGetFunction(self._modules[src], kernel.encode()), f"cuModuleGetFunction({kernel})")
            self._functions[kernel] = fn
        return fn

    def load_kernels(self) -> None:
        """Compile (or read from the cache) and load every kernel now, so a missing NVRTC or a compile error shows
        when the caller sets up, not at its first batch."""
        for kernel in KERNEL_SIGNATURES:
            self.function(kernel)

    def launch(self, kernel: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: Sequence[Any]) -> None:
        params = pack_params(kernel, args)
        fn = self.function(kernel)  # binds the context
        _cu(
            self._cu,
            self._cu.cuLaunchKernel(fn, *grid, *block, 0, self.stream, params.address, 0),
            f"cuLaunchKernel({kernel}, grid={grid}, block={block})",
        )
        self.launches += 1

    def alloc(self, nbytes: int) -> int:
        self._bind()
        return int(_cu(self._cu, self._cu.cuMemAlloc(max(int(nbytes), 1)), f"cuMemAlloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self._bind()
        _cu(self._cu, self._cu.cuMemFree(ptr), "cuMemFree")

    def host_buffer(self, nbytes: int) -> np.ndarray:
        """Pinned host memory (mapped into the GPU's address space on an integrated GPU) as uint8 [nbytes]."""
        self._bind()
        flags = self._cu.CU_MEMHOSTALLOC_DEVICEMAP if self.integrated else 0
        ptr = int(_cu(self._cu, self._cu.cuMemHostAlloc(max(int(nbytes), 1), flags), f"cuMemHostAlloc({nbytes})"))
        arr = np.ctypeslib.as_array((ctypes.c_uint8 * max(int(nbytes), 1)).from_address(ptr))
        self._host.append((ptr, arr))
        return arr

    def free_host(self, host: np.ndarray) -> None:
        """Free a host_buffer now (not at close): a staging buffer that grew, on a Jetson out of shared DRAM."""
        for i, (ptr, arr) in enumerate(self._host):
            if arr is host:
                self._bind()
                del self._host[i]
                _cu(self._cu, self._cu.cuMemFreeHost(ptr), "cuMemFreeHost")
                return
        raise ValueError("CudaDriver.free_host: not a host_buffer of this driver (or freed already)")

    def mapped_pointer(self, host: np.ndarray) -> int | None:
        """The device address of a host_buffer on an integrated GPU (zero-copy), else None."""
        if not self.integrated:
            return None
        self._bind()
        return int(_cu(self._cu, self._cu.cuMemHostGetDevicePointer(host.ctypes.data, 0), "cuMemHostGetDevicePointer"))

    def upload(self, dst: int, src: np.ndarray) -> None:
        self._bind()
        _cu(self._cu, self._cu.cuMemcpyHtoDAsync(dst, src.ctypes.data, src.nbytes, self.stream), f"cuMemcpyHtoDAsync({src.nbytes})")

    def download(self, dst: np.ndarray, src: int) -> None:
        self._bind()
        _cu(self._cu, self._cu.cuMemcpyDtoHAsync(dst.ctypes.data, src, dst.nbytes, self.stream), f"cuMemcpyDtoHAsync({dst.nbytes})")

    def synchronize(self) -> None:
        self._bind()
        _cu(self._cu, self._cu.cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    def close(self) -> None:
        if self._ctx is not None:
            self._cu.cuCtxSetCurrent(self._ctx)  # unchecked: close must release what it can
        for ptr, _ in self._host:
            self._cu.cuMemFreeHost(ptr)
        self._host.clear()
        for m in self._modules.values():
            self._cu.cuModuleUnload(m)
        self._modules.clear()
        self._functions.clear()
        if self._own_stream:
            self._cu.cuStreamDestroy(self.stream)
            self._own_stream = False
        if self._ctx is not None:
            self._cu.cuDevicePrimaryCtxRelease(self.device)
            self._ctx = None
