"""The GPU pre/post pipeline around an engine runner: frames letterboxed on the GPU straight into the runner's input
buffer, the runner's outputs left on the GPU, masks and landmarks of the kept detections computed where they lie.

It wraps any runner with device outputs (`DeviceRunner`: an input buffer on the device, run_device_outputs, a copy
of named outputs back to the host); the TensorRT backend is one. Everything runs on the runner's stream, through
one kernels' driver made on it, so the host synchronizes once per batch (in copy_outputs_and_sync) and once in the
postprocessing. `GpuPipeline.create` returns None, after logging why, when the kernels cannot run (no driver
module, no NVRTC, an input dtype the letterbox cannot write): the caller then letterboxes and decodes on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from df2infer.contract import Contract
from df2infer.ops.cuda.launch import Driver
from df2infer.ops.cuda.pipeline import GpuPostprocessor, GpuPreprocessor, PostItem, PostResult
from df2infer.ops.decode import KeptDetections
from df2infer.ops.letterbox import LetterboxInfo
from df2infer.ops.options import DEFAULT_OPTIONS, DecodeOptions

log = logging.getLogger(__name__)

# What run_frames copies back when masks and landmarks are computed on the GPU.
COMPACT_OUTPUTS = ("num_dets", "boxes", "scores", "labels", "embeddings")
ALL_OUTPUTS = (*COMPACT_OUTPUTS, "masks", "landmark_heatmaps")


class DeviceRunner(Protocol):
    """What the pipeline needs from an engine runner (the TensorRT backend implements it)."""

    path: Any
    contract: Contract

    @property
    def input_dtype(self) -> np.dtype: ...

    @property
    def input_device_ptr(self) -> int: ...

    def output_dtype(self, name: str) -> np.dtype: ...

    def check_batch(self, batch: int) -> None: ...

    def run_device_outputs(self, inputs: Any, batch: int | None = None) -> dict[str, Any]: ...

    def copy_outputs_and_sync(self, batch: int, names: Sequence[str]) -> dict[str, np.ndarray]: ...


class GpuPipeline:
    """run_frames / postprocess_device (backends.base.DevicePipelineBackend) for a DeviceRunner."""

    def __init__(self, runner: DeviceRunner, driver: Driver) -> None:
        c = runner.contract
        self.runner, self.driver = runner, driver
        self.pre = GpuPreprocessor(driver, (c.input_height, c.input_width), c.pad_value, out_dtype=runner.input_dtype)
        self.post: GpuPostprocessor | None = None
        if c.mask_paste != "grid_sample" or list(c.heads) != ["masks", "landmarks", "embeddings"]:
            # the kernels paste the grid_sample way and expect every head: an imported model decodes on the CPU
            log.info(
                "%s: %s model (mask_paste %s, heads %s): masks and landmarks are decoded on the CPU",
                runner.path,
                c.family,
                c.mask_paste,
                c.heads,
            )
        elif all(runner.output_dtype(n) == np.float32 for n in ("masks", "landmark_heatmaps")):
            self.post = GpuPostprocessor(
                driver, detections=c.max_detections, mask_size=c.mask_size, heatmap_size=c.heatmap_size, channels=c.max_landmarks
            )
        else:
            log.info("%s: mask/heatmap outputs are not float32; masks and landmarks are decoded on the CPU", runner.path)
        self._device_out: dict[str, Any] | None = None  # outputs of the last run_frames

    @classmethod
    def create(cls, runner: DeviceRunner, make_driver: Callable[[], Driver]) -> GpuPipeline | None:
        """The pipeline, or None (logged with the reason) when the kernels cannot run for this runner."""
        driver = None
        try:
            driver = make_driver()
            load = getattr(driver, "load_kernels", None)
            if load is not None:
                load()  # NVRTC compile (disk-cached) now: a missing NVRTC falls back here, not at the first batch
        except (ImportError, OSError, RuntimeError) as e:  # CudaError, KernelCompileError, a missing driver library
            log.warning(
                "%s: GPU preprocessing and postprocessing unavailable (%s: %s); letterbox and decode run on the CPU",
                runner.path,
                type(e).__name__,
                e,
            )
            if driver is not None:
                driver.close()
            return None
        if runner.input_dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            log.warning(
                "%s: engine input dtype %s; the GPU letterbox writes float32/float16 only, so it runs on the CPU",
                runner.path,
                runner.input_dtype,
            )
            driver.close()
            return None
        return cls(runner, driver)

    def forget_outputs(self) -> None:
        """The runner ran something else: the last run_frames' device outputs are gone."""
        self._device_out = None

    def run_frames(self, images: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], list[LetterboxInfo]]:
        """BGR uint8 HxWx3 frames -> (host outputs, each frame's LetterboxInfo): one upload of the frames (none on an
        integrated GPU), the GPU letterbox into the runner's input buffer, the runner, then copies of the compact
        outputs only when postprocessing on the GPU (masks and heatmaps stay there), of every output otherwise."""
        b = len(images)
        self.runner.check_batch(b)
        self._device_out = None
        inp = self.runner.input_device_ptr
        infos = self.pre(images, inp)  # queued on the runner's stream, so the engine reads it in order
        device_out = self.runner.run_device_outputs(inp, b)
        outputs = self.runner.copy_outputs_and_sync(b, COMPACT_OUTPUTS if self.post is not None else ALL_OUTPUTS)
        self._device_out = device_out
        return outputs, infos

    def postprocess_device(self, kept: Sequence[KeptDetections], options: DecodeOptions = DEFAULT_OPTIONS) -> list[PostResult]:
        """Masks and landmarks of `kept` (ops.decode.keep_detections of the last run_frames' outputs) from the
        runner's mask and heatmap outputs where they lie on the GPU; only the compact results come back."""
        if self.post is None:
            raise RuntimeError(f"{self.runner.path}: GPU postprocessing is not available (device_postprocessing is False)")
        if self._device_out is None:
            raise RuntimeError(f"{self.runner.path}: postprocess_device needs the outputs of run_frames; another call replaced them")
        items = [PostItem(row=k.b, idx=k.idx, boxes=k.boxes, labels=k.labels, image_size=k.image_size) for k in kept]
        return self.post(items, self._device_out["masks"], self._device_out["landmark_heatmaps"], options=options)

    def close(self) -> None:
        """Release the kernels' buffers and modules (the runner has synchronized its stream)."""
        self._device_out = None
        for part in (self.post, self.pre, self.driver):
            if part is not None:
                part.close()


__all__ = ["ALL_OUTPUTS", "COMPACT_OUTPUTS", "DeviceRunner", "GpuPipeline"]
