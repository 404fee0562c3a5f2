"""The Python API: `load(model, device)` -> Predictor; `Predictor.predict(images)` -> Predictions.

    import df2infer
    model = df2infer.load()                     # the bundled model, CPU or GPU ("auto")
    results = model.predict(["a.jpg", frame])   # paths, BGR arrays, lists or generators of them
    for det in results.ok: print(det.names, det.boxes)
    print(results.failures)                     # unreadable inputs, named, others kept
    print(model.timings.summary())              # per-stage latency
    model.close()                               # or: with df2infer.load() as model: ...

Data flow (docs/design.md): read -> preprocess (ops.letterbox) -> backend -> decode (ops.decode) -> Detections.
A backend that pre- and postprocesses on its GPU (backends.base.DevicePipelineBackend: TensorRT with the CUDA
kernels) takes the frames themselves and computes masks and landmarks where its outputs lie (docs/cuda_kernels.md).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.artifact import is_engine_path
from df2infer.backends.base import Backend, DeviceError, DevicePipelineBackend, resolve_device
from df2infer.contract import Contract
from df2infer.errors import OptionError
from df2infer.images import ImageError, coerce_image, read_image
from df2infer.latency import stats_ms
from df2infer.ops.decode import assemble_detections, decode_detections, keep_detections
from df2infer.ops.letterbox import to_input_batch
from df2infer.ops.options import DEFAULT_OPTIONS, DecodeOptions
from df2infer.results import Detections, PredictionFailure, Predictions

log = logging.getLogger("df2infer")

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default.onnx"
# How the bundled model is made (export/ needs the [export] extra, i.e. torch).
MAKE_DEFAULT_MODEL = "make bundle  (runs python -m df2infer_export.bundle; needs the export extra: pip install -e .[export])"


BACKENDS = ("auto", "onnxruntime", "openvino")


def load_backend(
    model: str | os.PathLike,
    device: str = "auto",
    *,
    threads: int = 0,
    tensorrt_ep: bool = False,
    trust_engine_code: bool = False,
    backend: str = "auto",
) -> Backend:
    """The backend for a model file: TensorRT for .engine/.plan; for ONNX files ONNX Runtime or OpenVINO
    (`backend`; "auto": ONNX Runtime on a GPU, on the CPU the backend that backends.cpu_choice picks).
    threads: the CPU threads of ONNX Runtime / OpenVINO, 0 = their default; tensorrt_ep: ONNX Runtime's TensorRT provider;
    trust_engine_code: let a VERSION_COMPATIBLE TensorRT engine run the host code it carries."""
    threads, tensorrt_ep = int(threads), bool(tensorrt_ep)
    path = os.fspath(model)
    if backend not in BACKENDS:
        raise OptionError(f"backend={backend!r}: expected one of {BACKENDS}")
    if is_engine_path(path) and backend != "auto":
        raise OptionError(f"{path}: a TensorRT engine runs on TensorRT; backend={backend!r} is for ONNX files")
    cpu_auto = backend == "auto" and not tensorrt_ep and not is_engine_path(path) and resolve_device(device, _ort_cuda) == "cpu"
    if backend == "openvino" or cpu_auto:
        from df2infer.backends.cpu_choice import choose_cpu_backend

        chosen = backend if backend == "openvino" else choose_cpu_backend(path)
        if chosen == "openvino":
            from df2infer.backends.openvino_backend import OpenVinoBackend

            if tensorrt_ep:
                raise OptionError(f"{path}: tensorrt_ep=True is an ONNX Runtime option; backend='openvino' runs on the CPU")
            return OpenVinoBackend(path, "cpu" if device == "auto" else device, threads=threads)
    if is_engine_path(path):
        device = resolve_device(device, gpu_available=True)  # an engine is GPU-only: "auto" means the GPU
        if device == "cpu":
            raise DeviceError(f"{path}: a TensorRT engine runs on an NVIDIA GPU only; use the ONNX model for device='cpu'")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such model file")
        try:
            from df2infer.backends.tensorrt_backend import TensorRTBackend
        except ImportError as e:
            raise DeviceError(
                f"{path}: the TensorRT backend cannot be imported ({e}); install the [gpu] extra "
                "(tensorrt, cuda-python) on a machine with an NVIDIA GPU"
            ) from e
        return TensorRTBackend(path, device, trust_engine_code=bool(trust_engine_code))
    from df2infer.backends.onnxruntime_backend import OnnxRuntimeBackend, cuda_available

    auto = device == "auto"
    dev = resolve_device(device, cuda_available)
    try:
        return OnnxRuntimeBackend(path, dev, threads=threads, tensorrt_ep=tensorrt_ep)
    except DeviceError as e:
        if not auto:
            raise
        log.warning("device='auto': %s; falling back to the CPU", e)
        return OnnxRuntimeBackend(path, "cpu", threads=threads, tensorrt_ep=tensorrt_ep)


def _ort_cuda() -> bool:
    from df2infer.backends.onnxruntime_backend import cuda_available

    try:
        return cuda_available()
    except ImportError:
        return False


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _single_threaded_blas():
    """Context manager limiting BLAS to one thread (threadpoolctl) for this process, restored after."""
    return _blas_controller().limit(limits=1, user_api="blas")


def load(
    model: str | os.PathLike | Backend | None = None,
    device: str = "auto",
    *,
    threads: int = 0,
    tensorrt_ep: bool = False,
    trust_engine_code: bool = False,
    backend: str = "auto",
    options: DecodeOptions | None = None,
) -> Predictor:
    """Load a model artifact and return a Predictor.

    model        path to a df2infer .onnx (ONNX Runtime) or .engine/.plan (TensorRT), a Backend instance,
                 or None for the bundled model (df2infer/models/default.onnx)
    device       "auto" (GPU when usable, else CPU, logged), "cpu", "cuda" or "cuda:N"
    threads      ONNX Runtime / OpenVINO CPU threads (0: its default)
    tensorrt_ep  ONNX Runtime with its TensorRT execution provider
    trust_engine_code  True lets a VERSION_COMPATIBLE TensorRT engine run the host code it carries (refused
                 otherwise: docs/tensorrt.md)
    backend      for ONNX files: "onnxruntime", "openvino" (CPU only; extra `openvino`) or "auto" (ONNX Runtime on
                 a GPU; on the CPU the measured rule of df2infer.backends.cpu_choice, printed by `df2infer info`)
    options      the Predictor's default DecodeOptions (default: DecodeOptions())
    """
    if model is not None and not isinstance(model, (str, os.PathLike)):
        if not isinstance(model, Backend):
            raise TypeError(f"load(model=...): expected a path or a Backend, got {type(model).__name__}")
        return Predictor(model, options)
    if model is None:
        if not DEFAULT_MODEL.is_file():
            raise FileNotFoundError(
                f"no bundled model at {DEFAULT_MODEL}: it is made by `{MAKE_DEFAULT_MODEL}`; or pass load(model='path/to/model.onnx')"
            )
        model = DEFAULT_MODEL
    be = load_backend(model, device, threads=threads, tensorrt_ep=tensorrt_ep, trust_engine_code=trust_engine_code, backend=backend)
    return Predictor(be, options)


class StageTimings:
    """Per-stage wall times (time.perf_counter), one sample per batch, with image counts.

    Stages: read (decode files / check arrays), preprocess (letterbox + pack), inference (backend.run),
    postprocess (filter, boxes, masks, landmarks). `last` holds the most recent batch's seconds.
    """

    STAGES = ("read", "preprocess", "inference", "postprocess")

    def __init__(self, maxlen: int = 100_000):
        self.samples: dict[str, deque] = {s: deque(maxlen=maxlen) for s in self.STAGES}
        self.images: dict[str, deque] = {s: deque(maxlen=maxlen) for s in self.STAGES}
        self.last: dict[str, float] = {}

    def add(self, stage: str, seconds: float, images: int = 1) -> None:
        self.samples[stage].append(seconds)
        self.images[stage].append(images)
        self.last[stage] = seconds

    def reset(self) -> None:
        for s in self.STAGES:
            self.samples[s].clear()
            self.images[s].clear()
        self.last = {}

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {batches, images, total_ms, per_image_ms, p50_ms, p90_ms, p99_ms (per batch)}}."""
        out = {}
        for s in self.STAGES:
            if not self.samples[s]:
                continue
            st = stats_ms(self.samples[s], (50, 90, 99))
            n = int(np.sum(self.images[s]))
            total_ms = st["mean"] * st["n"]
            out[s] = {
                "batches": st["n"],
                "images": n,
                "total_ms": total_ms,
                "per_image_ms": total_ms / max(n, 1),
                "p50_ms": st["p50"],
                "p90_ms": st["p90"],
                "p99_ms": st["p99"],
            }
        return out

    def __repr__(self) -> str:
        parts = [f"{s} {v['per_image_ms']:.2f} ms/img" for s, v in self.summary().items()]
        return "StageTimings(" + ", ".join(parts) + ")"


def _iter_inputs(images: Any) -> Iterator[Any]:
    if isinstance(images, (str, os.PathLike)):
        yield images
    elif isinstance(images, np.ndarray):
        if images.ndim == 4:  # a batch [B, H, W, C]
            yield from images
        else:
            yield images
    elif isinstance(images, Iterable):
        yield from images
    else:
        raise TypeError(f"predict: expected an image path, a numpy image, or a list/iterable of them, got {type(images).__name__}")


class Predictor:
    """Runs a Backend on images: batching, pre- and postprocessing, per-stage timings."""

    def __init__(self, backend: Backend, options: DecodeOptions | None = None):
        self.backend = backend
        self.options = options if options is not None else DEFAULT_OPTIONS  # used when a call passes none
        self.contract: Contract = backend.contract
        self.timings = StageTimings()
        self._similarity: Any = None
        self._buf: np.ndarray | None = None
        # One backend call at a time: a backend's staging buffers, stream and outputs (and _buf) serve one batch;
        # calls from several threads wait their turn (tests/test_gpu_end_to_end.py).
        self._infer_lock = threading.Lock()
        # A capability of the backend, not a backend name: frames go to the GPU when it offers that.
        self._pipeline: DevicePipelineBackend | None = (
            backend if isinstance(backend, DevicePipelineBackend) and backend.frames_on_device else None
        )

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def has_similarity(self) -> bool:
        """Whether the artifact carries a similarity network (else `similarity` raises MissingPartError)."""
        from df2infer.retrieval.similarity import Similarity

        return Similarity.in_contract(self.contract)

    @property
    def similarity(self):
        """The artifact's similarity network (df2infer.retrieval.similarity.Similarity); MissingPartError without one."""
        if self._similarity is None:
            from df2infer.retrieval.similarity import Similarity

            self._similarity = Similarity.from_contract(self.contract)
        return self._similarity

    def __repr__(self) -> str:
        c = self.contract
        return (
            f"Predictor({self.backend.name} on {self.backend.device}, input {c.input_height}x{c.input_width}, "
            f"{c.precision}, max_batch {self.backend.max_batch})"
        )

    def predict(self, images: Any, options: DecodeOptions | None = None, **kw: Any) -> Predictions:
        """Detect clothing in `images`: a path, a BGR numpy image (HxW, HxWx1/3/4; uint8 or uint16),
        a [B, H, W, C] array, or a list/tuple/generator of paths and arrays.

        Returns Predictions: one entry per input, in order: a Detections, or a PredictionFailure for an
        input that could not be read (the file or images[i] named); the others are kept, and a
        warning logs the count. Options: see `stream`.
        """
        results = Predictions(self.stream(images, options, **kw))
        fails = results.failures
        if fails:
            log.warning(
                "%d of %d images failed: %s",
                len(fails),
                len(results),
                "; ".join(f.message for f in fails[:3]) + (" ..." if len(fails) > 3 else ""),
            )
        return results

    __call__ = predict

    def stream(
        self,
        images: Any,
        options: DecodeOptions | None = None,
        *,
        batch_size: int | None = None,
        on_error: str = "collect",
        with_images: bool = False,
        **changes: Any,
    ) -> Iterator[Detections | PredictionFailure]:
        """Like predict, lazily: yields one result per input as each batch finishes (for video).

        options          a DecodeOptions (default: the Predictor's, `self.options`); `changes` are DecodeOptions
                         fields replaced for this call (conf=0.5, masks=False, ...; see ops.options.DecodeOptions)
        batch_size       images per backend call (default and maximum: the backend's max_batch)
        on_error         "collect" (PredictionFailure in place) or "raise" (first bad input raises)
        with_images      yield (result, image) pairs, image = the decoded BGR uint8 input (None for a
                         failure), so callers that draw need not decode files twice
        """
        if on_error not in ("collect", "raise"):
            raise OptionError(f"on_error={on_error!r}, expected 'collect' or 'raise'")
        opts = self._for_model(DecodeOptions.of(options if options is not None else self.options, **changes))
        bs = self._batch_size(batch_size)
        pending: list = []  # (index, source name, path or None, image) or PredictionFailure, in input order
        n_images = 0
        t0 = time.perf_counter()
        for i, item in enumerate(_iter_inputs(images)):
            entry = self._read(i, item, on_error)
            pending.append(entry)
            if not isinstance(entry, PredictionFailure):
                n_images += 1
            if n_images == bs:
                self.timings.add("read", time.perf_counter() - t0, n_images)
                yield from self._run_batch(pending, opts, with_images)
                pending, n_images = [], 0
                t0 = time.perf_counter()
        if pending:
            if n_images:
                self.timings.add("read", time.perf_counter() - t0, n_images)
            yield from self._run_batch(pending, opts, with_images)

    def predict_batch(
        self, frames: Sequence[np.ndarray], options: DecodeOptions | None = None, *, batch_size: int | None = None, **changes: Any
    ) -> list[Detections]:
        """Detections for decoded frames (BGR arrays, as `predict` accepts them), in order: the call streaming
        builds on. No files, no failure collection: a frame that is not an image raises ImageError naming
        frames[i]. Frames beyond the backend's max_batch (or `batch_size`) go in several backend calls.
        Options: see `stream`."""
        opts = self._for_model(DecodeOptions.of(options if options is not None else self.options, **changes))
        bs = self._batch_size(batch_size)
        results: list[Detections] = []
        for start in range(0, len(frames), bs):
            t0 = time.perf_counter()
            chunk = [coerce_image(f, f"frames[{start + j}]") for j, f in enumerate(frames[start : start + bs])]
            self.timings.add("read", time.perf_counter() - t0, len(chunk))
            results.extend(self._infer(chunk, [None] * len(chunk), opts))
        return results

    def close(self) -> None:
        """Release the backend (sessions, GPU memory); the Predictor cannot run afterwards."""
        self.backend.close()
        self._buf = None

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _batch_size(self, batch_size: int | None) -> int:
        return max(1, min(int(batch_size or self.backend.max_batch), self.backend.max_batch))

    def _read(self, i: int, item: Any, on_error: str):
        if isinstance(item, (str, os.PathLike)):
            name, path = os.fspath(item), os.fspath(item)
        else:
            name, path = f"images[{i}]", None
        try:
            img = read_image(item) if path is not None else coerce_image(item, name)
        except (ImageError, OSError) as e:
            if on_error == "raise":
                raise
            return PredictionFailure(index=i, source=name, error=e, path=path)
        return (i, name, path, img)

    def _for_model(self, opts: DecodeOptions) -> DecodeOptions:
        """A head the model lacks (an imported checkpoint's, contract.heads) is never decoded: Detections carry None."""
        c = self.contract
        return opts.replace(
            masks=opts.masks and c.has("masks"),
            landmarks=opts.landmarks and c.has("landmarks"),
            embeddings=opts.embeddings and c.has("embeddings"),
        )

    def _run_batch(self, pending: list, opts: DecodeOptions, with_images: bool = False) -> Iterator:
        entries = [e for e in pending if not isinstance(e, PredictionFailure)]
        decoded = iter(self._infer([e[3] for e in entries], [e[2] for e in entries], opts)) if entries else iter(())
        results: list = []
        for e in pending:
            if isinstance(e, PredictionFailure):
                results.append((e, None) if with_images else e)
            else:
                r = next(decoded)
                results.append((r, e[3]) if with_images else r)
        return iter(results)

    def _infer(self, images: list[np.ndarray], paths: list[str | None], opts: DecodeOptions) -> list[Detections]:
        """One backend call on BGR uint8 images (at most max_batch): preprocess, run, decode; paths: each image's file or None."""
        with self._infer_lock:
            return self._infer_locked(images, paths, opts)

    def _infer_locked(self, images: list[np.ndarray], paths: list[str | None], opts: DecodeOptions) -> list[Detections]:
        if self._pipeline is not None:
            return self._infer_on_device(self._pipeline, images, paths, opts)
        t = time.perf_counter()
        c = self.contract
        if self._buf is None:
            self._buf = np.empty((self.backend.max_batch, 3, c.input_height, c.input_width), np.float32)
        batch, infos = to_input_batch(images, c, out=self._buf)
        t1 = time.perf_counter()
        self.timings.add("preprocess", t1 - t, len(images))
        # Every backend takes min_head_score; a gated-head graph runs its heads only on what `conf` keeps.
        outputs = self.backend.run(batch, min_head_score=opts.conf)
        t2 = time.perf_counter()
        self.timings.add("inference", t2 - t1, len(images))
        # The mask-pasting matmuls are small: one BLAS thread is fastest, and a multi-threaded BLAS
        # that spins for a busy core made them 10-40x slower on a loaded 2-core machine (measured).
        with _single_threaded_blas():
            results = [
                decode_detections(outputs, b, infos[b], opts, path=path, mask_paste=self.contract.mask_paste)
                for b, path in enumerate(paths)
            ]
        self.timings.add("postprocess", time.perf_counter() - t2, len(images))
        return results

    def _infer_on_device(
        self, pipeline: DevicePipelineBackend, images: list[np.ndarray], paths: list[str | None], opts: DecodeOptions
    ) -> list[Detections]:
        """_infer on a DevicePipelineBackend: the GPU letterboxes the frames (so preprocessing is part of the
        inference stage's time), the host keeps detections from the compact outputs, the GPU pastes masks and
        decodes landmarks of those in one call per batch. Same Detections as the CPU path (docs/cuda_kernels.md)."""
        t1 = time.perf_counter()
        outputs, infos = pipeline.run_frames(images, min_head_score=opts.conf)
        t2 = time.perf_counter()
        self.timings.add("inference", t2 - t1, len(images))
        on_gpu = pipeline.device_postprocessing and (opts.masks or opts.landmarks)
        if not on_gpu:  # run_frames returned every output: the numpy decode
            with _single_threaded_blas():
                results = [
                    decode_detections(outputs, b, infos[b], opts, path=path, mask_paste=self.contract.mask_paste)
                    for b, path in enumerate(paths)
                ]
            self.timings.add("postprocess", time.perf_counter() - t2, len(images))
            return results
        kept = [keep_detections(outputs, b, infos[b], conf=opts.conf, suppress_iou=opts.suppress_iou) for b in range(len(paths))]
        post = pipeline.postprocess_device(kept, opts)
        results = [
            assemble_detections(
                outputs,
                k,
                masks=r.masks,
                mask_boxes=r.mask_boxes,
                landmarks=r.landmarks,
                embeddings=opts.embeddings,
                path=path,
            )
            for k, r, path in zip(kept, post, paths)
        ]
        self.timings.add("postprocess", time.perf_counter() - t2, len(images))
        return results
