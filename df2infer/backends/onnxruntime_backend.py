"""ONNX Runtime backend: an InferenceSession on the CPU, or on CUDA / TensorRT execution providers
when onnxruntime-gpu is installed and a CUDA device is asked for (then with I/O binding).

Loading checks, in order, each failure naming the file:
  the file exists (FileNotFoundError) -> ONNX Runtime can parse it (ModelLoadError: truncated,
  not ONNX) -> the contract is in metadata_props under df2infer.contract.METADATA_KEY and this
  runtime reads its schema/version (ContractError) -> the graph's input and output names, ranks
  and fixed dimensions agree with the contract (ContractError) -> an INT8 model on the CPU is exact
  on this CPU's INT8 kernels (ModelLoadError with the reason otherwise: check_int8_cpu).
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from df2infer.backends.base import DeviceError, ModelLoadError, parse_device
from df2infer.contract import HEAD_SCORE_INPUT, INPUT_NAME, OUTPUT_NAMES, Contract, ContractError

log = logging.getLogger(__name__)

_OUTPUT_DTYPES = {
    "num_dets": "tensor(int32)", "boxes": "tensor(float)", "scores": "tensor(float)", "labels": "tensor(int32)",
    "masks": "tensor(float)", "landmark_heatmaps": "tensor(float)", "embeddings": "tensor(float)",
}


def cuda_available() -> bool:
    """True when onnxruntime-gpu's CUDA execution provider is installed (a GPU may still be absent)."""
    import onnxruntime as ort
    return "CUDAExecutionProvider" in ort.get_available_providers()


def read_contract(session, path: str) -> Contract:
    """The Contract stored in a session's model metadata; ContractError naming `path` if absent/bad."""
    return Contract.from_metadata(session.get_modelmeta().custom_metadata_map, source=path)


def check_io(session, contract: Contract, path: str) -> None:
    """Check the graph's input/output names, ranks, dtypes and fixed dims against the contract."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ContractError(f"{path}: graph inputs {[i.name for i in inputs]}, the contract has one input {INPUT_NAME!r}")
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise ContractError(f"{path}: input {INPUT_NAME!r} is {inp.type}, the contract says float32")
    _check_shape(path, INPUT_NAME, inp.shape, ("B", 3, contract.input_height, contract.input_width))
    optional = {i.name for i in session.get_overridable_initializers()}
    if contract.gated_heads and HEAD_SCORE_INPUT not in optional:
        raise ContractError(f"{path}: the contract says gated_heads, but the graph has no optional input "
                            f"{HEAD_SCORE_INPUT!r} (it has {sorted(optional)})")
    outs = {o.name: o for o in session.get_outputs()}
    missing = [n for n in OUTPUT_NAMES if n not in outs]
    if missing:
        raise ContractError(f"{path}: graph lacks outputs {missing}; it has {sorted(outs)}, the contract needs {list(OUTPUT_NAMES)}")
    for name, want in contract.output_shapes("B").items():
        o = outs[name]
        if o.type != _OUTPUT_DTYPES[name]:
            raise ContractError(f"{path}: output {name!r} is {o.type}, the contract says {_OUTPUT_DTYPES[name]}")
        _check_shape(path, name, o.shape, want)


def _check_shape(path: str, name: str, got: Sequence, want: Sequence) -> None:
    if got is None:
        return
    if len(got) != len(want):
        raise ContractError(f"{path}: {name!r} has rank {len(got)} {list(got)}, the contract says {list(want)}")
    for g, w in zip(got, want):
        # Symbolic or unknown dims in the graph are fine; a fixed dim must equal the contract's.
        if isinstance(g, int) and isinstance(w, int) and g != w:
            raise ContractError(f"{path}: {name!r} has shape {list(got)}, the contract says {list(want)}")


def check_int8_cpu(contract: Contract, path: str) -> None:
    """Refuse (ModelLoadError naming the file, the weight range and this CPU's features) an INT8
    model that ONNX Runtime would compute wrongly on this CPU: weights beyond [-64, 64] on x86
    without VNNI saturate int16 pair sums (df2infer.cpu_features)."""
    from df2infer.cpu_features import cpu_features, int8_refusal

    reason = int8_refusal(contract.model.get("int8_weight_range"), cpu_features())
    if reason is not None:
        raise ModelLoadError(f"{path}: refusing this INT8 model on this CPU: {reason}")


class OnnxRuntimeBackend:
    """Runs a df2infer ONNX artifact with ONNX Runtime.

    device: "cpu" (default), "cuda" or "cuda:N" (needs onnxruntime-gpu and a GPU; DeviceError
    otherwise). tensorrt_ep=True puts ORT's TensorRT execution provider first on CUDA.
    threads: intra-op threads for the CPU provider (0 = ONNX Runtime's default).
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, device: str = "cpu", *, threads: int = 0,
                 tensorrt_ep: bool = False, session_options=None):
        import onnxruntime as ort

        self.path = os.fspath(path)
        kind, index = parse_device(device)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such model file")
        if os.path.getsize(self.path) == 0:
            raise ModelLoadError(f"{self.path}: empty file, not an ONNX model")
        available = ort.get_available_providers()
        if kind == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise DeviceError(
                    f"device {device!r} asked for, but this onnxruntime ({ort.__version__}) has no CUDA execution provider "
                    f"(available: {', '.join(available)}). Install onnxruntime-gpu on a machine with an NVIDIA GPU, "
                    "or use device='cpu' (or 'auto')")
            cuda_opts = {"device_id": index}
            providers: list = [("CUDAExecutionProvider", cuda_opts), "CPUExecutionProvider"]
            if tensorrt_ep and "TensorrtExecutionProvider" in available:
                providers.insert(0, ("TensorrtExecutionProvider", {"device_id": index, "trt_engine_cache_enable": True}))
            self.device = f"cuda:{index}"
        else:
            providers = ["CPUExecutionProvider"]
            self.device = "cpu"
        so = session_options or ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        so.log_severity_level = 3
        # ORT's worker threads spin after run() by default; on a small CPU that spinning starves the
        # postprocessing that runs right after (measured here: mask pasting 10 ms/item instead of 0.5).
        if session_options is None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(self.path, sess_options=so, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/... types
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"{self.path}: cannot load as an ONNX model (truncated, corrupt or not ONNX): {msg}") from None
        if kind == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise DeviceError(f"{self.path}: ONNX Runtime could not start the CUDA execution provider on {self.device} "
                              "(no GPU, or CUDA/cuDNN libraries missing); use device='cpu'")
        self.contract = read_contract(self.session, self.path)
        check_io(self.session, self.contract, self.path)
        if self.contract.precision == "int8" and kind == "cpu":
            check_int8_cpu(self.contract, self.path)
        self.max_batch = int(self.contract.max_batch)
        self.providers = self.session.get_providers()
        self._use_binding = kind == "cuda"
        self._input_dims = (3, self.contract.input_height, self.contract.input_width)

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        """float32 [B, 3, H, W] -> {name: array} for every name in OUTPUT_NAMES (host arrays).
        min_head_score: for gated-head artifacts, the heads run only on detections scoring at least
        this (the Predictor passes its `conf`); None = every detection. Ignored by static graphs."""
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != self._input_dims:
            got = f"{batch.shape} {batch.dtype}" if isinstance(batch, np.ndarray) else type(batch).__name__
            raise ValueError(f"{self.path}: input must be float32 [B, {', '.join(map(str, self._input_dims))}], got {got}")
        if batch.shape[0] > self.max_batch:
            log.debug("batch %d exceeds the contract's max_batch %d", batch.shape[0], self.max_batch)
        batch = np.ascontiguousarray(batch)
        feed = {INPUT_NAME: batch}
        if min_head_score is not None and self.contract.gated_heads:
            feed[HEAD_SCORE_INPUT] = np.array([min_head_score], np.float32)
        if self._use_binding:
            binding = self.session.io_binding()
            for name, value in feed.items():
                binding.bind_cpu_input(name, value)
            for name in OUTPUT_NAMES:
                binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(binding)
            values = binding.copy_outputs_to_cpu()
        else:
            values = self.session.run(list(OUTPUT_NAMES), feed)
        return dict(zip(OUTPUT_NAMES, values))

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({self.path!r}, device={self.device!r}, providers={self.providers})"
