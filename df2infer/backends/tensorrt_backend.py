"""TensorRT backend: runs a serialized engine (`.engine` / `.plan`) built by export/tensorrt_builder.py.

An engine only runs on the GPU architecture and the TensorRT version it was built with, so every engine
travels with a sidecar `<engine>.json` (df2infer.artifact.engine_sidecar_path) holding the contract, the TensorRT version,
whether it was built VERSION_COMPATIBLE, the GPU name and compute capability, the precision, the build time
and the ONNX file's sha256. Loading checks it first (df2infer.artifact.check_engine_compatibility) and
refuses, naming the file and both values, an engine built for another compute capability or another
TensorRT version, instead of failing deep inside deserialization. The version rule is TensorRT's: an
engine built without BuilderFlag.VERSION_COMPATIBLE loads only on the exact TensorRT version that built it (10.3.0.26 and
10.3.0.30 differ); one built with it loads on the same major version, same or newer.

TensorRT's plugins (the ONNX parser imports RoiAlign as the ROIAlign_TRT plugin) are registered with
`trt.init_libnvinfer_plugins(logger, "")` before deserializing: without it an engine built in another process
fails to load (the builder registers them, which hides the problem when both run in one process).

Execution follows the TensorRT 10+ name-based API (num_io_tensors / get_tensor_name / get_tensor_mode,
set_input_shape, set_tensor_address, execute_async_v3), which TensorRT 8.5 (JetPack 5) already has and 11.x
keeps. Memory goes through cuda-python: pinned host buffers (cudaMallocHost) and device buffers, allocated
once for max_batch and reused; one non-blocking CUDA stream.

No CUDA graphs: the deploy graph has data-dependent shapes (NonMaxSuppression becomes an INMSLayer whose
selected-box count is known only on the device) and CumSum (a loop where the parser has no cumulative
layer); TensorRT documents engines with data-dependent shapes and loops as not capturable, so capture
would fail on every call. `use_cuda_graph=True` is refused with that reason (docs/tensorrt.md).

Device inputs (`run_device`) are read on this backend's stream after the producer's work: see
`df2infer.gpu.cuda_array.stream_to_wait_on` for the `__cuda_array_interface__` stream rule. Device
outputs (`run_device_outputs`) stay on the GPU for GPU postprocessing, exported as `DeviceArray`s that name
this backend's stream.

GPU pre- and postprocessing (the CUDA kernels of df2infer.ops.cuda, docs/cuda_kernels.md): at load the backend
creates a CudaDriver on its own stream, a GpuPreprocessor writing into the engine's input buffer and, when the
mask and heatmap outputs are float32, a GpuPostprocessor. `run_frames` uploads the frames once, letterboxes them
on the GPU straight into the engine input, runs the engine (through run_device_outputs) and copies back only
num_dets, boxes, scores, labels and embeddings; `postprocess_device` pastes the masks and decodes the landmarks
of the detections the host kept, where the engine wrote them, and copies back only the compact masks and the
landmarks. All of it is one stream. On an integrated GPU (Jetson) the frames are staged in mapped pinned memory
the kernel reads in place (CudaDriver.host_buffer / mapped_pointer), so no upload happens at all. If the
kernels' driver cannot be created (no cuda.bindings.driver, no NVRTC) the backend logs why and the Predictor
uses the CPU letterbox and decode (frames_on_device is False). This is the DevicePipelineBackend protocol.

Nothing here imports tensorrt or cuda-python at module import: the CPU path never needs them.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from df2infer.artifact import (
    ModelLoadError,
    check_engine_compatibility,
    engine_is_version_compatible,
    read_engine_contract,
    read_engine_sidecar,
)
from df2infer.backends.base import DeviceError, parse_device
from df2infer.contract import INPUT_NAME, OUTPUT_NAMES, Contract, ContractError
from df2infer.gpu.cuda_array import DeviceArray, parse_cuda_array_interface, stream_to_wait_on
from df2infer.gpu.cuda_check import CudaError, cuda_call, device_properties, import_cudart
from df2infer.ops.options import DEFAULT_OPTIONS, DecodeOptions

if TYPE_CHECKING:
    import tensorrt as trt

    from df2infer.ops.cuda.launch import Driver
    from df2infer.ops.cuda.pipeline import GpuPostprocessor, GpuPreprocessor, PostResult
    from df2infer.ops.decode import KeptDetections
    from df2infer.ops.letterbox import LetterboxInfo

log = logging.getLogger(__name__)

CUDA_GRAPHS_UNSUPPORTED = (
    "CUDA graphs are not used with df2infer engines: the deploy graph has data-dependent shapes "
    "(NonMaxSuppression -> INMSLayer) and CumSum (a loop where the ONNX parser has no cumulative layer), which "
    "TensorRT cannot capture into a CUDA graph; run without use_cuda_graph (see docs/tensorrt.md)"
)
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
            f"stubs?): {TENSORRT_INSTALL_HINT}"
        )
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


# What run_frames copies back when masks and landmarks are computed on the GPU.
COMPACT_OUTPUTS = ("num_dets", "boxes", "scores", "labels", "embeddings")


def kernel_driver(device_index: int, stream: int) -> Driver:
    """The CUDA kernels' driver on the backend's stream (the one place it is made, so tests can replace it)."""
    from df2infer.ops.cuda.launch import CudaDriver

    return CudaDriver(device_index, stream=stream)


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
    run_device_outputs(x)       host array or device buffer in, {output name: DeviceArray} out: the outputs stay
                                on the GPU (for GPU postprocessing), valid until the next call
    run_frames(images)          BGR frames in, letterboxed on the GPU; compact host outputs + letterbox infos out
    postprocess_device(kept)    masks and landmarks of the kept detections of the last run_frames, on the GPU
    copy_outputs                False returns views of the pinned output buffers, valid until the next call
    use_cuda_graph              refused (ValueError): see the module doc
    gpu_ops                     False: no CUDA kernels (frames_on_device False; the Predictor preprocesses on the CPU)
    """

    name = "tensorrt"

    def __init__(
        self, path: str | Path, device: str = "cuda:0", *, use_cuda_graph: bool = False, copy_outputs: bool = True, gpu_ops: bool = True
    ) -> None:
        self._closed = True  # close() is safe even if __init__ fails half way
        self._kdrv: Any = None  # the CUDA kernels' driver (df2infer.ops.cuda), on self._stream
        self.gpu_pre: GpuPreprocessor | None = None
        self.gpu_post: GpuPostprocessor | None = None
        self._device_out: dict[str, DeviceArray] | None = None  # outputs of the last run_frames
        self._buffers: dict[str, _Buffer] = {}
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
        if use_cuda_graph:
            raise ValueError(f"{self.path}: {CUDA_GRAPHS_UNSUPPORTED}")
        self.use_cuda_graph = False
        self.copy_outputs = copy_outputs
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: no such engine file")

        self.meta = read_engine_sidecar(self.path)
        self.contract: Contract = read_engine_contract(self.path, self.meta)
        self.precision = str(self.meta.get("precision", self.contract.precision))

        trt_version, gpu_name, cc = _environment(index)
        check_engine_compatibility(self.meta, engine_path=self.path, tensorrt_version=trt_version, compute_capability=cc, gpu_name=gpu_name)
        self.gpu_name = gpu_name
        try:
            self._load(index)
            if gpu_ops:
                self._load_gpu_ops(index)
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
        # The ONNX parser imports RoiAlign as the ROIAlign_TRT plugin: register TensorRT's plugins before
        # deserializing, or an engine built in another process does not load (NVIDIA's samples do the same).
        if not trt.init_libnvinfer_plugins(logger, ""):
            log.warning("%s: trt.init_libnvinfer_plugins failed; an engine using TensorRT plugins will not load", self.path)
        self._runtime = trt.Runtime(logger)
        if engine_is_version_compatible(self.meta):
            # A VERSION_COMPATIBLE plan carries the lean runtime (host code) that TensorRT must be allowed to load.
            self._runtime.engine_host_code_allowed = True
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
            log.warning(
                "%s: engine profile max batch %d, contract max_batch %d; using the engine's", self.path, self.max_batch, c.max_batch
            )

        self._stream = cuda_call(
            cudart, cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags(cudaStreamNonBlocking)"
        )
        self._event = cuda_call(
            cudart, cudart.cudaEventCreateWithFlags(cudart.cudaEventDisableTiming), "cudaEventCreateWithFlags(cudaEventDisableTiming)"
        )

        self._set_input_shape(self.max_batch)
        expected = c.output_shapes(self.max_batch)
        for name in [INPUT_NAME, *OUTPUT_NAMES]:
            shape = tensorrt_dims(context.get_tensor_shape(name))
            if name != INPUT_NAME and shape != tuple(expected[name]):
                raise ContractError(
                    f"{self.path}: engine output {name} is {shape} at batch {self.max_batch}, contract says {tuple(expected[name])}"
                )
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._buffers[name] = self._allocate(name, shape, dtype)
            if not context.set_tensor_address(name, self._buffers[name].device_ptr):
                raise RuntimeError(f"{self.path}: set_tensor_address({name!r}) failed")

    def _load_gpu_ops(self, index: int) -> None:
        """The CUDA kernels on this backend's stream; a missing driver or NVRTC is logged, not fatal."""
        from df2infer.ops.cuda.pipeline import GpuPostprocessor, GpuPreprocessor

        c = self.contract
        try:
            self._kdrv = kernel_driver(index, int(self._stream))
            load = getattr(self._kdrv, "load_kernels", None)
            if load is not None:
                load()  # NVRTC compile (disk-cached) now: a missing NVRTC falls back here, not at the first batch
        except (ImportError, OSError, RuntimeError) as e:  # CudaError, KernelCompileError, a missing driver library
            log.warning(
                "%s: GPU preprocessing and postprocessing unavailable (%s: %s); letterbox and decode run on the CPU",
                self.path,
                type(e).__name__,
                e,
            )
            if self._kdrv is not None:
                self._kdrv.close()
                self._kdrv = None
            return
        if self.input_dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            log.warning(
                "%s: engine input dtype %s; the GPU letterbox writes float32/float16 only, so it runs on the CPU",
                self.path,
                self.input_dtype,
            )
            return
        self.gpu_pre = GpuPreprocessor(self._kdrv, (c.input_height, c.input_width), c.pad_value, out_dtype=self.input_dtype)
        float_outputs = all(self._buffers[n].dtype == np.float32 for n in ("masks", "landmark_heatmaps"))
        if c.mask_paste != "grid_sample" or c.heads != ["masks", "landmarks", "embeddings"]:
            # the kernels paste the grid_sample way and expect every head: an imported model decodes on the CPU
            log.info(
                "%s: %s model (mask_paste %s, heads %s): masks and landmarks are decoded on the CPU",
                self.path,
                c.family,
                c.mask_paste,
                c.heads,
            )
        elif float_outputs:
            self.gpu_post = GpuPostprocessor(
                self._kdrv, detections=c.max_detections, mask_size=c.mask_size, heatmap_size=c.heatmap_size, channels=c.max_landmarks
            )
        else:
            log.info("%s: mask/heatmap outputs are not float32; masks and landmarks are decoded on the CPU", self.path)

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
            raise ValueError(
                f"{self.path}: batch {batch}, this engine takes 1..{self.max_batch} (its optimization profile); split larger batches"
            )

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

    def _copy_outputs_and_sync(self, batch: int, names: Sequence[str] = OUTPUT_NAMES) -> dict[str, np.ndarray]:
        cudart = self._cudart
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in names:
            buf = self._buffers[name]
            n = batch * buf.item_bytes
            cuda_call(
                cudart,
                cudart.cudaMemcpyAsync(buf.host_ptr, buf.device_ptr, n, d2h, self._stream),
                f"cudaMemcpyAsync(device->host, {name}, {n} bytes)",
            )
        cuda_call(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        out = {name: self._buffers[name].host[:batch] for name in names}
        return {k: v.copy() for k, v in out.items()} if self.copy_outputs else out

    def _device_outputs(self, batch: int) -> dict[str, DeviceArray]:
        stream = int(self._stream)
        return {
            name: DeviceArray(ptr=buf.device_ptr, shape=(batch, *buf.shape[1:]), dtype=buf.dtype, stream=stream)
            for name, buf in ((n, self._buffers[n]) for n in OUTPUT_NAMES)
        }

    def _upload_host_batch(self, batch: np.ndarray) -> int:
        """Copy a host batch into the pinned input buffer and enqueue it to the device; return its size."""
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
        cuda_call(
            cudart,
            cudart.cudaMemcpyAsync(inp.device_ptr, inp.host_ptr, n, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
            f"cudaMemcpyAsync(host->device, {INPUT_NAME}, {n} bytes)",
        )
        if b != self._batch:
            self._set_input_shape(b)
        return b

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        """float32 [B, 3, H, W] (other real dtypes are cast) -> {output name: host array [B, ...]}.
        min_head_score is ignored: engines are built from static-head graphs only (tensorrt_builder.check_buildable)."""
        self._check_open()
        self._device_out = None
        b = self._upload_host_batch(batch)
        self._execute()
        return self._copy_outputs_and_sync(b)

    def _wait_for_producer(self, stream: int) -> None:
        """Order this backend's stream after all work enqueued so far on the producer's `stream`."""
        cudart = self._cudart
        cuda_call(cudart, cudart.cudaEventRecord(self._event, stream), f"cudaEventRecord(producer stream {stream})")
        cuda_call(cudart, cudart.cudaStreamWaitEvent(self._stream, self._event, 0), "cudaStreamWaitEvent")

    def _enqueue_device_input(self, ptr_or_array: Any, batch: int, producer_stream: int | None) -> None:
        """Point the engine's input at a device buffer (after ordering on its producer) and enqueue the engine."""
        batch = int(batch)
        self._check_batch(batch)
        c = self.contract
        shape = (batch, 3, c.input_height, c.input_width)
        if isinstance(ptr_or_array, (int, np.integer)) and not isinstance(ptr_or_array, bool):
            ptr, wait_on = int(ptr_or_array), producer_stream
            if ptr == 0:
                raise ValueError(f"{self.path}: null device pointer")
        else:
            view = parse_cuda_array_interface(ptr_or_array, shape=shape, dtype=self.input_dtype, what=INPUT_NAME)
            ptr = view.ptr
            wait_on = producer_stream if producer_stream is not None else stream_to_wait_on(view)
        if wait_on is not None:
            self._wait_for_producer(wait_on)
        assert self._context is not None
        if batch != self._batch:
            self._set_input_shape(batch)
        if not self._context.set_tensor_address(INPUT_NAME, ptr):
            raise RuntimeError(f"{self.path}: set_tensor_address({INPUT_NAME!r}, {ptr:#x}) failed")
        try:
            self._execute()
        finally:
            self._context.set_tensor_address(INPUT_NAME, self._buffers[INPUT_NAME].device_ptr)

    def run_device(self, ptr_or_array: Any, batch: int, *, producer_stream: int | None = None) -> dict[str, np.ndarray]:
        """Run on an input already on this GPU: an object exposing `__cuda_array_interface__` (CuPy, torch CUDA
        tensor, pycuda GPUArray) of shape [batch, 3, H, W] and the engine's input dtype, C-contiguous; or a raw
        device pointer (int), trusted to hold that much. No copy of the input is made.

        Ordering: this backend's stream waits for the producer's stream before reading. Which stream is the
        producer's: `producer_stream` if given; else the interface's `stream` key; an interface that states
        `stream: None` (version 3) needs no wait; one without the key (PyTorch publishes version 2 without it)
        guarantees nothing, and is taken to be written on the legacy default stream, which is what PyTorch's
        default current stream is (a tensor written on another, non-blocking stream needs producer_stream=).
        With a raw pointer and no producer_stream the caller must have finished writing the buffer.
        """
        self._check_open()
        self._device_out = None
        self._enqueue_device_input(ptr_or_array, batch, producer_stream)
        return self._copy_outputs_and_sync(int(batch))

    def run_device_outputs(self, inputs: Any, batch: int | None = None, *, producer_stream: int | None = None) -> dict[str, DeviceArray]:
        """Run and leave the outputs on the GPU: {output name: DeviceArray [batch, ...]}, views of this backend's
        device buffers (valid until the next call), each exporting `__cuda_array_interface__` with this backend's
        stream, so a consumer (CuPy, PyTorch, df2infer.ops.cuda) orders its reads after the engine. Nothing is
        copied to the host and the host does not wait. `inputs`: a host array [B, 3, H, W] (batch taken from it),
        or a device buffer / pointer as in run_device (then `batch` is required)."""
        self._check_open()
        if isinstance(inputs, np.ndarray):
            b = self._upload_host_batch(inputs)
            self._execute()
            return self._device_outputs(b)
        if batch is None:
            raise ValueError(f"{self.path}: run_device_outputs on a device buffer needs batch=")
        self._enqueue_device_input(inputs, batch, producer_stream)
        return self._device_outputs(int(batch))

    # ---------------------------------------------------------------- GPU pre/postprocessing (DevicePipelineBackend)
    @property
    def frames_on_device(self) -> bool:
        return self.gpu_pre is not None and not self._closed

    @property
    def device_postprocessing(self) -> bool:
        return self.gpu_post is not None and not self._closed

    def run_frames(
        self, images: Sequence[np.ndarray], min_head_score: float | None = None
    ) -> tuple[dict[str, np.ndarray], list[LetterboxInfo]]:
        """BGR uint8 HxWx3 frames (1..max_batch, any sizes) -> (host outputs, each frame's LetterboxInfo).

        One upload of the frames (none on an integrated GPU), the GPU letterbox into the engine's input buffer,
        the engine, then copies of num_dets/boxes/scores/labels/embeddings only when device_postprocessing (the
        masks and heatmaps stay on the GPU for postprocess_device), of every output otherwise; one stream, one
        synchronization. min_head_score is ignored, as in run()."""
        self._check_open()
        if self.gpu_pre is None:
            raise RuntimeError(f"{self.path}: GPU preprocessing is not available (see the warning at load); use run()")
        b = len(images)
        self._check_batch(b)
        self._device_out = None
        inp = self._buffers[INPUT_NAME].device_ptr
        infos = self.gpu_pre(images, inp)  # queued on this backend's stream, so the engine reads it in order
        device_out = self.run_device_outputs(inp, b)
        outputs = self._copy_outputs_and_sync(b, COMPACT_OUTPUTS if self.gpu_post is not None else OUTPUT_NAMES)
        self._device_out = device_out
        return outputs, infos

    def postprocess_device(self, kept: Sequence[KeptDetections], options: DecodeOptions = DEFAULT_OPTIONS) -> list[PostResult]:
        """Masks and landmarks of `kept` (ops.decode.keep_detections of the last run_frames' outputs) from the
        engine's mask and heatmap outputs where they lie on the GPU; only the compact results come back."""
        from df2infer.ops.cuda.pipeline import PostItem

        self._check_open()
        if self.gpu_post is None:
            raise RuntimeError(f"{self.path}: GPU postprocessing is not available (device_postprocessing is False)")
        if self._device_out is None:
            raise RuntimeError(f"{self.path}: postprocess_device needs the outputs of run_frames, and another call has replaced them")
        items = [PostItem(row=k.b, idx=k.idx, boxes=k.boxes, labels=k.labels, image_size=k.image_size) for k in kept]
        return self.gpu_post(items, self._device_out["masks"], self._device_out["landmark_heatmaps"], options=options)

    # ---------------------------------------------------------------- teardown
    def close(self) -> None:
        """Free buffers, the event and the stream, then the TensorRT objects. Idempotent."""
        if self._closed:
            return
        self._closed = True
        cudart = self._cudart
        if self._stream is not None:
            cudart.cudaStreamSynchronize(self._stream)
        # The kernels' buffers and modules live on this stream's work: released before the stream goes.
        self._device_out = None
        for part in (self.gpu_post, self.gpu_pre, self._kdrv):
            if part is not None:
                part.close()
        self.gpu_post = self.gpu_pre = self._kdrv = None
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
        return (
            f"TensorRTBackend({str(self.path)!r}, device={self.device!r}, precision={self.precision!r}, "
            f"max_batch={getattr(self, 'max_batch', '?')})"
        )
