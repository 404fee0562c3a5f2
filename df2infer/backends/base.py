"""The Backend protocol every inference backend implements, and the errors they raise."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from df2infer.artifact import ModelLoadError
from df2infer.contract import Contract
from df2infer.errors import ModelError
from df2infer.ops.options import DEFAULT_OPTIONS, DecodeOptions

if TYPE_CHECKING:
    from df2infer.ops.cuda.pipeline import PostResult
    from df2infer.ops.decode import KeptDetections
    from df2infer.ops.letterbox import LetterboxInfo

__all__ = ["Backend", "DeviceError", "DeviceOutputBackend", "DevicePipelineBackend", "ModelLoadError", "parse_device", "resolve_device"]


class DeviceError(ModelError, RuntimeError):
    """A requested device that is not available (e.g. device="cuda" on a machine without a usable GPU)."""


@runtime_checkable
class Backend(Protocol):
    """Runs the deploy graph on a preprocessed batch.

    contract   the artifact's Contract (read from and checked against the artifact)
    max_batch  the largest batch `run` accepts (the predictor splits larger inputs)
    name       short backend name, e.g. "onnxruntime" or "tensorrt"
    device     where it runs, e.g. "cpu" or "cuda:0"
    run(batch, min_head_score=None)
               batch: float32 [B, 3, H, W] host array (see df2infer.contract) -> {output name: array}, with
               every name in contract.OUTPUT_NAMES and the contracted shapes/dtypes, as HOST (numpy) arrays.
               min_head_score: a gated-head graph (contract.gated_heads) runs its heads only on detections
               scoring at least this; static graphs ignore it. The Predictor always passes its `conf`.
    close()    releases sessions and device memory; idempotent.
    Device-resident input and outputs are a backend's own extra (TensorRTBackend.run_device, its
    copy_outputs=False views of pinned host buffers, and DeviceOutputBackend below); the Predictor uses `run`,
    or DevicePipelineBackend's run_frames / postprocess_device when the backend offers them.
    """

    contract: Contract
    max_batch: int
    name: str
    device: str

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@runtime_checkable
class DeviceOutputBackend(Backend, Protocol):
    """A Backend that can also leave its outputs on the GPU, for GPU postprocessing (the CUDA kernels).

    run_device_outputs(inputs, batch=None)
        inputs: a host batch as for run(), or a device buffer (`__cuda_array_interface__` or a raw pointer,
        then batch= is required) -> {output name: object exposing `__cuda_array_interface__` version 3},
        the contracted shapes and dtypes, each naming the stream that writes it (consumers order their reads
        after that stream); valid until the backend's next call. Nothing is copied to the host.
    The TensorRT backend implements it; check with isinstance(backend, DeviceOutputBackend).
    """

    def run_device_outputs(self, inputs: Any, batch: int | None = None) -> dict[str, Any]: ...


@runtime_checkable
class DevicePipelineBackend(DeviceOutputBackend, Protocol):
    """A DeviceOutputBackend that also pre- and postprocesses on its GPU (the CUDA kernels, df2infer.ops.cuda),
    all on its own stream: frames go up once, only compact results come back. The Predictor uses it when
    isinstance(backend, DevicePipelineBackend) and backend.frames_on_device; otherwise it calls run().

    frames_on_device       run_frames can be used (the kernels' driver loaded); False: use run()
    device_postprocessing  postprocess_device can be used after run_frames (float32 mask/heatmap outputs)
    run_frames(images, min_head_score=None) -> (outputs, infos)
        BGR uint8 HxWx3 frames (1..max_batch, any sizes) letterboxed on the GPU straight into the engine's
        input, then run. outputs: host arrays of num_dets, boxes, scores, labels, embeddings, plus masks and
        landmark_heatmaps only when not device_postprocessing; infos: each frame's LetterboxInfo, as
        ops.letterbox.to_input_batch returns them.
    postprocess_device(kept, options) -> [PostResult]
        masks (when options.masks, at options.mask_threshold) and landmarks (when options.landmarks, with
        options.landmark_method): masks (as ops.masks.paste_masks) and landmarks (as ops.landmarks.decode_landmarks) of the kept
        detections (ops.decode.keep_detections of the last run_frames' outputs), computed where the engine
        wrote its outputs; one result per entry of `kept`.
    """

    @property
    def frames_on_device(self) -> bool: ...

    @property
    def device_postprocessing(self) -> bool: ...

    def run_frames(
        self, images: Sequence[np.ndarray], min_head_score: float | None = None
    ) -> tuple[dict[str, np.ndarray], list[LetterboxInfo]]: ...

    def postprocess_device(self, kept: Sequence[KeptDetections], options: DecodeOptions = DEFAULT_OPTIONS) -> list[PostResult]: ...


def parse_device(device: str) -> tuple[str, int]:
    """ "cpu" -> ("cpu", 0); "cuda" / "cuda:N" / "gpu" -> ("cuda", N). ValueError for anything else."""
    d = str(device).strip().lower()
    if d == "cpu":
        return "cpu", 0
    if d in ("cuda", "gpu"):
        return "cuda", 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


log = logging.getLogger("df2infer")


def resolve_device(device: str, gpu_available: Callable[[], bool] | bool) -> str:
    """The one resolver of device="auto": "cuda:0" when `gpu_available` (a bool, or a probe called only for
    "auto"), else "cpu" (logged). Any other device is normalised by parse_device to "cpu" or "cuda:N"."""
    if str(device).strip().lower() == "auto":
        usable = gpu_available() if callable(gpu_available) else bool(gpu_available)
        if usable:
            return "cuda:0"
        log.info("device='auto': no usable GPU for this backend; running on the CPU")
        return "cpu"
    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{index}"
