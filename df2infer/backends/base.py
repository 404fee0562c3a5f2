"""The Backend protocol every inference backend implements, and the errors they raise."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from df2infer.artifact import ModelLoadError
from df2infer.contract import Contract

__all__ = ["Backend", "DeviceError", "DeviceOutputBackend", "ModelLoadError", "parse_device", "resolve_device"]


class DeviceError(RuntimeError):
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
    copy_outputs=False views of pinned host buffers, and DeviceOutputBackend below); the Predictor uses `run`.
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


def parse_device(device: str) -> tuple[str, int]:
    """"cpu" -> ("cpu", 0); "cuda" / "cuda:N" / "gpu" -> ("cuda", N). ValueError for anything else."""
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
