"""ONNX Runtime backend: an InferenceSession on the CPU, or on CUDA / TensorRT execution providers
when onnxruntime-gpu is installed and a CUDA device is asked for (then with I/O binding of device buffers:
the input is bound as an OrtValue on the GPU and the outputs are allocated there).

ONNX Runtime comes from one of two distributions that both install the `onnxruntime` package:
`onnxruntime` (CPU; extra `cpu`) or `onnxruntime-gpu` (extra `gpu`); install one, never both.
`import_onnxruntime` says so when neither is present.

TensorRT execution provider (tensorrt_ep=True, `tensorrt_provider_options`): engine and timing caches on
disk (`trt_engine_cache_enable/_path`, `trt_timing_cache_enable/_path`) and an explicit optimization
profile for the contract's batch range (`trt_profile_min/opt/max_shapes`), so ONNX Runtime builds one engine
once instead of rebuilding as batch sizes arrive. A graph it fails to build is reported as that, not as a
corrupt file.

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
from collections.abc import Sequence

import numpy as np

from df2infer.artifact import ModelLoadError, contract_from_metadata, int8_weight_range, read_onnx_contract
from df2infer.backends.base import DeviceError, head_score_feed, parse_device
from df2infer.contract import HEAD_SCORE_INPUT, INPUT_NAME, OUTPUT_NAMES, Contract, ContractError

log = logging.getLogger(__name__)

_OUTPUT_DTYPES = {
    "num_dets": "tensor(int32)",
    "boxes": "tensor(float)",
    "scores": "tensor(float)",
    "labels": "tensor(int32)",
    "masks": "tensor(float)",
    "landmark_heatmaps": "tensor(float)",
    "embeddings": "tensor(float)",
}


ORT_INSTALL_HINT = (
    "install ONNX Runtime: `pip install df2infer[cpu]` (the `onnxruntime` CPU package) or, on an "
    "NVIDIA GPU, `pip install df2infer[gpu]` (`onnxruntime-gpu`); not both, they share one package "
    "directory. On a Jetson use the onnxruntime-gpu wheel built for its JetPack."
)


def import_onnxruntime():
    """The `onnxruntime` module, from either distribution; ImportError saying what to install if neither is there."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError(f"ONNX Runtime is not installed ({e}): {ORT_INSTALL_HINT}") from None
    if not hasattr(ort, "InferenceSession"):  # a leftover directory after uninstalling one of the two
        raise ImportError(
            f"the `onnxruntime` package at {list(getattr(ort, '__path__', []))} is incomplete (both "
            f"onnxruntime and onnxruntime-gpu installed, then one removed?): reinstall; {ORT_INSTALL_HINT}"
        )
    return ort


def cuda_available() -> bool:
    """True when onnxruntime-gpu's CUDA execution provider is installed (a GPU may still be absent)."""
    ort = import_onnxruntime()
    return "CUDAExecutionProvider" in ort.get_available_providers()


def default_trt_cache_dir() -> str:
    """Where ONNX Runtime's TensorRT provider keeps its engines and timing cache: $DF2INFER_CACHE/ort-tensorrt,
    default ~/.cache/df2infer/ort-tensorrt (not beside the model, which may sit in a read-only install)."""
    root = os.environ.get("DF2INFER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "df2infer")
    return os.path.join(root, "ort-tensorrt")


def tensorrt_provider_options(
    contract: Contract, device_index: int = 0, *, cache_dir: str | None = None, opt_batch: int = 1
) -> dict[str, object]:
    """Options for ONNX Runtime's TensorrtExecutionProvider (names as its provider_option_names define them):
    engine + timing caches in `cache_dir` and one optimization profile for `images` over batch
    1..contract.max_batch (opt `opt_batch`), the only dynamic input (`min_head_score` is static [1])."""
    cache = cache_dir or default_trt_cache_dir()
    max_batch = int(contract.max_batch)
    opt = min(max(int(opt_batch), 1), max_batch)
    chw = f"3x{contract.input_height}x{contract.input_width}"
    return {
        "device_id": int(device_index),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
        "trt_profile_min_shapes": f"{INPUT_NAME}:1x{chw}",
        "trt_profile_opt_shapes": f"{INPUT_NAME}:{opt}x{chw}",
        "trt_profile_max_shapes": f"{INPUT_NAME}:{max_batch}x{chw}",
    }


def _readable_contract(path: str) -> Contract | None:
    """The contract of a df2infer ONNX file (df2infer.artifact.read_onnx_contract), or None when the file has no
    readable one: used only to word an error about the file, so the reason it has none does not matter here."""
    try:
        return read_onnx_contract(path)
    except (OSError, ImportError, ModelLoadError, ContractError):
        return None


def describe_session_failure(path: str, error: BaseException, providers: list) -> str:
    """The ModelLoadError text for an InferenceSession that failed: a TensorRT provider's build failure is
    reported as that (naming a gated-head graph, which TensorRT cannot build), a bad file as a bad file."""
    msg = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    if "TensorrtExecutionProvider" in names:
        contract = _readable_contract(path)
        if contract is not None:
            why = (
                " It is a gated-head graph (contract gated_heads=true): its heads run on a row count known only at "
                "run time, which TensorRT cannot build; run it with tensorrt_ep=False (the CUDA provider) or "
                "export static heads for TensorRT."
                if contract.gated_heads
                else ""
            )
            return (
                f"{path}: ONNX Runtime's TensorRT execution provider failed to build this model (the file itself "
                f"is a valid df2infer ONNX).{why} ONNX Runtime said: {msg}"
            )
    return f"{path}: cannot load as an ONNX model (truncated, corrupt or not ONNX): {msg}"


def check_io(session, contract: Contract, path: str) -> None:
    """Check the graph's input/output names, ranks, dtypes and fixed dims against the contract."""
    inputs = {i.name: i for i in session.get_inputs()}
    optional = {i.name for i in session.get_overridable_initializers()}
    # gated-head graphs: min_head_score is a second input (older files: an overridable initializer)
    allowed = [INPUT_NAME, HEAD_SCORE_INPUT] if contract.gated_heads else [INPUT_NAME]
    if INPUT_NAME not in inputs or any(n not in allowed for n in inputs):
        raise ContractError(f"{path}: graph inputs {list(inputs)}, the contract has the inputs {allowed}")
    inp = inputs[INPUT_NAME]
    if inp.type != "tensor(float)":
        raise ContractError(f"{path}: input {INPUT_NAME!r} is {inp.type}, the contract says float32")
    _check_shape(path, INPUT_NAME, inp.shape, ("B", 3, contract.input_height, contract.input_width))
    if contract.gated_heads and HEAD_SCORE_INPUT not in inputs and HEAD_SCORE_INPUT not in optional:
        raise ContractError(
            f"{path}: the contract says gated_heads, but the graph has no input {HEAD_SCORE_INPUT!r} "
            f"(inputs {list(inputs)}, overridable initializers {sorted(optional)})"
        )
    if HEAD_SCORE_INPUT in inputs:
        gate = inputs[HEAD_SCORE_INPUT]
        if gate.type != "tensor(float)":
            raise ContractError(f"{path}: input {HEAD_SCORE_INPUT!r} is {gate.type}, the contract says float32 [1]")
        _check_shape(path, HEAD_SCORE_INPUT, gate.shape, (1,))
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

    reason = int8_refusal(int8_weight_range(contract, path), cpu_features())
    if reason is not None:
        raise ModelLoadError(f"{path}: refusing this INT8 model on this CPU: {reason}")


class OnnxRuntimeBackend:
    """Runs a df2infer ONNX artifact with ONNX Runtime.

    device: "cpu" (default), "cuda" or "cuda:N" (needs onnxruntime-gpu and a GPU; DeviceError
    otherwise). tensorrt_ep=True puts ORT's TensorRT execution provider first on CUDA, with
    `tensorrt_provider_options` (trt_cache_dir=, trt_opt_batch= set its cache directory and opt batch).
    threads: intra-op threads for the CPU provider (0 = ONNX Runtime's default).
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "cpu",
        *,
        threads: int = 0,
        tensorrt_ep: bool = False,
        session_options=None,
        trt_cache_dir: str | None = None,
        trt_opt_batch: int = 1,
    ):
        ort = import_onnxruntime()

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
                    "or use device='cpu' (or 'auto')"
                )
            cuda_opts = {"device_id": index}
            providers: list = [("CUDAExecutionProvider", cuda_opts), "CPUExecutionProvider"]
            if tensorrt_ep and "TensorrtExecutionProvider" in available:
                contract = read_onnx_contract(self.path)  # the profile shapes come from it; names the file if bad
                trt_opts = tensorrt_provider_options(contract, index, cache_dir=trt_cache_dir, opt_batch=trt_opt_batch)
                os.makedirs(str(trt_opts["trt_engine_cache_path"]), exist_ok=True)
                providers.insert(0, ("TensorrtExecutionProvider", trt_opts))
            elif tensorrt_ep:
                log.warning(
                    "%s: tensorrt_ep=True but this onnxruntime has no TensorrtExecutionProvider (available: %s); using the CUDA provider",
                    self.path,
                    ", ".join(available),
                )
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
            raise ModelLoadError(describe_session_failure(self.path, e, providers)) from None
        if kind == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise DeviceError(
                f"{self.path}: ONNX Runtime could not start the CUDA execution provider on {self.device} "
                "(no GPU, or CUDA/cuDNN libraries missing); use device='cpu'"
            )
        self.contract = contract_from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        check_io(self.session, self.contract, self.path)
        if self.contract.precision == "int8" and kind == "cpu":
            check_int8_cpu(self.contract, self.path)
        self.max_batch = int(self.contract.max_batch)
        self.providers = self.session.get_providers()
        self._use_binding = kind == "cuda"
        self._device_index = index
        self._input_dims = (3, self.contract.input_height, self.contract.input_width)

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        """float32 [B, 3, H, W] -> {name: array} for every name in OUTPUT_NAMES (host arrays).
        min_head_score: for gated-head artifacts, the heads run only on detections scoring at least
        this (the Predictor passes its `conf`); None = every detection. Ignored by static graphs."""
        if self.session is None:
            raise RuntimeError(f"{self.path}: this backend is closed (close() was called)")
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != self._input_dims:
            got = f"{batch.shape} {batch.dtype}" if isinstance(batch, np.ndarray) else type(batch).__name__
            raise ValueError(f"{self.path}: input must be float32 [B, {', '.join(map(str, self._input_dims))}], got {got}")
        if batch.shape[0] > self.max_batch:
            log.debug("batch %d exceeds the contract's max_batch %d", batch.shape[0], self.max_batch)
        batch = np.ascontiguousarray(batch)
        feed = {INPUT_NAME: batch}
        if self.contract.gated_heads:
            feed[HEAD_SCORE_INPUT] = head_score_feed(min_head_score)
        if self._use_binding:
            ort = import_onnxruntime()
            # Device buffers: the batch goes to the GPU as an OrtValue there, the outputs are allocated on the
            # GPU, and only then copied to the host (binding host buffers makes ORT copy through them per run).
            inputs = {name: ort.OrtValue.ortvalue_from_numpy(value, "cuda", self._device_index) for name, value in feed.items()}
            return {name: v.numpy() for name, v in self.run_ortvalues(inputs).items()}
        values = self.session.run(list(OUTPUT_NAMES), feed)
        return dict(zip(OUTPUT_NAMES, values))

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees it with the last reference); run() fails afterwards."""
        self.session = None

    def run_ortvalues(self, inputs: dict, min_head_score: float | None = None) -> dict:
        """CUDA sessions: {input name: OrtValue (on the GPU, or host)} -> {output name: OrtValue on the GPU}.
        The outputs stay on the device (e.g. for GPU postprocessing); `.numpy()` copies one to the host.
        A gated-head graph's `min_head_score` is fed from `min_head_score` when `inputs` lacks it (it is a
        required graph input in files exported since the gate stopped being an initializer)."""
        if self.session is None:
            raise RuntimeError(f"{self.path}: this backend is closed (close() was called)")
        if not self._use_binding:
            raise RuntimeError(f"{self.path}: run_ortvalues needs a CUDA session (device='cuda'), this one is {self.device}")
        if self.contract.gated_heads and HEAD_SCORE_INPUT not in inputs:
            ort = import_onnxruntime()
            gate = ort.OrtValue.ortvalue_from_numpy(head_score_feed(min_head_score), "cuda", self._device_index)
            inputs = {**inputs, HEAD_SCORE_INPUT: gate}
        binding = self.session.io_binding()
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        for name in OUTPUT_NAMES:
            binding.bind_output(name, "cuda", self._device_index)
        self.session.run_with_iobinding(binding)
        return dict(zip(OUTPUT_NAMES, binding.get_outputs()))

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({self.path!r}, device={self.device!r}, providers={self.providers})"
