"""`__cuda_array_interface__` (CuPy, PyTorch, Numba, pycuda GPUArray): read a device buffer without a copy.

Only what the runtime needs: the pointer, after checking that shape, dtype and layout are exactly the ones
the engine expects (C-contiguous, no mask). Spec: https://numba.readthedocs.io/en/stable/cuda/cuda_array_interface.html
(version 3 adds `stream`: the producer's stream, which the consumer must order its work after; `None` there
means no synchronization is needed). `stream_to_wait_on` is the rule the backends follow, including for
interfaces without the key (PyTorch publishes version 2, which has none). `DeviceArray` is the other
direction: a backend's device buffer exported with the stream that writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CudaArrayView:
    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    stream: int | None  # producer's stream handle (1 = legacy default, 2 = per-thread default); None: none given
    stream_declared: bool = False  # the interface has a `stream` key (an explicit None there: no sync needed)


def c_contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


def parse_cuda_array_interface(obj: Any, *, shape: tuple[int, ...], dtype: np.dtype | type | str, what: str = "input") -> CudaArrayView:
    """Validate `obj.__cuda_array_interface__` against the expected `shape` and `dtype`; return its view.

    Raises TypeError for an object without the interface and ValueError for a buffer of another shape, dtype
    or layout (non-contiguous strides, a mask, a null pointer), naming what was expected and what was given.
    """
    try:
        cai = obj.__cuda_array_interface__
    except AttributeError:
        raise TypeError(
            f"{what}: {type(obj).__name__} has no __cuda_array_interface__ (pass a CuPy array, a CUDA torch "
            "tensor, a pycuda GPUArray, or a raw device pointer as int)"
        ) from None
    if not isinstance(cai, dict):
        raise TypeError(f"{what}: __cuda_array_interface__ is a {type(cai).__name__}, expected a dict")
    for key in ("shape", "typestr", "data", "version"):
        if key not in cai:
            raise ValueError(f"{what}: __cuda_array_interface__ lacks {key!r}")

    got_shape = tuple(int(d) for d in cai["shape"])
    want_shape = tuple(int(d) for d in shape)
    if got_shape != want_shape:
        raise ValueError(f"{what}: shape {got_shape}, expected {want_shape}")

    want_dtype = np.dtype(dtype)
    try:
        got_dtype = np.dtype(cai["typestr"])
    except TypeError:
        raise ValueError(f"{what}: typestr {cai['typestr']!r} is not a numpy dtype") from None
    if got_dtype != want_dtype:
        raise ValueError(f"{what}: dtype {got_dtype} ({cai['typestr']!r}), expected {want_dtype} ({want_dtype.str!r})")

    strides = cai.get("strides")
    if strides is not None:
        got_strides = tuple(int(s) for s in strides)
        want_strides = c_contiguous_strides(want_shape, want_dtype.itemsize)
        # Strides of dimensions of size 1 do not matter (torch reports arbitrary ones there).
        if any(g != w for g, w, d in zip(got_strides, want_strides, want_shape) if d != 1):
            raise ValueError(
                f"{what}: strides {got_strides} bytes are not C-contiguous (expected {want_strides}); "
                "make it contiguous first (e.g. .contiguous() / cupy.ascontiguousarray)"
            )
    if cai.get("mask") is not None:
        raise ValueError(f"{what}: masked CUDA arrays are not supported")

    data = cai["data"]
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{what}: __cuda_array_interface__['data'] = {data!r}, expected (pointer, readonly)")
    ptr = int(data[0])
    if ptr == 0 and int(np.prod(want_shape)) > 0:
        raise ValueError(f"{what}: null device pointer")

    stream = cai.get("stream")
    if stream is not None:
        stream = int(stream)
        if stream == 0:
            raise ValueError(f"{what}: __cuda_array_interface__ stream 0 is disallowed by the spec (ambiguous)")
    return CudaArrayView(ptr=ptr, shape=got_shape, dtype=got_dtype, stream=stream, stream_declared="stream" in cai)


LEGACY_DEFAULT_STREAM = 1  # cudaStreamLegacy, as the interface and cuda-python's runtime API both number it


def stream_to_wait_on(view: CudaArrayView) -> int | None:
    """The stream a consumer must order its reads after, or None when the producer guarantees the data is ready.

    - `stream: <handle>`: that stream.
    - `stream: None` (version 3): the producer says no synchronization is needed.
    - no `stream` key (versions 0-2, e.g. PyTorch's version 2): the producer makes no guarantee. The data is
      taken to be written on the legacy default stream, which is where PyTorch, CuPy and Numba enqueue unless
      told otherwise; the consumer records an event there and makes its own stream wait on it. Recording on
      the legacy stream also orders after earlier work on every *blocking* stream; a producer that wrote on a
      non-blocking stream of its own must name it (the backends' `producer_stream=`) or synchronize first.
    """
    if view.stream is not None:
        return view.stream
    if view.stream_declared:
        return None
    return LEGACY_DEFAULT_STREAM


@dataclass(frozen=True)
class DeviceArray:
    """Device memory owned by someone else (a backend's output buffer), exported through
    `__cuda_array_interface__` version 3 with the stream its contents are written on, so CuPy, PyTorch or the
    CUDA kernels order their reads after it. Valid until the owner's next call; never freed through this."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    stream: int  # the writer's stream handle; nonzero (the interface disallows 0)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {
            "shape": tuple(self.shape),
            "typestr": np.dtype(self.dtype).str,
            "data": (int(self.ptr), False),
            "version": 3,
            "strides": None,
            "stream": int(self.stream),
        }
