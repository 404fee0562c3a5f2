"""TensorRT backend: runs a serialized engine (`.engine` / `.plan`) built by export/tensorrt_builder.py.

An engine only runs on the GPU architecture and the TensorRT version it was built with, so every engine
travels with a sidecar `<engine>.json` (df2infer.artifact.engine_sidecar_path) holding the contract, the TensorRT version,
the GPU name and compute capability, the precision, the build time and the ONNX file's sha256. Loading
checks it first and refuses, naming the file and both values, an engine built for another compute
capability or another TensorRT major.minor, instead of failing deep inside deserialization.

Execution follows the TensorRT 10+ name-based API (num_io_tensors / get_tensor_name / get_tensor_mode,
set_input_shape, set_tensor_address, execute_async_v3), which TensorRT 8.5 (JetPack 5) already has and 11.x
keeps. Memory goes through cuda-python: pinned host buffers (cudaMallocHost) and device buffers, allocated
once for max_batch and reused; one CUDA stream; optional CUDA graph per batch size.

Nothing here imports tensorrt or cuda-python at module import: the CPU path never needs them.
"""
from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from df2infer.artifact import ModelLoadError, check_engine_compatibility, read_engine_contract, read_engine_sidecar
from df2infer.backends.base import DeviceError, parse_device
from df2infer.contract import INPUT_NAME, OUTPUT_NAMES, Contract, ContractError
from df2infer.gpu.cuda_array import parse_cuda_array_interface
from df2infer.gpu.cuda_check import CudaError, cuda_call, device_properties, import_cudart

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

TENSORRT_INSTALL_HINT = (
    "install TensorRT's Python package: on x86-64 with CUDA `pip install tensorrt` (NVIDIA's wheels, they need "
    "an NVIDIA driver); on a Jetson use JetPack's `sudo apt install python3-libnvinfer` (TensorRT cannot be "
    "pip-installed there). ONNX files run without it on the onnxruntime backend."
)


class TensorRTUnavailable(ImportError):
    """TensorRT's Python package is missing (or only its type stubs are installed)."""


def require_tensorrt() -> str:
    """Check that the real TensorRT bindings are importable; return their version. Raises TensorRTUnavailable.

    `tensorrt-stubs` installs a `tensorrt` directory holding only .pyi files, which imports as an empty namespace
    package: the check looks for the classes, not only for the import to succeed.
    """
    try:
        import tensorrt as trt_mod
    except ImportError as e:
        raise TensorRTUnavailable(f"TensorRT is not installed ({e}): {TENSORRT_INSTALL_HINT}") from None
    if not (hasattr(trt_mod, "Builder") and hasattr(trt_mod, "Runtime")):
        where = getattr(trt_mod, "__file__", None) or list(getattr(trt_mod, "__path__", []))
        raise TensorRTUnavailable(
            f"TensorRT is not installed: the `tensorrt` module at {where} has no Builder/Runtime (only type "
            f"stubs?): {TENSORRT_INSTALL_HINT}")
    return str(getattr(trt_mod, "__version__", "unknown"))


def _environment(device_index: int) -> tuple[str, str, str]:
    """(installed TensorRT version, GPU name, compute capability) for the device. The one place that probes
    the machine, so tests can replace it."""
    version = require_tensorrt()
    cudart = import_cudart()
    try:
        name, cc = device_properties(cudart, device_index)
    except CudaError as e:
        raise DeviceError(f"cuda:{device_index}: no usable CUDA device ({e})") from None
    return version, name, cc


@dataclass
class _Buffer:
    """One I/O tensor: pinned host + device memory sized for max_batch."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # at max_batch; dimension 0 is the batch
    host_ptr: int
    device_ptr: int
    host: np.ndarray  # view of the pinned memory, shape `shape`

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


def tensorrt_dims(d: trt.Dims) -> tuple[int, ...]:
    """A TensorRT Dims as a tuple of ints (Dims supports len() and indexing, not the iterator protocol)."""
    return tuple(int(d[i]) for i in range(len(d)))


def _pinned_view(ptr: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = (ctypes.c_uint8 * nbytes).from_address(ptr)
    return np.frombuffer(memoryview(raw), dtype=dtype).reshape(shape)


class TensorRTBackend:
    """Runs a TensorRT engine on one GPU; see the module doc. Use as a context manager or call close().

    run(batch)                  float32 [B, 3, H, W] host array -> {output name: host array [B, ...]}
    run_device(buf, batch)      the same from a device buffer (CuPy / torch / pycuda, or a raw pointer), no copy
    use_cuda_graph              capture one CUDA graph per batch size on first use and replay it (run() only)
    copy_outputs                False returns views of the pinned output buffers, valid until the next call
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda:0", *, use_cuda_graph: bool = False,
                 copy_outputs: bool = True) -> None:
        self._closed = True  # close() is safe even if __init__ fails half way
        self._buffers: dict[str, _Buffer] = {}
        self._graphs: dict[int, Any] = {}  # batch size -> cudaGraphExec_t, or None where capture failed
        self._stream: Any = None
        self._event: Any = None
        self._context: trt.IExecutionContext | None = None
        self._engine: trt.ICudaEngine | None = None
        self._runtime: trt.Runtime | None = None
        self._cudart: Any = None
        self._batch = 0  # batch size the context's input shape is set to

        self.path = Path(path)
        kind, index = parse_device(device)
        if kind != "cuda":
            raise DeviceError(f"{self.path}: TensorRT engines run on a CUDA device, not {device!r}")
        self.device = f"cuda:{index}"
        self.use_cuda_graph = use_cuda_graph
        self.copy_outputs = copy_outputs
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: no such engine file")

        self.meta = read_engine_sidecar(self.path)
        self.contract: Contract = read_engine_contract(self.path, self.meta)
        self.precision = str(self.meta.get("precision", self.contract.precision))

        trt_version, gpu_name, cc = _environment(index)
        check_engine_compatibility(self.meta, engine_path=self.path, tensorrt_version=trt_version,
                                   compute_capability=cc, gpu_name=gpu_name)
        self.gpu_name = gpu_name
        try:
            self._load(index)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- setup
    def _load(self, index: int) -> None:
        import tensorrt as trt  # checked by _environment -> require_tensorrt

        cudart = self._cudart = import_cudart()
        cuda_call(cudart, cudart.cudaSetDevice(index), f"cudaSetDevice({index})")
        self._closed = False

        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ModelLoadError(f"{self.path}: TensorRT could not deserialize the engine (see its log above)")
        self._engine = engine
        context = engine.create_execution_context()
        if context is None:
            raise ModelLoadError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._context = context

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [INPUT_NAME]:
            raise ContractError(f"{self.path}: engine inputs {inputs}, the contract has exactly [{INPUT_NAME!r}]")
        if set(outputs) != set(OUTPUT_NAMES):
            missing, extra = sorted(set(OUTPUT_NAMES) - set(outputs)), sorted(set(outputs) - set(OUTPUT_NAMES))
            raise ContractError(f"{self.path}: engine outputs differ from the contract: missing {missing}, extra {extra}")

        c = self.contract
        want = (3, c.input_height, c.input_width)
        _, _, max_shape = engine.get_tensor_profile_shape(INPUT_NAME, 0)
        if tensorrt_dims(max_shape)[1:] != want:
            raise ContractError(f"{self.path}: engine input {INPUT_NAME} is {tensorrt_dims(max_shape)}, contract says [B, *{want}]")
        self.max_batch = int(max_shape[0])
        if self.max_batch != c.max_batch:
            log.warning("%s: engine profile max batch %d, contract max_batch %d; using the engine's",
                        self.path, self.max_batch, c.max_batch)

        self._stream = cuda_call(cudart, cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking),
                                 "cudaStreamCreateWithFlags(cudaStreamNonBlocking)")
        self._event = cuda_call(cudart, cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming),
                                "cudaEventCreateWithFlags(cudaEventDisableTiming)")

        self._set_input_shape(self.max_batch)
        expected = c.output_shapes(self.max_batch)
        for name in [INPUT_NAME, *OUTPUT_NAMES]:
            shape = tensorrt_dims(context.get_tensor_shape(name))
            if name != INPUT_NAME and shape != tuple(expected[name]):
                raise ContractError(f"{self.path}: engine output {name} is {shape} at batch {self.max_batch}, "
                                    f"contract says {tuple(expected[name])}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._buffers[name] = self._allocate(name, shape, dtype)
            if not context.set_tensor_address(name, self._buffers[name].device_ptr):
                raise RuntimeError(f"{self.path}: set_tensor_address({name!r}) failed")

    def _allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> _Buffer:
        cudart = self._cudart
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        host_ptr = int(cuda_call(cudart, cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes}) for {name}"))
        try:
            device_ptr = int(cuda_call(cudart, cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes}) for {name}"))
        except CudaError:
            cudart.cudaFreeHost(host_ptr)
            raise
        return _Buffer(name, dtype, shape, host_ptr, device_ptr, _pinned_view(host_ptr, shape, dtype))

    # ---------------------------------------------------------------- execution
    @property
    def input_dtype(self) -> np.dtype:
        return self._buffers[INPUT_NAME].dtype

    def _check_open(self) -> None:
        if self._closed or self._context is None:
            raise RuntimeError(f"{self.path}: TensorRTBackend is closed")

    def _check_batch(self, batch: int) -> None:
        if not 1 <= batch <= self.max_batch:
            raise ValueError(f"{self.path}: batch {batch}, this engine takes 1..{self.max_batch} "
                             "(its optimization profile); split larger batches")

    def _set_input_shape(self, batch: int) -> None:
        assert self._context is not None
        c = self.contract
        shape = (batch, 3, c.input_height, c.input_width)
        if not self._context.set_input_shape(INPUT_NAME, shape):
            raise RuntimeError(f"{self.path}: set_input_shape({INPUT_NAME!r}, {shape}) failed")
        self._batch = batch

    def _execute(self) -> None:
        assert self._context is not None
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"{self.path}: execute_async_v3 failed (see TensorRT's log above)")

    def _execute_with_graph(self, batch: int) -> None:
        """Replay the batch size's CUDA graph; on its first use run normally, then capture it."""
        cudart = self._cudart
        graph_exec = self._graphs.get(batch, ...)
        if graph_exec is None:  # capture failed before for this batch size
            self._execute()
            return
        if graph_exec is not ...:
            cuda_call(cudart, cudart.cudaGraphLaunch(graph_exec, self._stream), f"cudaGraphLaunch(batch={batch})")
            return
        # First use: a normal enqueue after the shape change flushes TensorRT's deferred shape-dependent updates
        # (it must not happen inside the capture) and produces this call's outputs; then capture for later calls.
        self._execute()
        cuda_call(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(cudart, cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        problem: Exception | None = None
        try:
            self._execute()
        except RuntimeError as e:  # execute_async_v3 refused to run under capture
            problem = e
        graph = None
        try:
            graph = cuda_call(cudart, cudart.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
            if problem is None:
                self._graphs[batch] = cuda_call(cudart, cudart.cudaGraphInstantiate(graph, 0),
                                                f"cudaGraphInstantiate(batch={batch})")
        except CudaError as e:
            problem = e
        finally:
            if graph is not None:
                cudart.cudaGraphDestroy(graph)
        if problem is not None:
            log.warning("%s: CUDA graph capture failed for batch %d (%s); this batch size runs without a graph",
                        self.path, batch, problem)
            self._graphs[batch] = None

    def _copy_outputs_and_sync(self, batch: int) -> dict[str, np.ndarray]:
        cudart = self._cudart
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in OUTPUT_NAMES:
            buf = self._buffers[name]
            n = batch * buf.item_bytes
            cuda_call(cudart, cudart.cudaMemcpyAsync(buf.host_ptr, buf.device_ptr, n, d2h, self._stream),
                      f"cudaMemcpyAsync(device->host, {name}, {n} bytes)")
        cuda_call(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        out = {name: self._buffers[name].host[:batch] for name in OUTPUT_NAMES}
        return {k: v.copy() for k, v in out.items()} if self.copy_outputs else out

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        """float32 [B, 3, H, W] (other real dtypes are cast) -> {output name: host array [B, ...]}.
        min_head_score is ignored: engines are built from static-head graphs only (tensorrt_builder.check_buildable)."""
        self._check_open()
        batch = np.asarray(batch)
        c = self.contract
        want = (3, c.input_height, c.input_width)
        if batch.ndim != 4 or batch.shape[1:] != want:
            raise ValueError(f"{self.path}: input batch shape {batch.shape}, expected [B, {want[0]}, {want[1]}, {want[2]}]")
        b = int(batch.shape[0])
        self._check_batch(b)
        inp = self._buffers[INPUT_NAME]
        np.copyto(inp.host[:b], batch, casting="same_kind")
        cudart = self._cudart
        n = b * inp.item_bytes
        cuda_call(cudart, cudart.cudaMemcpyAsync(inp.device_ptr, inp.host_ptr, n,
                                                 cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
                  f"cudaMemcpyAsync(host->device, {INPUT_NAME}, {n} bytes)")
        if b != self._batch:
            self._set_input_shape(b)
        if self.use_cuda_graph:
            self._execute_with_graph(b)
        else:
            self._execute()
        return self._copy_outputs_and_sync(b)

    def run_device(self, ptr_or_array: Any, batch: int) -> dict[str, np.ndarray]:
        """Run on an input already on this GPU: an object exposing `__cuda_array_interface__` (CuPy, torch CUDA
        tensor, pycuda GPUArray) of shape [batch, 3, H, W] and the engine's input dtype, C-contiguous; or a raw
        device pointer (int), trusted to hold that much. No copy of the input is made. If the interface names
        the producer's stream, this backend's stream waits for it; with a raw pointer the caller must have
        finished writing the buffer. CUDA graphs are not used here (they bind the backend's own input buffer).
        """
        self._check_open()
        batch = int(batch)
        self._check_batch(batch)
        c = self.contract
        shape = (batch, 3, c.input_height, c.input_width)
        cudart = self._cudart
        if isinstance(ptr_or_array, (int, np.integer)) and not isinstance(ptr_or_array, bool):
            ptr, producer_stream = int(ptr_or_array), None
            if ptr == 0:
                raise ValueError(f"{self.path}: null device pointer")
        else:
            view = parse_cuda_array_interface(ptr_or_array, shape=shape, dtype=self.input_dtype, what=INPUT_NAME)
            ptr, producer_stream = view.ptr, view.stream
        if producer_stream is not None:
            cuda_call(cudart, cudart.cudaEventRecord(self._event, producer_stream),
                      f"cudaEventRecord(producer stream {producer_stream})")
            cuda_call(cudart, cudart.cudaStreamWaitEvent(self._stream, self._event, 0), "cudaStreamWaitEvent")
        assert self._context is not None
        if batch != self._batch:
            self._set_input_shape(batch)
        if not self._context.set_tensor_address(INPUT_NAME, ptr):
            raise RuntimeError(f"{self.path}: set_tensor_address({INPUT_NAME!r}, {ptr:#x}) failed")
        try:
            self._execute()
        finally:
            self._context.set_tensor_address(INPUT_NAME, self._buffers[INPUT_NAME].device_ptr)
        return self._copy_outputs_and_sync(batch)

    # ---------------------------------------------------------------- teardown
    def close(self) -> None:
        """Free graphs, buffers, the event and the stream, then the TensorRT objects. Idempotent."""
        if self._closed:
            return
        self._closed = True
        cudart = self._cudart
        if self._stream is not None:
            cudart.cudaStreamSynchronize(self._stream)
        for graph_exec in self._graphs.values():
            if graph_exec is not None:
                cudart.cudaGraphExecDestroy(graph_exec)
        self._graphs.clear()
        for buf in self._buffers.values():
            cudart.cudaFree(buf.device_ptr)
            cudart.cudaFreeHost(buf.host_ptr)
        self._buffers.clear()
        if self._event is not None:
            cudart.cudaEventDestroy(self._event)
            self._event = None
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        # Context before engine before runtime, as TensorRT requires.
        self._context = None
        self._engine = None
        self._runtime = None

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer (interpreter shutdown, dead context)
            pass

    def __repr__(self) -> str:
        return (f"TensorRTBackend({str(self.path)!r}, device={self.device!r}, precision={self.precision!r}, "
                f"max_batch={getattr(self, 'max_batch', '?')}, use_cuda_graph={self.use_cuda_graph})")
