"""Strict stand-ins for CUDA (cuda.bindings.driver and .runtime) and TensorRT: one simulated GPU.

The GPU code runs on them unchanged (they are installed as the modules it imports), and they refuse
what the real APIs refuse. What they model, after NVIDIA's documentation (docs/tensorrt.md lists it, and
what they cannot catch):

- Contexts are bound per thread. A driver call that needs a context fails with CUDA_ERROR_INVALID_CONTEXT
  on a thread where none is current; a runtime call there makes the primary context of the thread's
  runtime device (0 unless cudaSetDevice said otherwise) current, as the real runtime does. Work enqueued
  on a stream of another context fails (invalid handle), memory of another device is an illegal address.
- Device memory is its own address space: device pointers are non-canonical addresses the host cannot
  dereference, copies are checked against one allocation, kernels see their pointer arguments translated to
  the backing store. Every allocation (device, pinned, streams, events, modules, context retains) is counted
  and `live()` must be empty after close.
- Stream order: async copies, launches and engine enqueues are queued per stream and run at a synchronize,
  an event wait, a free, or at random points drawn from `seed` (printed by the fixtures; rerun with
  DF2INFER_GPU_SEED). A copy from pinned memory reads it when it runs, one from pageable memory when it is
  enqueued; a copy to pageable memory returns when done: reusing a pinned buffer before its copy ran gives
  the wrong data, as on a GPU.
- Versions: a CUDA runtime newer than the driver gives cudaErrorInsufficientDriver, across majors always,
  within a major only where minor-version compatibility is absent (Jetson, `integrated=True`).
- Failure injection: `fail("cudaMalloc")`, `fail("cuLaunchKernel")`, `fail("deserialize_cuda_engine")`...
- TensorRT: engines are blobs the fake builder writes; exact engines load only on their version,
  version-compatible ones per TensorRT's rule and only with engine_host_code_allowed, plugins resolve
  from init_libnvinfer_plugins or, for version-compatible engines, only from the plugin libraries
  serialized into them (plugins_to_serialize) or loaded into the registry. Output shapes are -1 until every
  input shape is set; execute_async_v3 is queued on the stream.
- The kernels run through the CPU shim (df2infer.ops.cuda.shim), so their results are real.

`install(monkeypatch, gpu)` puts them in place in-process; `DF2INFER_TEST_STRICT_GPU=1` with tests/strict_gpu_hook
on PYTHONPATH does it in a subprocess (tests/strict_gpu_hook/sitecustomize.py). Only test code reads that variable.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import json
import os
import random
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.ops.cuda.launch import KERNEL_SIGNATURES, pack_params

SEED_ENV = "DF2INFER_GPU_SEED"
SWITCH_ENV = "DF2INFER_TEST_STRICT_GPU"
HOOK_DIR = Path(__file__).resolve().parent / "strict_gpu_hook"
DEVICE_BASE = 0x0D00_0000_0000_0000  # non-canonical on x86-64 and aarch64: the host faults on it, as on a discrete GPU


# ------------------------------------------------------------------------------------------------ error codes
class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_OUT_OF_MEMORY = 2
    CUDA_ERROR_NOT_INITIALIZED = 3
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_INVALID_DEVICE = 101
    CUDA_ERROR_INVALID_IMAGE = 200
    CUDA_ERROR_INVALID_CONTEXT = 201
    CUDA_ERROR_INVALID_HANDLE = 400
    CUDA_ERROR_NOT_FOUND = 500
    CUDA_ERROR_ILLEGAL_ADDRESS = 700
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701


class cudaError_t(enum.IntEnum):  # noqa: N801 - CUDA's name
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInitializationError = 3
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalAddress = 700
    cudaErrorLaunchOutOfResources = 701


_DESCRIPTIONS = {
    0: "no error",
    1: "invalid argument",
    2: "out of memory",
    3: "initialization error",
    35: "CUDA driver version is insufficient for CUDA runtime version",
    100: "no CUDA-capable device is detected",
    101: "invalid device ordinal",
    200: "device kernel image is invalid",
    201: "invalid device context",
    400: "invalid resource handle",
    500: "named symbol not found",
    700: "an illegal memory access was encountered",
    701: "too many resources requested for launch",
}
# The driver's code for each runtime code (same numbers, other names).
_TO_DRIVER = {int(e): CUresult(int(e)) for e in cudaError_t if int(e) in {int(c) for c in CUresult}}


class CudaFail(Exception):
    """Internal: a call fails with this runtime code (converted to the API's own code at the boundary)."""

    def __init__(self, code: cudaError_t | CUresult, why: str = "") -> None:
        super().__init__(f"{code.name}: {why}")
        self.code, self.why = code, why


class GpuModelError(AssertionError):
    """The code did something the stand-in cannot model (a bug in the test or the code, never a pass)."""


# ------------------------------------------------------------------------------------------------ handles
class _Handle:
    kind = "handle"

    def __init__(self, value: int) -> None:
        self._value = int(value)

    def __int__(self) -> int:
        return self._value

    __index__ = __int__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (_Handle, int)) and int(other) == self._value  # type: ignore[arg-type]

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"<{self.kind} {self._value:#x}>"


class cudaStream_t(_Handle):  # noqa: N801
    kind = "cudaStream_t"


class cudaEvent_t(_Handle):  # noqa: N801
    kind = "cudaEvent_t"


class CUstream(_Handle):
    kind = "CUstream"


class CUcontext(_Handle):
    kind = "CUcontext"


class CUmodule(_Handle):
    kind = "CUmodule"


class CUfunction(_Handle):
    kind = "CUfunction"


# ------------------------------------------------------------------------------------------------ state
@dataclass
class Device:
    index: int
    name: str = "Simulated Orin"
    cc: tuple[int, int] = (8, 7)
    integrated: bool = False
    memory: int = 1 << 30  # bytes the device can allocate


@dataclass
class Context:
    handle: int
    device: int
    driver_retains: int = 0
    runtime_active: bool = False


@dataclass
class Allocation:
    base: int
    size: int
    backing: np.ndarray
    kind: str  # "device" | "pinned"
    device: int  # owning device ("pinned": -1)
    mapped: bool = False  # pinned memory the GPU may read in place (CU_MEMHOSTALLOC_DEVICEMAP / cudaMallocHost)
    what: str = ""

    @property
    def host_address(self) -> int:
        return int(self.backing.ctypes.data)


@dataclass
class Op:
    seq: int
    what: str
    run: Callable[[], None]


@dataclass
class Stream:
    handle: int
    ctx: Context
    blocking: bool = True
    queue: list[Op] = field(default_factory=list)
    done: int = 0  # seq of the last op run
    last: int = 0  # seq of the last op enqueued
    legacy: bool = False


@dataclass
class Event:
    handle: int
    ctx: Context
    waits: dict[int, int] = field(default_factory=dict)  # stream handle -> seq to have run


class SimGpu:
    """The simulated machine. `devices`: Device per ordinal. Versions as CUDA writes them (12060 = 12.6)."""

    def __init__(
        self,
        *,
        devices: list[Device] | None = None,
        driver_version: int = 13000,
        runtime_version: int = 13000,
        seed: int | None = None,
        eager: float = 0.25,
        shim_dir: Path | None = None,
    ) -> None:
        self.devices = devices or [Device(0)]
        self.driver_version = driver_version
        self.runtime_version = runtime_version
        self.seed = int(os.environ[SEED_ENV]) if seed is None and os.environ.get(SEED_ENV) else seed
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(1 << 31)
        self.rng = random.Random(self.seed)
        self.eager = eager  # chance that the GPU runs a stream's queue right after an enqueue
        self.shim_dir = shim_dir
        self._shim: Any = None
        self.lock = threading.RLock()
        self.tls = threading.local()
        self.initialized = False
        self._ids = itertools.count(0x1000, 0x10)
        self._seq = itertools.count(1)
        self._next_device = DEVICE_BASE
        self.contexts = {d.index: Context(handle=next(self._ids), device=d.index) for d in self.devices}
        self.allocations: dict[int, Allocation] = {}
        self.streams: dict[int, Stream] = {}
        self.events: dict[int, Event] = {}
        self.modules: dict[int, bytes] = {}
        self.functions: dict[int, str] = {}
        self.failures: dict[str, list[int]] = {}  # call name -> countdown list (fail when it reaches 0)
        self.calls: dict[str, int] = {}
        self.log: list[tuple] = []  # ("cuda.<name>", args...) / ("trt.<name>", args...)
        self.launches: list[str] = []
        self.copies: list[tuple[str, int]] = []  # (direction, bytes) when each copy runs
        self.async_error: CudaFail | None = None
        self.errors: list[tuple[str, str, str]] = []  # (call, status, why) of every failed call
        self.trt_errors: list[str] = []  # what the fake TensorRT logged as errors
        self.trt_version = "10.3.0.30"
        self.plugins_ok = True  # what init_libnvinfer_plugins returns
        self.trt: Any = None  # the fake tensorrt module, once made
        self.engine_fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
        self.engine_inputs: list[dict[str, np.ndarray]] = []  # what every engine run read
        self.legacy = {d.index: Stream(handle=1, ctx=self.contexts[d.index], legacy=True) for d in self.devices}

    # ---------------------------------------------------------------- bookkeeping
    def describe(self) -> str:
        return f"strict GPU stand-in seed={self.seed} (rerun with {SEED_ENV}={self.seed})"

    def fail(self, call: str, nth: int = 1) -> None:
        """Make the nth next call of `call` (a CUDA or TensorRT call name) fail with its usual error."""
        self.failures.setdefault(call, []).append(nth)

    def _should_fail(self, call: str) -> bool:
        pending = self.failures.get(call)
        if not pending:
            return False
        pending[:] = [n - 1 for n in pending]
        if 0 in pending:
            pending.remove(0)
            return True
        return False

    def live(self) -> dict[str, list[str]]:
        """What is still allocated: must be empty once the code under test has closed everything."""
        with self.lock:
            out = {
                "device memory": [f"{a.base:#x}+{a.size} {a.what}" for a in self.allocations.values() if a.kind == "device"],
                "pinned memory": [f"{a.base:#x}+{a.size} {a.what}" for a in self.allocations.values() if a.kind == "pinned"],
                "streams": [f"{h:#x}" for h in self.streams],
                "events": [f"{h:#x}" for h in self.events],
                "modules": [f"{h:#x}" for h in self.modules],
                "context retains": [f"device {c.device}: {c.driver_retains}" for c in self.contexts.values() if c.driver_retains],
            }
        return {k: v for k, v in out.items() if v}

    def device_bytes(self, device: int = 0) -> int:
        return sum(a.size for a in self.allocations.values() if a.kind == "device" and a.device == device)

    # ---------------------------------------------------------------- threads and contexts
    @property
    def current(self) -> Context | None:
        return getattr(self.tls, "ctx", None)

    @current.setter
    def current(self, ctx: Context | None) -> None:
        self.tls.ctx = ctx

    def driver_ctx(self) -> Context:
        if not self.initialized:
            raise CudaFail(cudaError_t.cudaErrorInitializationError, "cuInit was not called")
        ctx = self.current
        if ctx is None:
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_CONTEXT, f"no CUDA context is current on thread {threading.current_thread().name}")
        if ctx.driver_retains == 0 and not ctx.runtime_active:
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_CONTEXT, "the current primary context was released")
        return ctx

    def runtime_check(self) -> None:
        rt, drv = self.runtime_version, self.driver_version
        newer = rt // 1000 > drv // 1000 or (rt > drv and any(d.integrated for d in self.devices))
        if newer:
            raise CudaFail(
                cudaError_t.cudaErrorInsufficientDriver, f"runtime {rt // 1000}.{rt % 1000 // 10} > driver {drv // 1000}.{drv % 1000 // 10}"
            )
        self.initialized = True

    def runtime_ctx(self) -> Context:
        """The runtime's context on this thread: the current one, else the runtime device's primary context, made current."""
        self.runtime_check()
        ctx = self.current
        if ctx is None:
            ctx = self.contexts[getattr(self.tls, "device", 0)]
            ctx.runtime_active = True
            self.current = ctx
        return ctx

    # ---------------------------------------------------------------- memory
    def allocate(self, nbytes: int, kind: str, device: int, *, mapped: bool = False, what: str = "") -> Allocation:
        nbytes = int(nbytes)
        if nbytes <= 0:
            raise CudaFail(cudaError_t.cudaErrorInvalidValue, f"allocation of {nbytes} bytes")
        if kind == "device" and self.device_bytes(device) + nbytes > self.devices[device].memory:
            raise CudaFail(cudaError_t.cudaErrorMemoryAllocation, f"device {device} has no {nbytes} bytes left")
        backing = np.zeros(nbytes, np.uint8)
        if kind == "device":
            base = self._next_device
            self._next_device += (nbytes + 0xFFFF) // 0x10000 * 0x10000 + 0x10000  # a guard gap after each
        else:
            base = int(backing.ctypes.data)
        a = Allocation(
            base=base, size=nbytes, backing=backing, kind=kind, device=device if kind == "device" else -1, mapped=mapped, what=what
        )
        self.allocations[base] = a
        return a

    def release(self, ptr: int, kind: str) -> None:
        a = self.allocations.get(int(ptr))
        if a is None or a.kind != kind:
            raise CudaFail(cudaError_t.cudaErrorInvalidValue, f"{int(ptr):#x} is not the start of a {kind} allocation")
        # cudaFree / cuMemFree / cudaFreeHost synchronize: queued work that uses the memory runs first.
        self.run_all()
        del self.allocations[a.base]

    def find(self, ptr: int, nbytes: int) -> Allocation | None:
        ptr = int(ptr)
        for a in self.allocations.values():
            if a.base <= ptr and ptr + nbytes <= a.base + a.size:
                return a
        return None

    def region(self, ptr: int, nbytes: int, *, device: bool, what: str) -> tuple[Allocation, int]:
        """(allocation, offset) of [ptr, ptr + nbytes), which must lie in one device (or host) allocation."""
        a = self.find(ptr, nbytes)
        if device:
            if a is None or a.kind != "device":
                raise CudaFail(cudaError_t.cudaErrorInvalidValue, f"{what}: [{int(ptr):#x}, +{nbytes}) is not inside one device allocation")
        elif a is not None and a.kind == "device":
            raise CudaFail(cudaError_t.cudaErrorInvalidValue, f"{what}: {int(ptr):#x} is device memory, a host address was expected")
        elif int(ptr) >= DEVICE_BASE:
            raise CudaFail(cudaError_t.cudaErrorInvalidValue, f"{what}: {int(ptr):#x} is not a host address")
        return (a, int(ptr) - a.base) if a is not None else (None, int(ptr))  # type: ignore[return-value]

    def translate(self, ptr: int, device: int, what: str) -> int:
        """A kernel's pointer argument as the host address of its backing store (illegal address if none)."""
        ptr = int(ptr)
        if ptr == 0:
            return 0
        for a in self.allocations.values():
            if a.base <= ptr <= a.base + a.size:
                if a.kind == "device":
                    if a.device != device:
                        raise CudaFail(
                            cudaError_t.cudaErrorIllegalAddress, f"{what}: {ptr:#x} is memory of device {a.device}, run on {device}"
                        )
                    return a.host_address + (ptr - a.base)
                if a.mapped:
                    return ptr
        raise CudaFail(cudaError_t.cudaErrorIllegalAddress, f"{what}: {ptr:#x} is not device memory")

    def read(self, ptr: int, nbytes: int) -> bytes:
        """Test helper: device memory contents now (whatever the queues have not run yet is not there)."""
        a, off = self.region(ptr, nbytes, device=True, what="read")
        return a.backing[off : off + nbytes].tobytes()

    def write(self, ptr: int, data: bytes) -> None:
        a, off = self.region(ptr, len(data), device=True, what="write")
        a.backing[off : off + len(data)] = np.frombuffer(data, np.uint8)

    # ---------------------------------------------------------------- streams
    def stream(self, handle: Any, ctx: Context, *, what: str) -> Stream:
        h = int(handle) if handle is not None else 0
        if h in (0, 1, 2):  # legacy / per-thread default stream of the current context
            return self.legacy[ctx.device]
        s = self.streams.get(h)
        if s is None:
            raise CudaFail(cudaError_t.cudaErrorInvalidResourceHandle, f"{what}: stream {h:#x} does not exist (destroyed?)")
        return s

    def enqueue_stream(self, handle: Any, ctx: Context, what: str) -> Stream:
        """The stream to enqueue on: it must belong to the current context."""
        s = self.stream(handle, ctx, what=what)
        if s.ctx is not ctx:
            raise CudaFail(
                cudaError_t.cudaErrorInvalidResourceHandle,
                f"{what}: stream {s.handle:#x} belongs to device {s.ctx.device}, the current context is device {ctx.device}",
            )
        return s

    def enqueue(self, s: Stream, what: str, run: Callable[[], None]) -> int:
        seq = next(self._seq)
        s.queue.append(Op(seq, what, run))
        s.last = seq
        if self.rng.random() < self.eager:  # the GPU got to it already
            self.run_stream(s, seq)
        return seq

    def run_stream(self, s: Stream, upto: int | None = None) -> None:
        with self.lock:
            while s.queue and (upto is None or s.queue[0].seq <= upto):
                op = s.queue.pop(0)
                try:
                    op.run()
                except CudaFail as e:
                    if self.async_error is None:
                        self.async_error = e
                s.done = op.seq

    def run_all(self, device: int | None = None) -> None:
        with self.lock:
            for s in [*self.legacy.values(), *self.streams.values()]:
                if device is None or s.ctx.device == device:
                    self.run_stream(s)

    def synchronize(self, s: Stream) -> None:
        self.run_stream(s)
        if s.legacy:  # the legacy default stream orders after every blocking stream of its context
            for other in self.streams.values():
                if other.ctx is s.ctx and other.blocking:
                    self.run_stream(other)
        if self.async_error is not None:
            err, self.async_error = self.async_error, None
            raise err

    def record(self, ev: Event, s: Stream) -> None:
        ev.waits = {s.handle if not s.legacy else -1 - s.ctx.device: s.last}
        if s.legacy:
            ev.waits.update({o.handle: o.last for o in self.streams.values() if o.ctx is s.ctx and o.blocking})

    def wait_event(self, ev: Event) -> None:
        for h, seq in ev.waits.items():
            s = self.legacy[-1 - h] if h < 0 else self.streams.get(h)
            if s is not None:
                self.run_stream(s, seq)

    # ---------------------------------------------------------------- kernels
    def shim(self) -> Any:
        if self._shim is None:
            from df2infer.ops.cuda import shim

            self._shim = shim.load(self.shim_dir)
        return self._shim

    def launch_op(self, kernel: str, grid: tuple, block: tuple, values: list, device: int) -> Callable[[], None]:
        sig = KERNEL_SIGNATURES[kernel]

        def run() -> None:
            args = [self.translate(v, device, f"{kernel} argument {i}") if k == "ptr" else v for i, (k, v) in enumerate(zip(sig, values))]
            params = pack_params(kernel, args)
            g = (ctypes.c_uint * 3)(*grid)
            b = (ctypes.c_uint * 3)(*block)
            if self.shim().shim_launch(kernel.encode(), g, b, params.address) != 0:
                raise GpuModelError(f"the shim has no kernel {kernel}")
            self.launches.append(kernel)

        return run

    def copy_op(self, direction: str, dst: Callable[[], int], src: Callable[[], int], nbytes: int) -> Callable[[], None]:
        def run() -> None:
            ctypes.memmove(dst(), src(), nbytes)
            self.copies.append((direction, nbytes))

        return run


# ------------------------------------------------------------------------------------------------ API surfaces
def _api_call(gpu: SimGpu, name: str, fn: Callable[..., Any], to_code: Callable[[CudaFail | None], Any]) -> Callable[..., Any]:
    """cuda-python's calling convention: (status, *values); a failure returns (status, None)."""

    def call(*args: Any) -> Any:
        with gpu.lock:
            gpu.log.append((f"cuda.{name}", *args))
            gpu.calls[name] = gpu.calls.get(name, 0) + 1
            try:
                result = fn(*args)
            except CudaFail as e:
                gpu.errors.append((name, e.code.name, e.why))
                return (to_code(e), None)
            values = result if isinstance(result, tuple) else (() if result is None else (result,))
            return (to_code(None), *values)

    call.__name__ = name
    return call


def make_driver(gpu: SimGpu) -> types.ModuleType:
    """`cuda.bindings.driver` as far as the code uses it."""
    mod = types.ModuleType("cuda.bindings.driver")
    mod.CUresult = CUresult
    mod.CU_MEMHOSTALLOC_DEVICEMAP = 0x02

    class CUdevice_attribute(enum.IntEnum):  # noqa: N801
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
        CU_DEVICE_ATTRIBUTE_INTEGRATED = 18

    mod.CUdevice_attribute = CUdevice_attribute

    def code(e: CudaFail | None) -> CUresult:
        if e is None:
            return CUresult.CUDA_SUCCESS
        return e.code if isinstance(e.code, CUresult) else _TO_DRIVER.get(int(e.code), CUresult.CUDA_ERROR_INVALID_VALUE)

    def device(i: Any) -> int:
        i = int(i)
        if not gpu.initialized:
            raise CudaFail(CUresult.CUDA_ERROR_NOT_INITIALIZED, "cuInit first")
        if not 0 <= i < len(gpu.devices):
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_DEVICE, f"device {i}")
        return i

    def cuInit(flags: int) -> None:
        gpu.initialized = True

    def cuDriverGetVersion() -> int:
        return gpu.driver_version

    def cuDeviceGet(i: int) -> int:
        return device(i)

    def cuDeviceGetAttribute(attr: Any, dev: Any) -> int:
        d = gpu.devices[device(dev)]
        return {75: d.cc[0], 76: d.cc[1], 18: int(d.integrated)}[int(attr)]

    def cuDevicePrimaryCtxRetain(dev: Any) -> CUcontext:
        ctx = gpu.contexts[device(dev)]
        ctx.driver_retains += 1
        return CUcontext(ctx.handle)

    def cuDevicePrimaryCtxRelease(dev: Any) -> None:
        ctx = gpu.contexts[device(dev)]
        if ctx.driver_retains == 0:
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_CONTEXT, "released more often than retained")
        ctx.driver_retains -= 1

    def by_handle(h: Any) -> Context | None:
        if h is None or int(h) == 0:
            return None
        for c in gpu.contexts.values():
            if c.handle == int(h):
                return c
        raise CudaFail(CUresult.CUDA_ERROR_INVALID_CONTEXT, f"context {int(h):#x}")

    def cuCtxSetCurrent(h: Any) -> None:
        gpu.current = by_handle(h)

    def cuCtxGetCurrent() -> CUcontext:
        c = gpu.current
        return CUcontext(c.handle if c else 0)

    def cuStreamCreate(flags: int) -> CUstream:
        ctx = gpu.driver_ctx()
        s = Stream(handle=next(gpu._ids), ctx=ctx, blocking=not (int(flags) & 1))
        gpu.streams[s.handle] = s
        return CUstream(s.handle)

    def cuStreamDestroy(h: Any) -> None:
        gpu.driver_ctx()
        s = gpu.stream(h, gpu.current, what="cuStreamDestroy")  # type: ignore[arg-type]
        gpu.run_stream(s)
        gpu.streams.pop(s.handle, None)

    def cuStreamSynchronize(h: Any) -> None:
        ctx = gpu.driver_ctx()
        gpu.synchronize(gpu.stream(h, ctx, what="cuStreamSynchronize"))

    def cuModuleLoadData(image: Any) -> CUmodule:
        gpu.driver_ctx()
        data = bytes(image)
        if not (data.startswith(b"\x7fELF") or b".version" in data[:4096]):
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_IMAGE, "neither a CUBIN nor PTX")
        h = next(gpu._ids)
        gpu.modules[h] = data
        return CUmodule(h)

    def cuModuleUnload(h: Any) -> None:
        gpu.driver_ctx()
        if gpu.modules.pop(int(h), None) is None:
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_HANDLE, "module")

    def cuModuleGetFunction(h: Any, name: bytes) -> CUfunction:
        gpu.driver_ctx()
        image = gpu.modules.get(int(h))
        if image is None:
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_HANDLE, "module")
        if bytes(name) not in image or bytes(name).decode() not in KERNEL_SIGNATURES:
            raise CudaFail(CUresult.CUDA_ERROR_NOT_FOUND, f"{name!r} is not in the module")
        fh = next(gpu._ids)
        gpu.functions[fh] = bytes(name).decode()
        return CUfunction(fh)

    def cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, stream, params, extra) -> None:  # noqa: ANN001
        ctx = gpu.driver_ctx()
        kernel = gpu.functions.get(int(f))
        if kernel is None:
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_HANDLE, "function")
        s = gpu.enqueue_stream(stream, ctx, f"cuLaunchKernel({kernel})")
        if gpu._should_fail("cuLaunchKernel"):
            raise CudaFail(CUresult.CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "injected")
        if int(bx) * int(by) * int(bz) > 1024 or min(int(v) for v in (gx, gy, gz, bx, by, bz)) < 1:
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_VALUE, f"grid {(gx, gy, gz)} block {(bx, by, bz)}")
        # The parameter values are read now, as cuLaunchKernel does: the caller may reuse its buffer at once.
        sig = KERNEL_SIGNATURES[kernel]
        slots = (ctypes.c_void_p * len(sig)).from_address(int(params))
        kinds = {"ptr": ctypes.c_void_p, "i32": ctypes.c_int32, "i64": ctypes.c_int64, "f32": ctypes.c_float}
        values = [kinds[k].from_address(slots[i]).value or 0 for i, k in enumerate(sig)]
        grid, block = (int(gx), int(gy), int(gz)), (int(bx), int(by), int(bz))
        gpu.enqueue(s, f"launch {kernel}", gpu.launch_op(kernel, grid, block, values, ctx.device))

    def cuMemAlloc(n: int) -> int:
        ctx = gpu.driver_ctx()
        if gpu._should_fail("cuMemAlloc"):
            raise CudaFail(CUresult.CUDA_ERROR_OUT_OF_MEMORY, "injected")
        return gpu.allocate(n, "device", ctx.device, what="cuMemAlloc").base

    def cuMemFree(p: Any) -> None:
        gpu.driver_ctx()
        gpu.release(int(p), "device")

    def cuMemHostAlloc(n: int, flags: int) -> int:
        gpu.driver_ctx()
        if gpu._should_fail("cuMemHostAlloc"):
            raise CudaFail(CUresult.CUDA_ERROR_OUT_OF_MEMORY, "injected")
        return gpu.allocate(n, "pinned", -1, mapped=bool(int(flags) & 0x02), what="cuMemHostAlloc").base

    def cuMemFreeHost(p: Any) -> None:
        gpu.driver_ctx()
        gpu.release(int(p), "pinned")

    def cuMemHostGetDevicePointer(p: Any, flags: int) -> int:
        gpu.driver_ctx()
        a = gpu.allocations.get(int(p))
        if a is None or a.kind != "pinned" or not a.mapped:
            raise CudaFail(CUresult.CUDA_ERROR_INVALID_VALUE, f"{int(p):#x} is not mapped pinned memory")
        return a.base  # unified addressing: the same address on both sides

    def cuMemcpyHtoDAsync(dst: Any, src: Any, n: int, stream: Any) -> None:
        ctx = gpu.driver_ctx()
        s = gpu.enqueue_stream(stream, ctx, "cuMemcpyHtoDAsync")
        _enqueue_copy(gpu, s, "HtoD", int(dst), int(src), int(n))

    def cuMemcpyDtoHAsync(dst: Any, src: Any, n: int, stream: Any) -> None:
        ctx = gpu.driver_ctx()
        s = gpu.enqueue_stream(stream, ctx, "cuMemcpyDtoHAsync")
        _enqueue_copy(gpu, s, "DtoH", int(dst), int(src), int(n))

    def cuGetErrorName(err: Any) -> bytes:
        return CUresult(int(err)).name.encode()

    def cuGetErrorString(err: Any) -> bytes:
        return _DESCRIPTIONS.get(int(err), "unknown error").encode()

    for name, fn in dict(locals()).items():
        if name.startswith("cu") and callable(fn):
            if name in ("cuGetErrorName", "cuGetErrorString"):

                def plain(*args: Any, _fn: Callable[..., Any] = fn) -> tuple:
                    return (CUresult.CUDA_SUCCESS, _fn(*args))

                setattr(mod, name, plain)
            else:
                setattr(mod, name, _api_call(gpu, name, fn, code))
    return mod


def _enqueue_copy(gpu: SimGpu, s: Stream, direction: str, dst: int, src: int, n: int) -> None:
    """A stream-ordered copy. Host side: pinned memory is read/written when the copy runs; pageable memory is
    read at the call (the driver stages it), and a copy into pageable memory returns only once done."""
    if direction == "HtoD":
        dev, _ = gpu.region(dst, n, device=True, what="copy destination")
        host, _ = gpu.region(src, n, device=False, what="copy source")
        target = dev.host_address + (dst - dev.base)
        if host is not None and host.kind == "pinned":
            gpu.enqueue(s, "HtoD", gpu.copy_op("HtoD", lambda: target, lambda: src, n))
        else:
            staged = np.frombuffer(ctypes.string_at(src, n), np.uint8).copy()
            gpu.enqueue(s, "HtoD pageable", gpu.copy_op("HtoD", lambda: target, lambda: int(staged.ctypes.data), n))
    elif direction == "DtoH":
        dev, _ = gpu.region(src, n, device=True, what="copy source")
        host, _ = gpu.region(dst, n, device=False, what="copy destination")
        source = dev.host_address + (src - dev.base)
        seq = gpu.enqueue(s, "DtoH", gpu.copy_op("DtoH", lambda: dst, lambda: source, n))
        if host is None or host.kind != "pinned":
            gpu.run_stream(s, seq)
    else:  # DtoD
        a, _ = gpu.region(dst, n, device=True, what="copy destination")
        b, _ = gpu.region(src, n, device=True, what="copy source")
        gpu.enqueue(s, "DtoD", gpu.copy_op("DtoD", lambda: a.host_address + dst - a.base, lambda: b.host_address + src - b.base, n))


def make_runtime(gpu: SimGpu) -> types.ModuleType:
    """`cuda.bindings.runtime` as far as the code uses it."""
    mod = types.ModuleType("cuda.bindings.runtime")
    mod.cudaError_t = cudaError_t
    mod.cudaStream_t = cudaStream_t
    mod.cudaEvent_t = cudaEvent_t
    mod.cudaStreamNonBlocking = 0x01
    mod.cudaEventDisableTiming = 0x02

    class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
        cudaMemcpyHostToHost = 0
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2
        cudaMemcpyDeviceToDevice = 3
        cudaMemcpyDefault = 4

    mod.cudaMemcpyKind = cudaMemcpyKind

    @dataclass
    class cudaDeviceProp:  # noqa: N801
        name: bytes = b""
        major: int = 0
        minor: int = 0
        integrated: int = 0
        totalGlobalMem: int = 0  # noqa: N815

    mod.cudaDeviceProp = cudaDeviceProp

    def code(e: CudaFail | None) -> cudaError_t:
        if e is None:
            return cudaError_t.cudaSuccess
        return cudaError_t(int(e.code)) if int(e.code) in {int(c) for c in cudaError_t} else cudaError_t.cudaErrorInvalidValue

    def cudaDriverGetVersion() -> int:
        return gpu.driver_version

    def cudaRuntimeGetVersion() -> int:
        return gpu.runtime_version

    def cudaGetDeviceCount() -> int:
        gpu.runtime_check()
        return len(gpu.devices)

    def cudaGetDeviceProperties(i: int) -> cudaDeviceProp:
        gpu.runtime_check()
        if not 0 <= int(i) < len(gpu.devices):
            raise CudaFail(cudaError_t.cudaErrorInvalidDevice, f"device {i}")
        d = gpu.devices[int(i)]
        return cudaDeviceProp(
            name=d.name.encode() + b"\0" * 8, major=d.cc[0], minor=d.cc[1], integrated=int(d.integrated), totalGlobalMem=d.memory
        )

    def cudaSetDevice(i: int) -> None:
        gpu.runtime_check()
        if not 0 <= int(i) < len(gpu.devices):
            raise CudaFail(cudaError_t.cudaErrorInvalidDevice, f"device {i}")
        gpu.tls.device = int(i)
        ctx = gpu.contexts[int(i)]
        ctx.runtime_active = True  # CUDA 12+: cudaSetDevice initializes the primary context and makes it current
        gpu.current = ctx

    def cudaGetDevice() -> int:
        return gpu.runtime_ctx().device

    def cudaStreamCreateWithFlags(flags: int) -> cudaStream_t:
        ctx = gpu.runtime_ctx()
        s = Stream(handle=next(gpu._ids), ctx=ctx, blocking=not (int(flags) & 1))
        gpu.streams[s.handle] = s
        return cudaStream_t(s.handle)

    def cudaStreamDestroy(h: Any) -> None:
        ctx = gpu.runtime_ctx()
        s = gpu.stream(h, ctx, what="cudaStreamDestroy")
        gpu.run_stream(s)  # work still queued completes, then the stream goes
        if gpu.streams.pop(s.handle, None) is None:
            raise CudaFail(cudaError_t.cudaErrorInvalidResourceHandle, "the legacy stream cannot be destroyed")

    def cudaStreamSynchronize(h: Any) -> None:
        ctx = gpu.runtime_ctx()
        gpu.synchronize(gpu.stream(h, ctx, what="cudaStreamSynchronize"))

    def cudaEventCreateWithFlags(flags: int) -> cudaEvent_t:
        ctx = gpu.runtime_ctx()
        ev = Event(handle=next(gpu._ids), ctx=ctx)
        gpu.events[ev.handle] = ev
        return cudaEvent_t(ev.handle)

    def event(h: Any) -> Event:
        ev = gpu.events.get(int(h))
        if ev is None:
            raise CudaFail(cudaError_t.cudaErrorInvalidResourceHandle, f"event {int(h):#x}")
        return ev

    def cudaEventDestroy(h: Any) -> None:
        gpu.runtime_ctx()
        gpu.events.pop(event(h).handle)

    def cudaEventRecord(h: Any, stream: Any) -> None:
        ctx = gpu.runtime_ctx()
        ev = event(h)
        s = gpu.enqueue_stream(stream, ctx, "cudaEventRecord")
        if ev.ctx is not s.ctx:
            raise CudaFail(cudaError_t.cudaErrorInvalidResourceHandle, "event and stream of different devices")
        gpu.record(ev, s)

    def cudaEventSynchronize(h: Any) -> None:
        gpu.runtime_ctx()
        gpu.wait_event(event(h))

    def cudaStreamWaitEvent(stream: Any, h: Any, flags: int) -> None:
        ctx = gpu.runtime_ctx()
        s = gpu.enqueue_stream(stream, ctx, "cudaStreamWaitEvent")
        ev = event(h)
        waits = dict(ev.waits)
        gpu.enqueue(s, "wait event", lambda: gpu.wait_event(Event(ev.handle, ev.ctx, waits)))

    def cudaMallocHost(n: int) -> int:
        gpu.runtime_ctx()
        if gpu._should_fail("cudaMallocHost"):
            raise CudaFail(cudaError_t.cudaErrorMemoryAllocation, "injected")
        return gpu.allocate(n, "pinned", -1, mapped=True, what="cudaMallocHost").base

    def cudaFreeHost(p: Any) -> None:
        gpu.runtime_ctx()
        gpu.release(int(p), "pinned")

    def cudaMalloc(n: int) -> int:
        ctx = gpu.runtime_ctx()
        if gpu._should_fail("cudaMalloc"):
            raise CudaFail(cudaError_t.cudaErrorMemoryAllocation, "injected")
        return gpu.allocate(n, "device", ctx.device, what="cudaMalloc").base

    def cudaFree(p: Any) -> None:
        gpu.runtime_ctx()
        if int(p) == 0:
            return  # cudaFree(0): the runtime-initialization idiom
        gpu.release(int(p), "device")

    def direction(kind: Any, dst: int, src: int) -> str:
        k = int(kind)
        if k == 4:  # cudaMemcpyDefault: unified addressing tells
            k = (2 if dst < DEVICE_BASE else 3) if src >= DEVICE_BASE else (1 if dst >= DEVICE_BASE else 0)
        if k not in (1, 2, 3):
            raise CudaFail(cudaError_t.cudaErrorInvalidValue, f"copy kind {k} is not modelled")
        return {1: "HtoD", 2: "DtoH", 3: "DtoD"}[k]

    def cudaMemcpyAsync(dst: Any, src: Any, n: int, kind: Any, stream: Any) -> None:
        ctx = gpu.runtime_ctx()
        s = gpu.enqueue_stream(stream, ctx, "cudaMemcpyAsync")
        _enqueue_copy(gpu, s, direction(kind, int(dst), int(src)), int(dst), int(src), int(n))

    def cudaMemcpy(dst: Any, src: Any, n: int, kind: Any) -> None:
        ctx = gpu.runtime_ctx()
        s = gpu.legacy[ctx.device]
        gpu.synchronize(s)
        _enqueue_copy(gpu, s, direction(kind, int(dst), int(src)), int(dst), int(src), int(n))
        gpu.synchronize(s)

    def cudaGetErrorName(err: Any) -> bytes:
        return cudaError_t(int(err)).name.encode()

    def cudaGetErrorString(err: Any) -> bytes:
        return _DESCRIPTIONS.get(int(err), "unknown error").encode()

    for name, fn in dict(locals()).items():
        if name.startswith("cuda") and callable(fn) and not isinstance(fn, type):
            if name in ("cudaGetErrorName", "cudaGetErrorString"):

                def plain(*args: Any, _fn: Callable[..., Any] = fn) -> tuple:
                    return (cudaError_t.cudaSuccess, _fn(*args))

                setattr(mod, name, plain)
            else:
                setattr(mod, name, _api_call(gpu, name, fn, code))
    return mod


# ------------------------------------------------------------------------------------------------ TensorRT
ENGINE_MAGIC = b"SIMTRT1\n"
# ONNX operators the parser imports as TensorRT plugins: (plugin name, the version-compatible plugin library).
PLUGIN_OPS = {"RoiAlign": "ROIAlign_TRT"}
_TRT_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT8": np.int8, "INT64": np.int64, "BOOL": np.bool_}


def vc_plugin_library(trt_version: str) -> str:
    return f"/usr/lib/x86_64-linux-gnu/libnvinfer_vc_plugin.so.{trt_version.split('.')[0]}"


def engine_version_loads(built: str, installed: str, version_compatible: bool) -> bool:
    """TensorRT's rule (engine compatibility docs): exact version, or a version-compatible engine on the same
    major, same or newer, or across 8 -> 9/10 and 10 -> 11."""
    b = tuple(int(x) for x in built.split("."))
    i = tuple(int(x) for x in installed.split("."))
    if not version_compatible:
        return b == i
    return (b[0] == i[0] and i >= b) or (b[0], i[0]) in {(8, 9), (8, 10), (10, 11)}


def engine_blob(
    contract: Any,
    *,
    trt_version: str = "10.3.0.30",
    version_compatible: bool = False,
    plugins: tuple[str, ...] = (),
    vc_plugin_libraries: tuple[str, ...] = (),
    max_batch: int | None = None,
    min_batch: int = 1,
    dtypes: dict[str, str] | None = None,
) -> bytes:
    """A serialized engine for the fake runtime: the contract's tensors, batch min_batch..max_batch."""
    from df2infer.contract import INPUT_NAME

    mb = int(max_batch if max_batch is not None else contract.max_batch)
    dt = {"num_dets": "INT32", "labels": "INT32", **(dtypes or {})}
    chw = [3, contract.input_height, contract.input_width]
    outputs = {n: [dt.get(n, "FLOAT"), [-1, *list(s[1:])]] for n, s in contract.output_shapes(1).items()}
    meta = {
        "trt_version": trt_version,
        "version_compatible": version_compatible,
        "plugins": list(plugins),
        "vc_plugin_libraries": list(vc_plugin_libraries),
        "inputs": {INPUT_NAME: [dt.get(INPUT_NAME, "FLOAT"), [-1, *chw]]},
        "outputs": outputs,
        "profile": {INPUT_NAME: [[min_batch, *chw], [min_batch, *chw], [mb, *chw]]},
    }
    return ENGINE_MAGIC + json.dumps(meta).encode()


def make_tensorrt(gpu: SimGpu, version: str | None = None) -> types.ModuleType:
    """`tensorrt` (10.x API) as far as the backend and the builder use it, on the simulated GPU."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version or gpu.trt_version
    registry = {"builtin": False, "libraries": []}

    def rec(name: str, *args: Any) -> None:
        gpu.log.append((f"trt.{name}", *args))

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

        def __init__(self, severity: int = 2) -> None:
            self.min_severity = severity

        def log(self, severity: int, msg: str) -> None:
            print(f"[TRT] {msg}")

    def error(logger: Any, msg: str) -> None:
        gpu.trt_errors.append(msg)
        logger.log(Logger.ERROR, msg)

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class DataType:
        FLOAT, HALF, INT32, INT8, INT64, BOOL = "FLOAT", "HALF", "INT32", "INT8", "INT64", "BOOL"

    def nptype(dt: str) -> type:
        return _TRT_DTYPES[dt]

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        rec("init_libnvinfer_plugins", namespace)
        registry["builtin"] = gpu.plugins_ok
        return gpu.plugins_ok

    class PluginRegistry:
        def load_library(self, path: str) -> Any:
            rec("load_library", path)
            registry["libraries"].append(str(path))
            return object()

    _registry = PluginRegistry()

    def get_plugin_registry() -> PluginRegistry:
        return _registry

    class _DeviceMemory:
        """Device memory TensorRT allocates itself (weights, activations), freed with its owner."""

        def __init__(self, nbytes: int, device: int, what: str) -> None:
            self.alloc = gpu.allocate(nbytes, "device", device, what=what)

        def __del__(self) -> None:
            with gpu.lock:
                gpu.allocations.pop(self.alloc.base, None)

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self._memory = _DeviceMemory(1 << 16, engine.device, "TensorRT activations")

        def set_input_shape(self, name: str, shape: Any) -> bool:
            rec("set_input_shape", name, tuple(shape))
            shape = tuple(int(d) for d in shape)
            if name not in self.engine.meta["inputs"]:
                error(self.engine.logger, f"set_input_shape: {name!r} is not an input")
                return False
            lo, _, hi = self.engine.meta["profile"][name]
            if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
                error(self.engine.logger, f"set_input_shape({name}, {shape}): outside the profile {lo}..{hi}")
                return False
            self.shapes[name] = shape
            return True

        def _batch(self) -> int | None:
            ins = self.engine.meta["inputs"]
            if set(self.shapes) != set(ins):
                return None
            return self.shapes[next(iter(ins))][0]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self.engine.meta["inputs"]:
                return self.shapes.get(name, tuple(self.engine.meta["inputs"][name][1]))
            b = self._batch()
            shape = list(self.engine.meta["outputs"][name][1])
            return tuple([b if b is not None else -1, *shape[1:]])  # -1 until every input shape is set

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            rec("set_tensor_address", name, int(ptr))
            if name not in self.engine.meta["inputs"] and name not in self.engine.meta["outputs"]:
                error(self.engine.logger, f"set_tensor_address: no tensor {name!r}")
                return False
            self.addresses[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            rec("execute_async_v3", int(stream_handle))
            eng = self.engine
            meta = eng.meta
            with gpu.lock:
                batch = self._batch()
                if batch is None:
                    error(eng.logger, f"execute_async_v3: input shapes not set: {sorted(set(meta['inputs']) - set(self.shapes))}")
                    return False
                missing = [n for n in (*meta["inputs"], *meta["outputs"]) if not self.addresses.get(n)]
                if missing:
                    error(eng.logger, f"execute_async_v3: no address for {missing}")
                    return False
                if gpu._should_fail("execute_async_v3"):
                    error(eng.logger, "execute_async_v3: injected failure")
                    return False
                try:
                    ctx = gpu.runtime_ctx()
                    if ctx.device != eng.device:
                        raise CudaFail(
                            cudaError_t.cudaErrorInvalidResourceHandle, f"engine of device {eng.device}, current device {ctx.device}"
                        )
                    s = gpu.enqueue_stream(stream_handle, ctx, "execute_async_v3")
                except CudaFail as e:
                    error(eng.logger, f"execute_async_v3: CUDA error {e.code.name}: {e.why}")
                    return False
                addresses = dict(self.addresses)  # captured at enqueue, as TensorRT does
                shapes = {n: (batch, *meta["inputs"][n][1][1:]) for n in meta["inputs"]}
                out_shapes = {n: (batch, *v[1][1:]) for n, v in meta["outputs"].items()}

                def run() -> None:
                    inputs = {}
                    for n, shp in shapes.items():
                        dt = np.dtype(nptype(meta["inputs"][n][0]))
                        nbytes = int(np.prod(shp)) * dt.itemsize
                        host = gpu.translate(addresses[n], eng.device, f"engine input {n}")
                        gpu.region(addresses[n], nbytes, device=True, what=f"engine input {n}")
                        inputs[n] = np.frombuffer(ctypes.string_at(host, nbytes), dt).reshape(shp).copy()
                    gpu.engine_inputs.append(inputs)
                    outs = gpu.engine_fn(inputs) if gpu.engine_fn is not None else {}
                    for n, shp in out_shapes.items():
                        dt = np.dtype(nptype(meta["outputs"][n][0]))
                        arr = np.ascontiguousarray(outs[n], dt) if n in outs else np.zeros(shp, dt)
                        if arr.shape != shp:
                            raise GpuModelError(f"engine_fn gave {n} {arr.shape}, the engine writes {shp}")
                        gpu.region(addresses[n], arr.nbytes, device=True, what=f"engine output {n}")
                        ctypes.memmove(gpu.translate(addresses[n], eng.device, f"engine output {n}"), arr.ctypes.data, arr.nbytes)

                gpu.enqueue(s, "engine", run)
            return True

    class ICudaEngine:
        def __init__(self, meta: dict, logger: Any, device: int) -> None:
            self.meta, self.logger, self.device = meta, logger, device
            self.names = [*meta["inputs"], *meta["outputs"]]
            self.num_io_tensors = len(self.names)
            self._memory = _DeviceMemory(1 << 16, device, "TensorRT engine weights")

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            return TensorIOMode.INPUT if name in self.meta["inputs"] else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> str:
            return (self.meta["inputs"].get(name) or self.meta["outputs"][name])[0]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple((self.meta["inputs"].get(name) or self.meta["outputs"][name])[1])

        def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
            return tuple(tuple(d) for d in self.meta["profile"][name])

        def create_execution_context(self) -> IExecutionContext | None:
            rec("create_execution_context")
            try:
                ctx = gpu.runtime_ctx()
                if ctx.device != self.device:
                    raise CudaFail(cudaError_t.cudaErrorInvalidResourceHandle, "another device is current")
                return IExecutionContext(self)
            except CudaFail as e:
                error(self.logger, f"create_execution_context: {e}")
                return None

    class Runtime:
        def __init__(self, logger: Any) -> None:
            rec("Runtime")
            self.logger = logger
            self._host_code = False

        @property
        def engine_host_code_allowed(self) -> bool:
            return self._host_code

        @engine_host_code_allowed.setter
        def engine_host_code_allowed(self, value: bool) -> None:
            rec("Runtime.engine_host_code_allowed", bool(value))
            self._host_code = bool(value)

        def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
            rec("deserialize_cuda_engine", len(data))
            with gpu.lock:
                if gpu._should_fail("deserialize_cuda_engine"):
                    error(self.logger, "deserialize_cuda_engine: injected failure (e.g. out of memory)")
                    return None
                if not bytes(data).startswith(ENGINE_MAGIC):
                    error(self.logger, "Serialization assertion magicTagRead == kMAGIC_TAG failed")
                    return None
                meta = json.loads(bytes(data)[len(ENGINE_MAGIC) :])
                built, vc = meta["trt_version"], meta["version_compatible"]
                if not engine_version_loads(built, trt.__version__, vc):
                    error(
                        self.logger,
                        f"The engine plan file is not compatible with this version of TensorRT, expecting {trt.__version__} got {built}",
                    )
                    return None
                if vc and not self._host_code:
                    error(self.logger, "a version-compatible engine needs IRuntime::setEngineHostCodeAllowed(true)")
                    return None
                for plugin in meta["plugins"]:
                    if vc:
                        libs = set(meta["vc_plugin_libraries"]) | set(registry["libraries"])
                        ok = bool(libs)
                    else:
                        ok = registry["builtin"]
                    if not ok:
                        error(self.logger, f"getPluginCreator could not find plugin {plugin} version 1")
                        return None
                try:
                    device = gpu.runtime_ctx().device
                    return ICudaEngine(meta, self.logger, device)
                except CudaFail as e:
                    error(self.logger, f"deserialize_cuda_engine: CUDA error {e.code.name}: {e.why}")
                    return None

    # ---- builder side
    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            rec("IInt8EntropyCalibrator2")

    class _Flags:
        def __init__(self, names: tuple[str, ...]) -> None:
            for i, n in enumerate(names):
                setattr(self, n, i)

    # The API of the version: TensorRT 11 removed the weak-typing flags and the INT8 calibrator (deprecated since
    # 10.12); strongly typed networks exist since 9 (8.x has EXPLICIT_BATCH instead).
    major = int(trt.__version__.split(".")[0])
    weak = ("FP16", "INT8") if major < 11 else ()
    BuilderFlag = _Flags((*weak, "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "TF32"))
    NetworkDefinitionCreationFlag = _Flags(("STRONGLY_TYPED",) if major >= 9 else ("EXPLICIT_BATCH",))
    OnnxParserFlag = _Flags(("NATIVE_INSTANCENORM",))

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    def Dims(values: list) -> tuple:  # noqa: N802 - TensorRT's name
        return tuple(int(v) for v in values)

    class ITensor:
        def __init__(self, name: str, shape: tuple, is_input: bool, dtype: str = "FLOAT") -> None:
            self.name, self.shape, self.is_network_input, self.dtype = name, shape, is_input, dtype

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[ITensor] = []
            self.outputs: list[ITensor] = []
            self.plugins: list[str] = []
            self.contract: Any = None

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, i: int) -> ITensor:
            return self.inputs[i]

        def get_output(self, i: int) -> ITensor:
            return self.outputs[i]

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            rec("OnnxParser")
            self.network = network
            self.errors: list[str] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

        def parse_from_file(self, path: str) -> bool:
            rec("parse_from_file", path)
            import onnx

            from df2infer import artifact

            model = onnx.load(path, load_external_data=False)
            net = self.network
            for vi in model.graph.input:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)
                net.inputs.append(ITensor(vi.name, dims, True))
            net.contract = artifact.read_onnx_contract(model, path)
            for name, shape in net.contract.output_shapes(-1).items():
                net.outputs.append(ITensor(name, tuple(shape), False))
            net.plugins = sorted({PLUGIN_OPS[n.op_type] for n in model.graph.node if n.op_type in PLUGIN_OPS})
            return True

        def get_used_vc_plugin_libraries(self) -> list[str]:
            return [vc_plugin_library(trt.__version__)] if self.network.plugins else []

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            rec("profile.set_shape", name, lo, opt, hi)
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class ITimingCache:
        def serialize(self) -> bytes:
            return b"timing"

    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags: set[int] = set()
            self.profiles: list[IOptimizationProfile] = []
            self.plugins_to_serialize: list[str] = []
            self.int8_calibrator: Any = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            rec("config.set_memory_pool_limit", pool, size)

        def set_flag(self, flag: int) -> None:
            rec("config.set_flag", flag)
            self.flags.add(flag)

        def get_flag(self, flag: int) -> bool:
            return flag in self.flags

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> ITimingCache:
            return ITimingCache()

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> ITimingCache:
            return ITimingCache()

    class Builder:
        def __init__(self, logger: Any) -> None:
            rec("Builder")
            self.logger = logger

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_network(self, flags: int) -> INetworkDefinition:
            rec("create_network", flags)
            return INetworkDefinition(flags)

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
            rec("build_serialized_network")
            if gpu._should_fail("build_serialized_network"):
                error(self.logger, "build_serialized_network: injected failure")
                return None
            (profile,) = config.profiles
            lo, _, hi = profile.shapes[network.inputs[0].name]
            vc = BuilderFlag.VERSION_COMPATIBLE in config.flags
            return engine_blob(
                network.contract,
                trt_version=trt.__version__,
                version_compatible=vc,
                plugins=tuple(network.plugins),
                vc_plugin_libraries=tuple(config.plugins_to_serialize) if vc else (),
                max_batch=hi[0],
                min_batch=lo[0],
            )

    for name, value in dict(locals()).items():
        if name not in ("gpu", "version", "trt", "rec", "registry", "error", "_registry", "major"):
            setattr(trt, name, value)
    if major >= 11:
        del trt.IInt8EntropyCalibrator2
    return trt


# ------------------------------------------------------------------------------------------------ installing
def modules(gpu: SimGpu) -> dict[str, types.ModuleType]:
    try:  # the real NVRTC stays (it needs no GPU); its module imports the real driver bindings first
        import cuda.bindings.nvrtc  # noqa: F401
    except ImportError:
        pass
    gpu.trt = make_tensorrt(gpu)
    return {"cuda.bindings.driver": make_driver(gpu), "cuda.bindings.runtime": make_runtime(gpu), "tensorrt": gpu.trt}


def install(monkeypatch: Any, gpu: SimGpu) -> SimGpu:
    """Put the stand-ins in place of cuda.bindings.driver/.runtime and tensorrt for one test."""
    import sys

    import cuda.bindings

    for name, mod in modules(gpu).items():
        monkeypatch.setitem(sys.modules, name, mod)
        if name.startswith("cuda.bindings."):
            monkeypatch.setattr(cuda.bindings, name.rsplit(".", 1)[1], mod, raising=False)
    return gpu


def install_globally(gpu: SimGpu) -> SimGpu:
    """The same for a whole process (the subprocess hook); never undone."""
    import sys

    import cuda.bindings

    for name, mod in modules(gpu).items():
        sys.modules[name] = mod
        if name.startswith("cuda.bindings."):
            setattr(cuda.bindings, name.rsplit(".", 1)[1], mod)
    return gpu


CONFIG_ENV = "DF2INFER_TEST_STRICT_GPU_CONFIG"


def subprocess_env(config: dict, base: dict | None = None) -> dict[str, str]:
    """Environment for a subprocess on the stand-ins. config: SimGpu options (`devices` as lists of Device fields),
    `trt_version`, `engine_outputs` (an .npz of outputs by name, sliced to each run's batch) and `report` (a JSON
    file written at exit: seed, what is still allocated, failed calls, TensorRT errors, launches, engine runs)."""
    env = dict(os.environ if base is None else base)
    env[SWITCH_ENV] = "1"
    env[CONFIG_ENV] = json.dumps(config)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOK_DIR), env.get("PYTHONPATH", "")) if p)
    return env


def install_from_environment() -> SimGpu:
    """The subprocess side of subprocess_env (called by strict_gpu_hook/sitecustomize.py)."""
    import atexit
    import sys

    config = json.loads(os.environ.get(CONFIG_ENV) or "{}")
    options = {k: config[k] for k in ("driver_version", "runtime_version", "seed", "eager") if k in config}
    if "devices" in config:
        options["devices"] = [Device(**{**d, "cc": tuple(d.get("cc", (8, 7)))}) for d in config["devices"]]
    if config.get("shim_dir"):
        options["shim_dir"] = Path(config["shim_dir"])
    gpu = SimGpu(**options)
    if config.get("trt_version"):
        gpu.trt_version = config["trt_version"]
    if config.get("engine_outputs"):
        with np.load(config["engine_outputs"]) as data:
            outputs = {k: data[k] for k in data.files}
        gpu.engine_fn = lambda inputs: {k: v[: len(next(iter(inputs.values())))] for k, v in outputs.items()}
    install_globally(gpu)
    print(gpu.describe(), file=sys.stderr)

    def report() -> None:
        import gc

        gc.collect()
        data = {
            "seed": gpu.seed,
            "live": gpu.live(),
            "errors": gpu.errors,
            "trt_errors": gpu.trt_errors,
            "launches": gpu.launches,
            "engine_runs": len(gpu.engine_inputs),
        }
        if config.get("report"):
            Path(config["report"]).write_text(json.dumps(data))

    atexit.register(report)
    return gpu
