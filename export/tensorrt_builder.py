"""Build a TensorRT engine from one of the deploy graph's ONNX files (FP32, FP16, or INT8 Q/DQ).

Precision lives in the graph (docs/design.md, docs/tensorrt.md): the network is created STRONGLY TYPED and
TensorRT runs each layer in the type the ONNX file gives it, so the same builder makes the FP32, FP16 and INT8 engines from
the FP32, FP16 and Q/DQ ONNX files. TensorRT 11 removed the weak-typing flags (BuilderFlag.FP16/INT8) and
the INT8 calibrator; where the installed TensorRT still has them (JetPack 6 = TensorRT 10.3, JetPack 5 =
TensorRT 8.5, which has no strongly typed networks at all), `weak_typing_precision` offers the old path,
with an IInt8EntropyCalibrator2 whose cache is reusable. Features are detected with hasattr, never by
version strings alone.

The engine `<out>.engine` is written with a sidecar `<out>.engine.json` (df2infer.artifact.engine_sidecar_path;
fields in df2infer.artifact.engine_sidecar_meta) holding the contract from the ONNX metadata, the TensorRT
version, whether the engine is VERSION_COMPATIBLE (`version_compatible=True` sets the builder flag; such an
engine loads on later TensorRT versions of the same major; a plain one only on the exact version), GPU name
and compute capability, precision, build time and the ONNX file's sha256; the runtime checks it before
deserializing.

TensorRT's NMS layer (what the ONNX parser makes of NonMaxSuppression) considers at most 5000 candidate boxes
per image (2000 on SM 5.3 / 6.2 GPUs); ONNX Runtime considers all. `check_nms_box_limit` compares each
NonMaxSuppression's candidates (boxes x classes, from the graph's static shapes) with the limit of the GPU
being built for: over the limit with no score threshold, TensorRT would drop boxes on every image and the
build stops (BuildError); with a score threshold it differs only when more candidates than the limit pass
it, and the build warns with the numbers.

Structure follows NVIDIA's TensorRT Python samples (EngineBuilder: create_network, then create_engine),
with cuda-python instead of pycuda. This module imports without TensorRT: it is imported lazily inside the
functions that need it, and missing TensorRT is a clear error at call time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from df2infer.artifact import (
    ENGINE_SUFFIXES,
    OnnxInfo,
    engine_sidecar_meta,
    int8_activations,
    load_onnx,
    read_onnx_info,
    write_engine_sidecar,
)
from df2infer.backends.tensorrt_backend import TensorRTUnavailable, require_tensorrt, tensorrt_dims
from df2infer.contract import INPUT_NAME, Contract, ContractError
from df2infer.gpu.cuda_check import CudaError, cuda_call, device_properties, driver_runtime_problem, import_cudart

from .calibration import calibration_batch, list_calibration_images

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger("EngineBuilder")

WEAK_PRECISIONS = ("fp32", "fp16", "int8")


class BuildError(RuntimeError):
    """The engine could not be built; the message says why and what to do."""


class WeakTypingUnavailable(BuildError):
    """Weak typing (BuilderFlag.FP16 / INT8, INT8 calibrators) was asked for, but this TensorRT has removed it."""


# ------------------------------------------------------------------------------------------------ NMS box limit
NMS_BOX_LIMIT = 5000  # INMSLayer's TopK box limit: candidates considered per image ...
NMS_BOX_LIMIT_SMALL = 2000  # ... and on these compute capabilities (TensorRT's operator docs, "NMS")
NMS_SMALL_LIMIT_CAPABILITIES = ("5.3", "6.2")


def nms_box_limit(compute_capability: str) -> int:
    return NMS_BOX_LIMIT_SMALL if str(compute_capability) in NMS_SMALL_LIMIT_CAPABILITIES else NMS_BOX_LIMIT


@dataclass(frozen=True)
class NmsCandidates:
    """One NonMaxSuppression node: per image, `boxes` boxes scored for `classes` classes (None: not static)."""

    node: str
    boxes: int | None
    classes: int | None
    score_threshold: float | None  # None: no score_threshold input (every candidate is considered)

    @property
    def candidates(self) -> int | None:
        return None if self.boxes is None or self.classes is None else self.boxes * self.classes


def nms_candidates(model: Any) -> list[NmsCandidates]:
    """Every NonMaxSuppression node of an onnx.ModelProto with its per-image candidate count, from ONNX shape
    inference (boxes [B, A, 4], scores [B, C, A]: A x C candidates) and its constant score threshold."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    dims: dict[str, list[int | None]] = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        shape = v.type.tensor_type.shape
        dims[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    thresholds = {n.input[4] for n in g.node if n.op_type == "NonMaxSuppression" and len(n.input) > 4}
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer if t.name in thresholds}
    for t in g.initializer:
        dims.setdefault(t.name, [int(d) for d in t.dims])
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] in thresholds:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    found = []
    for n in g.node:
        if n.op_type != "NonMaxSuppression":
            continue
        boxes = dims.get(n.input[0], [])
        scores = dims.get(n.input[1], [])
        thr = None
        if len(n.input) > 4 and n.input[4]:
            value = consts.get(n.input[4])
            thr = float(np.asarray(value).reshape(-1)[0]) if value is not None else float("nan")
        found.append(
            NmsCandidates(
                node=n.name or n.output[0],
                boxes=boxes[1] if len(boxes) == 3 else None,
                classes=scores[1] if len(scores) == 3 else None,
                score_threshold=thr,
            )
        )
    return found


def check_nms_box_limit(model: Any, compute_capability: str, *, source: str = "<onnx>") -> list[str]:
    """Compare each NonMaxSuppression's candidates with TensorRT's NMS box limit on `compute_capability`.

    BuildError when a node without a score threshold has more candidates than the limit (TensorRT would drop
    the lowest-scored ones on every image, ONNX Runtime keeps them); a logged warning, returned too, when the
    node has a score threshold (they differ only on images where more than the limit pass it) or when the
    count is not static. Returns the warnings.
    """
    limit = nms_box_limit(compute_capability)
    warnings_: list[str] = []
    for c in nms_candidates(model):
        where = (
            f"{source}: NonMaxSuppression {c.node!r} sends {c.boxes} boxes x {c.classes} classes = "
            f"{c.candidates} candidates per image; TensorRT's NMS layer considers at most {limit} per image on "
            f"compute capability {compute_capability}"
        )
        if c.candidates is None:
            msg = (
                f"{source}: NonMaxSuppression {c.node!r}: candidate count not static (boxes {c.boxes}, classes "
                f"{c.classes}); TensorRT's NMS layer considers at most {limit} per image, not checked"
            )
        elif c.candidates <= limit:
            continue
        elif c.score_threshold is None or not c.score_threshold > 0:
            raise BuildError(
                f"{where}, and this NMS has no score threshold to filter them (score_threshold "
                f"{c.score_threshold}): the engine would drop the {c.candidates - limit} lowest-scored candidates on "
                "every image where ONNX Runtime keeps them. Export with fewer proposals (rpn_post_nms_top_n_test / "
                "pre_nms_top_n) so the count fits."
            )
        else:
            msg = (
                f"{where}: results differ from ONNX Runtime on images where more than {limit} candidates score "
                f"above the threshold {c.score_threshold:g} (TensorRT keeps the {limit} best). Export with fewer "
                f"proposals (at most {limit // max(c.classes or 1, 1)} boxes for {c.classes} classes) to rule it out."
            )
        log.warning("%s", msg)
        warnings_.append(msg)
    return warnings_


# ------------------------------------------------------------------------------------------------ ONNX side
# OnnxInfo / read_onnx_info: df2infer.artifact (the one reader of the ONNX metadata).


def check_buildable(info: OnnxInfo) -> None:
    """ContractError for an artifact TensorRT cannot build: a gated-head graph (contract
    gated_heads=true) runs its heads on a row count known only at run time; an INT8 graph in ONNX
    Runtime's CPU form (contract int8_activations "uint8": asymmetric u8 activations, which TensorRT's
    symmetric INT8 does not take; e.g. the bundled default.int8.onnx)."""
    if info.contract.precision == "int8" and int8_activations(info.contract) == "uint8":
        raise ContractError(
            f"{info.path}: an INT8 graph in ONNX Runtime's CPU form (contract int8_activations='uint8': asymmetric u8 "
            "activations), which TensorRT cannot build (its INT8 is symmetric s8). Export the TensorRT form from the "
            "FP32 model with `df2infer export MODEL --out DIR --precision int8 --calib-images DIR` (s8 activations), "
            "or build from the FP32 / FP16 ONNX file"
        )
    if info.contract.gated_heads:
        raise ContractError(
            f"{info.path}: a gated-head graph (contract gated_heads=true): its heads run on a row count known only "
            "at run time, which TensorRT cannot build; export with static heads (`df2infer export ... --engine`, "
            "or --heads static)"
        )


# ------------------------------------------------------------------------------------------------ calibration
class CalibrationCache:
    """The INT8 calibration cache file: plain bytes, read if present, written after calibration (atomically)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None

    def read(self) -> bytes | None:
        if self.path is None or not self.path.is_file():
            return None
        data = self.path.read_bytes()
        if not data:
            log.warning("calibration cache %s is empty; calibrating again", self.path)
            return None
        log.info("using calibration cache %s", self.path)
        return data

    def write(self, data: bytes) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(bytes(data))
        os.replace(tmp, self.path)
        log.info("wrote calibration cache %s (%d bytes)", self.path, len(data))


class CalibrationBatches:
    """Calibration input, batch by batch, as the graph takes it: float32 [batch_size, 3, H, W], RGB 0..255.

    `source` is an array [N, 3, H, W] already preprocessed, a `.npy` file of one, a directory of images, or a
    sequence of image paths (a directory is listed by export/calibration.py, as for ONNX Runtime INT8; read and
    letterboxed with df2infer.ops.letterbox, the runtime's own preprocessing).
    Only whole batches are used (TensorRT calibrates with a fixed batch size).
    """

    def __init__(self, source: Any, contract: Contract, batch_size: int = 8) -> None:
        self.contract = contract
        self.shape = (3, contract.input_height, contract.input_width)
        self._array: np.ndarray | None = None
        self._paths: list[Path] = []
        if isinstance(source, np.ndarray):
            self._array = source
        elif isinstance(source, (str, Path)) and Path(source).suffix == ".npy":
            self._array = np.load(Path(source), mmap_mode="r")
        elif isinstance(source, (str, Path)) and Path(source).is_dir():
            self._paths = list_calibration_images(source)  # the same images the ONNX Runtime INT8 path calibrates on
        elif isinstance(source, (str, Path)):
            raise FileNotFoundError(f"calibration images {source}: not a directory or a .npy file")
        elif isinstance(source, Sequence):
            self._paths = [Path(p) for p in source]
        else:
            raise TypeError(
                f"calibration images: {type(source).__name__}; expected an array [N, 3, H, W], a .npy "
                "file, a directory of images or a list of image paths"
            )
        if self._array is not None and (self._array.ndim != 4 or tuple(self._array.shape[1:]) != self.shape):
            raise ValueError(f"calibration array shape {self._array.shape}, expected [N, *{self.shape}]")
        n = self.num_images
        if n == 0:
            raise ValueError(f"calibration images {source}: none found")
        self.batch_size = max(1, min(int(batch_size), n))
        self._next = 0

    @property
    def num_images(self) -> int:
        return len(self._array) if self._array is not None else len(self._paths)

    def __len__(self) -> int:
        return self.num_images // self.batch_size

    def fill(self, out: np.ndarray) -> bool:
        """Write the next batch into `out` (float32 [batch_size, 3, H, W]); False when no whole batch is left."""
        start, stop = self._next, self._next + self.batch_size
        if stop > self.num_images:
            return False
        if self._array is not None:
            np.copyto(out, self._array[start:stop], casting="same_kind")
        else:
            calibration_batch(self._paths[start:stop], self.contract, out=out)
        self._next = stop
        log.info("calibration batch %d / %d", stop // self.batch_size, len(self))
        return True


def make_entropy_calibrator(batches: CalibrationBatches | None, cache: CalibrationCache) -> trt.IInt8EntropyCalibrator2:
    """An IInt8EntropyCalibrator2 feeding `batches` through one device buffer and reading/writing `cache`.

    With an existing cache and batches=None, TensorRT reads the cache and never asks for a batch. Call
    `.free()` on the result after the build to release its device buffer.
    """
    import tensorrt as trt

    cudart = import_cudart()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._host: np.ndarray | None = None
            self._device = 0
            if batches is not None:
                self._host = np.empty((batches.batch_size, *batches.shape), dtype=np.float32)
                self._device = int(
                    cuda_call(cudart, cudart.cudaMalloc(self._host.nbytes), f"cudaMalloc({self._host.nbytes}) for calibration")
                )

        def get_batch_size(self) -> int:
            return batches.batch_size if batches is not None else 1

        def get_batch(self, names: list[str]) -> list[int]:
            if batches is None or self._host is None or not batches.fill(self._host):
                return []  # no more batches
            cuda_call(
                cudart,
                cudart.cudaMemcpy(self._device, self._host.ctypes.data, self._host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice),
                "cudaMemcpy(host->device, calibration batch)",
            )
            return [self._device]

        # TensorRT documents "a cache object or None" (None: no cache, calibrate).
        def read_calibration_cache(self) -> bytes | None:
            return cache.read()

        def write_calibration_cache(self, data: Any) -> None:
            cache.write(bytes(memoryview(data)))

        def free(self) -> None:
            if self._device:
                cudart.cudaFree(self._device)
                self._device = 0

    return EntropyCalibrator()


# ------------------------------------------------------------------------------------------------ TensorRT
def weak_typing_problem(trt_mod: Any, precision: str) -> str | None:
    """Why this TensorRT cannot build `precision` weakly typed, or None if it can (feature detection only)."""
    flags = getattr(trt_mod, "BuilderFlag", None)
    missing = []
    if precision in ("fp16", "int8") and not hasattr(flags, "FP16"):
        missing.append("BuilderFlag.FP16")
    if precision == "int8":
        if not hasattr(flags, "INT8"):
            missing.append("BuilderFlag.INT8")
        if not hasattr(trt_mod, "IInt8EntropyCalibrator2"):
            missing.append("IInt8EntropyCalibrator2")
    if not missing:
        return None
    version = getattr(trt_mod, "__version__", "?")
    return (
        f"weak typing ({precision}) needs {', '.join(missing)}, which TensorRT {version} does not have (weak "
        "typing is deprecated since 10.12 and removed in 11). Build strongly typed from the precision's own "
        "ONNX file instead (FP16 ONNX for fp16, the Q/DQ ONNX for int8): leave weak_typing_precision unset."
    )


def has_strong_typing(trt_mod: Any) -> bool:
    return hasattr(getattr(trt_mod, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED")


class EngineBuilder:
    """Parses an ONNX graph and builds a TensorRT engine from it (after NVIDIA's samples' EngineBuilder)."""

    def __init__(self, *, workspace_gib: float = 2.0, verbose: bool = False, device_index: int = 0) -> None:
        require_tensorrt()
        import tensorrt as trt

        self.cudart = import_cudart()
        try:
            cuda_call(self.cudart, self.cudart.cudaSetDevice(device_index), f"cudaSetDevice({device_index})")
            self.gpu_name, self.compute_capability = device_properties(self.cudart, device_index)
        except CudaError as e:
            why = driver_runtime_problem(self.cudart)
            raise BuildError(
                f"no usable CUDA GPU to build on ({e}{': ' + why if why else ''}); TensorRT builds engines on the GPU that will run them"
            ) from None
        self.trt_logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        if hasattr(trt, "init_libnvinfer_plugins"):
            trt.init_libnvinfer_plugins(self.trt_logger, "")
        self.builder = trt.Builder(self.trt_logger)
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        self.network: trt.INetworkDefinition | None = None
        self.parser: trt.OnnxParser | None = None
        self.strongly_typed = False
        self.version_compatible = False
        self.vc_plugin_libraries: list[str] = []  # plugin libraries serialized into a version-compatible engine
        self.onnx: OnnxInfo | None = None
        self.nms_warnings: list[str] = []

    def create_network(self, onnx_path: str | Path, *, strongly_typed: bool = True) -> None:
        """Parse the ONNX file into a network definition (strongly typed unless asked otherwise)."""
        import tensorrt as trt

        self.onnx = read_onnx_info(onnx_path)
        check_buildable(self.onnx)
        self.nms_warnings = check_nms_box_limit(
            load_onnx(self.onnx.path, load_external_data=False), self.compute_capability, source=str(self.onnx.path)
        )
        creation = trt.NetworkDefinitionCreationFlag
        if strongly_typed:
            flags = 1 << int(creation.STRONGLY_TYPED)
        elif not has_strong_typing(trt) and hasattr(creation, "EXPLICIT_BATCH"):
            flags = 1 << int(creation.EXPLICIT_BATCH)  # TensorRT 8.x needs it; 10.x ignores it; 11 drops it
        else:
            flags = 0
        self.strongly_typed = strongly_typed
        self.network = self.builder.create_network(flags)
        self.parser = trt.OnnxParser(self.network, self.trt_logger)
        if not self.parser.parse_from_file(str(self.onnx.path.resolve())):
            errors = [str(self.parser.get_error(i)) for i in range(self.parser.num_errors)]
            raise BuildError(f"{self.onnx.path}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(errors))

        net = self.network
        inputs = [net.get_input(i) for i in range(net.num_inputs)]
        names = [t.name for t in inputs]
        if names != [INPUT_NAME]:
            raise ContractError(f"{self.onnx.path}: graph inputs {names}, the contract has exactly [{INPUT_NAME!r}]")
        for t in inputs + [net.get_output(i) for i in range(net.num_outputs)]:
            log.info("%s %r shape %s dtype %s", "input" if t.is_network_input else "output", t.name, tensorrt_dims(t.shape), t.dtype)

    def create_engine(
        self,
        out_path: str | Path,
        *,
        min_batch: int = 1,
        opt_batch: int = 1,
        max_batch: int = 8,
        timing_cache: str | Path | None = None,
        weak_typing_precision: str | None = None,
        calibration_images: Any = None,
        calibration_cache: str | Path | None = None,
        version_compatible: bool = False,
    ) -> Path:
        """Build and write the engine and its sidecar; return the engine path. version_compatible=True sets
        BuilderFlag.VERSION_COMPATIBLE (the engine then loads on later TensorRT versions, see
        df2infer.artifact.engine_version_problem) and serializes the plugin libraries the parser used into it
        (config.plugins_to_serialize), and records both in the sidecar."""
        import tensorrt as trt

        if self.network is None or self.onnx is None:
            raise BuildError("create_network() first")
        contract = self.onnx.contract
        chw = (3, contract.input_height, contract.input_width)
        in_shape = tensorrt_dims(self.network.get_input(0).shape)
        if tuple(in_shape[1:]) != chw:
            raise ContractError(f"{self.onnx.path}: input {INPUT_NAME} is {in_shape}, contract says [B, *{chw}]")
        if in_shape[0] >= 0 and not (min_batch == opt_batch == max_batch == in_shape[0]):
            raise BuildError(
                f"{self.onnx.path}: the graph's batch is fixed at {in_shape[0]}; export it with a dynamic "
                f"batch or build with min=opt=max={in_shape[0]}"
            )
        engine_path = Path(out_path)
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        cfg = self.config

        profile = self.builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, trt.Dims([min_batch, *chw]), trt.Dims([opt_batch, *chw]), trt.Dims([max_batch, *chw]))
        cfg.add_optimization_profile(profile)

        self.version_compatible = bool(version_compatible)
        if self.version_compatible:
            cfg.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
            # A version-compatible engine cannot use the plugins of the TensorRT that runs it: the plugin libraries
            # the parser used (RoiAlign -> ROIAlign_TRT from the VC plugin library) travel inside the engine, as
            # NvOnnxParser.h's getUsedVCPluginLibraries says and trtexec does.
            assert self.parser is not None
            self.vc_plugin_libraries = [str(p) for p in self.parser.get_used_vc_plugin_libraries()]
            if self.vc_plugin_libraries:
                cfg.plugins_to_serialize = self.vc_plugin_libraries
                log.info("serializing plugin libraries into the engine: %s", ", ".join(self.vc_plugin_libraries))
        precision = contract.precision
        calibrator = None
        if weak_typing_precision is not None:
            precision = weak_typing_precision
            if precision in ("fp16", "int8"):
                cfg.set_flag(trt.BuilderFlag.FP16)
            if precision == "int8":
                cfg.set_flag(trt.BuilderFlag.INT8)
                calibrator = self._calibrator(chw, calibration_images, calibration_cache)
                if calibrator is not None:
                    cfg.int8_calibrator = calibrator
        log.info(
            "building %s engine %s (%s, batch %d/%d/%d) on %s (sm %s)",
            precision,
            engine_path,
            "strongly typed" if self.strongly_typed else "weakly typed",
            min_batch,
            opt_batch,
            max_batch,
            self.gpu_name,
            self.compute_capability,
        )

        cache_path = Path(timing_cache) if timing_cache is not None else None
        if cache_path is not None:
            data = cache_path.read_bytes() if cache_path.is_file() else b""
            cache = cfg.create_timing_cache(data)
            if not cfg.set_timing_cache(cache, False):
                log.warning("timing cache %s does not match this TensorRT/GPU; starting a new one", cache_path)
                cfg.set_timing_cache(cfg.create_timing_cache(b""), False)
            elif data:
                log.info("using timing cache %s", cache_path)

        try:
            serialized = self.builder.build_serialized_network(self.network, cfg)
        finally:
            if calibrator is not None:
                calibrator.free()
        if serialized is None:
            raise BuildError(f"{self.onnx.path}: TensorRT failed to build the engine (see its log above)")

        tmp = engine_path.with_name(engine_path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(memoryview(serialized))
        os.replace(tmp, engine_path)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(memoryview(cfg.get_timing_cache().serialize()))
            log.info("saved timing cache %s", cache_path)

        meta = engine_sidecar_meta(
            self.onnx,
            precision=precision,
            max_batch=max_batch,
            profile={"min": min_batch, "opt": opt_batch, "max": max_batch},
            tensorrt_version=str(trt.__version__),
            version_compatible=self.version_compatible,
            gpu_name=self.gpu_name,
            compute_capability=self.compute_capability,
            strongly_typed=self.strongly_typed,
            nms_warnings=self.nms_warnings,
        )
        if self.version_compatible:
            meta["vc_plugin_libraries"] = list(self.vc_plugin_libraries)
        sidecar = write_engine_sidecar(engine_path, meta)
        log.info("wrote %s and %s", engine_path, sidecar)
        return engine_path

    def _calibrator(self, chw: tuple[int, int, int], images: Any, cache_file: str | Path | None) -> Any:
        import tensorrt as trt

        assert self.onnx is not None
        cache = CalibrationCache(cache_file)
        if self.onnx.has_qdq:
            log.info("%s has Q/DQ nodes: explicitly quantized, no calibrator", self.onnx.path)
            return None
        if images is None and cache.read() is None:
            raise BuildError(
                "weakly typed int8 from a graph without Q/DQ nodes needs calibration_images, or an "
                f"existing calibration_cache (got {cache_file})"
            )
        batches = CalibrationBatches(images, self.onnx.contract) if images is not None else None
        calibrator = make_entropy_calibrator(batches, cache)
        if hasattr(self.config, "set_calibration_profile"):  # dynamic batch: calibrate at one fixed shape
            bs = batches.batch_size if batches is not None else 1
            cal = self.builder.create_optimization_profile()
            shape = trt.Dims([bs, *chw])
            cal.set_shape(INPUT_NAME, shape, shape, shape)
            self.config.set_calibration_profile(cal)
        return calibrator


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 8,
    workspace_gib: float = 2.0,
    timing_cache: str | Path | None = None,
    weak_typing_precision: str | None = None,
    calibration_images: Any = None,
    calibration_cache: str | Path | None = None,
    verbose: bool = False,
    version_compatible: bool = False,
) -> Path:
    """Build `<out>.engine` (+ `<out>.engine.json`) from an exported ONNX file; return the engine path.

    Strongly typed by default: the ONNX file's own types decide the precision. `weak_typing_precision`
    ('fp32' | 'fp16' | 'int8') selects the legacy builder flags, only where the installed TensorRT still has
    them; 'int8' calibrates with `calibration_images` (array / .npy / image directory / paths) unless the graph
    is Q/DQ or `calibration_cache` already exists. `out_path` ending in .engine, .plan or .trt is used as given,
    otherwise `.engine` is appended.
    """
    if not (
        isinstance(min_batch, int)
        and isinstance(opt_batch, int)
        and isinstance(max_batch, int)
        and 1 <= min_batch <= opt_batch <= max_batch
    ):
        raise ValueError(f"batch profile min={min_batch} opt={opt_batch} max={max_batch}: need 1 <= min <= opt <= max")
    if not workspace_gib > 0:
        raise ValueError(f"workspace_gib={workspace_gib}: must be > 0")
    if weak_typing_precision is not None and weak_typing_precision not in WEAK_PRECISIONS:
        raise ValueError(f"weak_typing_precision={weak_typing_precision!r}: expected None or one of {WEAK_PRECISIONS}")
    if weak_typing_precision != "int8" and (calibration_images is not None or calibration_cache is not None):
        raise ValueError(
            "calibration_images / calibration_cache only apply to weak_typing_precision='int8' "
            "(strongly typed INT8 engines are built from the Q/DQ ONNX, calibrated at export)"
        )
    out = Path(out_path)
    if out.suffix not in ENGINE_SUFFIXES:
        out = out.with_name(out.name + ".engine")

    require_tensorrt()  # the clear install message, before anything else needs TensorRT
    import tensorrt as trt

    if weak_typing_precision is not None:
        problem = weak_typing_problem(trt, weak_typing_precision)
        if problem is not None:
            raise WeakTypingUnavailable(problem)
    elif not has_strong_typing(trt):
        raise BuildError(
            f"TensorRT {trt.__version__} has no strongly typed networks (NetworkDefinitionCreationFlag."
            "STRONGLY_TYPED); on such a version (e.g. JetPack 5's TensorRT 8.5) pass weak_typing_precision "
            "('fp32', 'fp16', or 'int8' with calibration or a Q/DQ graph)"
        )
    if not Path(onnx_path).is_file():
        raise FileNotFoundError(f"{onnx_path}: no such ONNX file")

    builder = EngineBuilder(workspace_gib=workspace_gib, verbose=verbose)
    builder.create_network(onnx_path, strongly_typed=weak_typing_precision is None)
    return builder.create_engine(
        out,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        timing_cache=timing_cache,
        weak_typing_precision=weak_typing_precision,
        calibration_images=calibration_images,
        calibration_cache=calibration_cache,
        version_compatible=version_compatible,
    )


__all__ = [
    "BuildError",
    "CalibrationBatches",
    "CalibrationCache",
    "EngineBuilder",
    "NmsCandidates",
    "OnnxInfo",
    "TensorRTUnavailable",
    "WeakTypingUnavailable",
    "build_engine",
    "check_buildable",
    "check_nms_box_limit",
    "make_entropy_calibrator",
    "nms_box_limit",
    "nms_candidates",
    "read_onnx_info",
    "weak_typing_problem",
]
