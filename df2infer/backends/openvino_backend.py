"""OpenVINO backend: the same df2infer ONNX files (FP32, and INT8 Q/DQ) on the CPU through OpenVINO Runtime,
behind the same Backend protocol as ONNX Runtime (extra `openvino`: pip install df2infer[openvino]).

Loading checks, in order, each failure naming the file: the file exists -> the df2infer contract is in its
metadata (ContractError) -> OpenVINO reads it (ModelLoadError) -> the inputs and outputs agree with the
contract (ContractError) -> an INT8 model is exact on this CPU's INT8 kernels (the rule of the ONNX Runtime
backend: weights beyond [-64, 64] saturate int16 pair sums on x86 without VNNI; the bundled files use 7-bit
weights). FP32 files run in FP32 (INFERENCE_PRECISION_HINT f32: OpenVINO would otherwise pick bf16 on CPUs
that have it, which changes the outputs).

A gated-head file needs `min_head_score` as a real graph input (the export since the input stopped being an
initializer): OpenVINO folds an input that is also an initializer into a constant, so such an older file runs
with its heads on every detection (correct results, more work), which is logged.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from df2infer.artifact import ModelLoadError, read_onnx_contract
from df2infer.backends.base import DeviceError, head_score_feed, parse_device
from df2infer.contract import HEAD_SCORE_INPUT, INPUT_NAME, OUTPUT_NAMES, ContractError

log = logging.getLogger(__name__)

OPENVINO_INSTALL_HINT = "install OpenVINO: `pip install df2infer[openvino]` (the `openvino` package)"


def import_openvino():
    """The `openvino` module; ImportError saying what to install if it is absent."""
    try:
        import openvino as ov  # type: ignore[import-untyped]
    except ImportError as e:
        raise ImportError(f"OpenVINO is not installed ({e}): {OPENVINO_INSTALL_HINT}") from None
    return ov


def openvino_available() -> bool:
    try:
        import_openvino()
    except ImportError:
        return False
    return True


class OpenVinoBackend:
    """Runs a df2infer ONNX artifact with OpenVINO Runtime on the CPU.

    device: "cpu" only (DeviceError otherwise). threads: INFERENCE_NUM_THREADS (0 = OpenVINO's default).
    """

    name = "openvino"

    def __init__(self, path: str | os.PathLike, device: str = "cpu", *, threads: int = 0):
        ov = import_openvino()
        self.path = os.fspath(path)
        kind, _ = parse_device(device)
        if kind != "cpu":
            raise DeviceError(f"{self.path}: the OpenVINO backend runs on the CPU only (device {device!r}); use backend='onnxruntime'")
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such model file")
        self.contract = read_onnx_contract(self.path)  # ModelLoadError / ContractError naming the file
        core = ov.Core()
        try:
            model = core.read_model(self.path)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with the parser's message
            raise ModelLoadError(f"{self.path}: OpenVINO cannot read this ONNX file: {str(e).strip().splitlines()[0]}") from None
        inputs = {p.get_any_name(): p for p in model.inputs}
        allowed = {INPUT_NAME, HEAD_SCORE_INPUT} if self.contract.gated_heads else {INPUT_NAME}
        if INPUT_NAME not in inputs or not set(inputs) <= allowed:
            raise ContractError(f"{self.path}: graph inputs {sorted(inputs)}, the contract has the inputs {sorted(allowed)}")
        self._gate = HEAD_SCORE_INPUT in inputs
        if self.contract.gated_heads and not self._gate:
            log.warning(
                "%s: %r is an initializer in this file (an older export), which OpenVINO folds away: the heads run on every "
                "detection; re-export (df2infer export) for gated heads",
                self.path,
                HEAD_SCORE_INPUT,
            )
        self._outputs: dict[str, int] = {}
        for i, port in enumerate(model.outputs):
            for n in port.get_names():
                if n in OUTPUT_NAMES:
                    self._outputs[n] = i
        missing = [n for n in OUTPUT_NAMES if n not in self._outputs]
        if missing:
            raise ContractError(f"{self.path}: graph lacks outputs {missing}, the contract needs {list(OUTPUT_NAMES)}")
        if self.contract.precision == "int8":
            from df2infer.backends.onnxruntime_backend import check_int8_cpu

            check_int8_cpu(self.contract, self.path)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(int(threads))
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:
            raise ModelLoadError(f"{self.path}: OpenVINO cannot compile this model for the CPU: {str(e).strip().splitlines()[0]}") from None
        self._request = self.compiled.create_infer_request()
        self.device = "cpu"
        self.max_batch = int(self.contract.max_batch)
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self.version = ov.get_version()
        self._input_dims = (3, self.contract.input_height, self.contract.input_width)

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        """float32 [B, 3, H, W] -> {name: array} for every name in OUTPUT_NAMES (host arrays, owned by the caller)."""
        if self._request is None:
            raise RuntimeError(f"{self.path}: this backend is closed (close() was called)")
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != self._input_dims:
            got = f"{batch.shape} {batch.dtype}" if isinstance(batch, np.ndarray) else type(batch).__name__
            raise ValueError(f"{self.path}: input must be float32 [B, {', '.join(map(str, self._input_dims))}], got {got}")
        feed = {INPUT_NAME: np.ascontiguousarray(batch)}
        if self._gate:
            feed[HEAD_SCORE_INPUT] = head_score_feed(min_head_score)
        # share_outputs=False (the default): the arrays are copies, not views of the request's buffers
        res = self._request.infer(feed, share_inputs=True)
        return {name: res[i] for name, i in ((n, self._outputs[n]) for n in OUTPUT_NAMES)}

    def close(self) -> None:
        self._request = None
        self.compiled = None

    def __repr__(self) -> str:
        return f"OpenVinoBackend({self.path!r}, device='cpu', threads={self.threads})"
