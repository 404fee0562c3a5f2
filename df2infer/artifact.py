"""Model artifacts on disk: the one reader/writer of what travels with a model file.

Two kinds of artifact (docs/design.md, "The artifact"):
  ONNX (`.onnx`)                the contract is a JSON string in metadata_props[METADATA_KEY]
  TensorRT engine (ENGINE_SUFFIXES)  the contract, TensorRT version (and whether the engine is VERSION_COMPATIBLE),
                                GPU and build facts are in a JSON sidecar `<engine>.json` next to it, e.g.
                                `model.engine` -> `model.engine.json` (engine_sidecar_meta builds it,
                                check_engine_compatibility applies TensorRT's version rule to it)
Both the exporter (df2infer_export) and the runtime (df2infer.backends, `df2infer info`) read and write
them only through this module, so the format has one definition.

This module imports no onnx / onnxruntime / tensorrt at import time (the CPU runtime needs only
onnxruntime; `onnx` is imported by the functions that parse an ONNX file).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from df2infer.contract import METADATA_KEY, Contract, ContractError
from df2infer.errors import ModelError

if TYPE_CHECKING:
    import onnx

ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # the suffixes df2infer.load dispatches to TensorRT
SIDECAR_SUFFIX = ".json"
# What an engine sidecar must hold for the runtime to load the engine.
SIDECAR_REQUIRED_KEYS = ("contract", "tensorrt_version", "compute_capability")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")

_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


class ModelLoadError(ModelError, RuntimeError):
    """A model file that cannot be loaded (missing, truncated, not the expected format); names the path."""


class EngineCompatibilityError(ModelLoadError):
    """An engine built for another GPU architecture or another TensorRT version than the ones here."""


def is_engine_path(path: str | os.PathLike) -> bool:
    """True for a TensorRT engine file name (ENGINE_SUFFIXES, any case)."""
    return os.fspath(path).lower().endswith(ENGINE_SUFFIXES)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (the provenance recorded in artifacts)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ ONNX
def load_onnx(path: str | os.PathLike, *, load_external_data: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file; FileNotFoundError if absent, ModelLoadError naming it if it is not ONNX."""
    import onnx

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: no such ONNX file")
    try:
        model = onnx.load(p, load_external_data=load_external_data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeWarning, ... depending on the damage
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"{p}: cannot read as ONNX (truncated, corrupt or not ONNX): {msg}") from None
    if model.ir_version == 0 and not model.graph.node:  # protobuf parses an empty file as an empty message
        raise ModelLoadError(f"{p}: cannot read as ONNX (truncated, corrupt or not ONNX): no IR version and no graph")
    return model


def onnx_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """metadata_props as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def contract_from_metadata(metadata: Mapping[str, str], source: str) -> Contract:
    """The contract in an artifact's metadata map (ONNX metadata_props, or ONNX Runtime's
    `session.get_modelmeta().custom_metadata_map`); ContractError naming `source` when absent or bad."""
    return Contract.from_metadata(metadata, source=source)


def read_onnx_contract(model: str | os.PathLike | onnx.ModelProto, source: str | None = None) -> Contract:
    """The contract of an ONNX model (a path or a loaded ModelProto)."""
    if isinstance(model, (str, os.PathLike)):
        source = source or os.fspath(model)
        model = load_onnx(model, load_external_data=False)
    return contract_from_metadata(onnx_metadata(model), source or "<model>")


def write_onnx_metadata(model: onnx.ModelProto, props: Mapping[str, str]) -> None:
    """Replace the model's metadata_props with `props` (in order)."""
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)


def write_onnx_contract(model: onnx.ModelProto, contract: Contract, source: str = "<model>") -> None:
    """Check `contract` and store it as the model's metadata, keeping other metadata keys."""
    contract.check(source)
    props = {k: v for k, v in onnx_metadata(model).items() if k != METADATA_KEY}
    props[METADATA_KEY] = contract.to_json()
    write_onnx_metadata(model, props)


def has_qdq(model: onnx.ModelProto) -> bool:
    """QuantizeLinear/DequantizeLinear nodes: an explicitly quantized (INT8 Q/DQ) graph."""
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


# INT8 facts an INT8 artifact's contract records in its `model` dict (df2infer_export.precision writes them):
# the span of its INT8 weight codes (the runtime refuses weights that would saturate on this CPU:
# df2infer.cpu_features) and its activation type: "int8" (symmetric, TensorRT's form) or "uint8" (ONNX
# Runtime's CPU form, which TensorRT cannot build).
INT8_WEIGHT_RANGE_KEY = "int8_weight_range"
INT8_ACTIVATIONS_KEY = "int8_activations"


def int8_weight_range(contract: Contract, source: str = "<contract>") -> tuple[int, int] | None:
    """(min, max) INT8 weight code recorded in an INT8 contract, or None when not recorded;
    ContractError naming `source` for a malformed value."""
    value = contract.model.get(INT8_WEIGHT_RANGE_KEY)
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise ContractError(f"{source}: model[{INT8_WEIGHT_RANGE_KEY!r}] is {value!r}, expected [min, max] integers")
    return int(value[0]), int(value[1])


def int8_activations(contract: Contract) -> str | None:
    """The INT8 activation type recorded in a contract ("int8" or "uint8"), None when not recorded."""
    value = contract.model.get(INT8_ACTIVATIONS_KEY)
    return None if value is None else str(value)


@dataclass(frozen=True)
class OnnxInfo:
    """What the engine builder needs to know about an exported ONNX file."""

    path: Path
    contract: Contract
    sha256: str
    has_qdq: bool  # explicitly quantized, no calibrator needed


def read_onnx_info(onnx_path: str | os.PathLike) -> OnnxInfo:
    """Contract, sha256 and Q/DQ presence of an exported ONNX file."""
    path = Path(onnx_path)
    model = load_onnx(path, load_external_data=False)
    contract = contract_from_metadata(onnx_metadata(model), str(path))
    return OnnxInfo(path=path, contract=contract, sha256=file_sha256(path), has_qdq=has_qdq(model))


def describe_onnx(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict], list[dict]]:
    """(summary, inputs, outputs) of an ONNX file without loading weights: summary has ir_version, opsets,
    producer, nodes and metadata; each input/output is {name, dtype, shape} (symbolic dims as names)."""
    model = load_onnx(path, load_external_data=False)

    def io(values) -> list[dict]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
            out.append({"name": v.name, "dtype": _ONNX_TYPES.get(t.elem_type, str(t.elem_type)), "shape": dims})
        return out

    inits = {i.name for i in model.graph.initializer}
    summary = {
        "ir_version": model.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "nodes": len(model.graph.node),
        "metadata": onnx_metadata(model),
    }
    return summary, io([i for i in model.graph.input if i.name not in inits]), io(model.graph.output)


# ------------------------------------------------------------------------------------------------ engines
def engine_sidecar_path(engine_path: str | os.PathLike) -> Path:
    """The one sidecar lookup rule: `model.engine` -> `model.engine.json`."""
    p = Path(engine_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def engine_sidecar_meta(
    onnx_info: OnnxInfo,
    *,
    precision: str,
    max_batch: int,
    profile: Mapping[str, int],
    tensorrt_version: str,
    version_compatible: bool,
    gpu_name: str,
    compute_capability: str,
    strongly_typed: bool,
    nms_warnings: Sequence[str] = (),
    built_at: str | None = None,
) -> dict[str, Any]:
    """The sidecar of an engine built from `onnx_info`: the ONNX contract with the engine's precision and
    max_batch, the TensorRT version and whether the engine is VERSION_COMPATIBLE (engine_version_problem reads
    both), the GPU it was built on (check_engine_compatibility), the build facts and the ONNX file's sha256."""
    contract = json.loads(onnx_info.contract.to_json())
    contract["precision"] = precision
    contract["max_batch"] = max_batch
    return {
        "contract": contract,
        "tensorrt_version": str(tensorrt_version),
        "version_compatible": bool(version_compatible),
        "gpu_name": gpu_name,
        "compute_capability": str(compute_capability),
        "precision": precision,
        "onnx_precision": onnx_info.contract.precision,
        "strongly_typed": bool(strongly_typed),
        "profile": dict(profile),
        "built_at": built_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "onnx_file": onnx_info.path.name,
        "onnx_sha256": onnx_info.sha256,
        "nms_warnings": list(nms_warnings),
    }


def write_engine_sidecar(engine_path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write the sidecar of `engine_path` (it must hold SIDECAR_REQUIRED_KEYS); return its path."""
    missing = [k for k in SIDECAR_REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{engine_path}: engine sidecar lacks {missing}")
    path = engine_sidecar_path(engine_path)
    path.write_text(json.dumps(dict(meta), indent=1) + "\n")
    return path


def read_engine_sidecar(engine_path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar's JSON object; ModelLoadError naming the file if it is missing or unreadable."""
    sidecar = engine_sidecar_path(engine_path)
    if not sidecar.is_file():
        raise ModelLoadError(
            f"{engine_path}: no sidecar {sidecar} next to the engine. TensorRT engines built by df2infer carry their "
            "contract, TensorRT version and GPU there; rebuild it with df2infer.engine.builder.build_engine "
            "(`df2infer export ... --engine`)."
        )
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{sidecar}: unreadable engine sidecar ({e})") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{sidecar}: engine sidecar is a {type(meta).__name__}, expected a JSON object")
    for key in SIDECAR_REQUIRED_KEYS:
        if key not in meta:
            raise ModelLoadError(f"{sidecar}: engine sidecar lacks {key!r}")
    return meta


def read_engine_contract(engine_path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Contract:
    """The contract in an engine's sidecar (read here unless `meta` is given)."""
    meta = read_engine_sidecar(engine_path) if meta is None else meta
    return Contract.from_json(json.dumps(meta["contract"]), source=str(engine_sidecar_path(engine_path)))


def _version_tuple(version: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); stops at the first part that is not a number ('10.3.0.post1' -> (10, 3, 0))."""
    parts = []
    for tok in str(version).split("."):
        if not tok.isdigit():
            break
        parts.append(int(tok))
    return tuple(parts)


def engine_is_version_compatible(meta: Mapping[str, Any]) -> bool:
    """The sidecar's `version_compatible`: the engine was built with BuilderFlag.VERSION_COMPATIBLE
    (absent in sidecars written before the key existed: False)."""
    return meta.get("version_compatible") is True


# Major-version steps a VERSION_COMPATIBLE engine survives (TensorRT's engine-compatibility documentation: TensorRT 8
# version-compatible engines run on 9 and 10, TensorRT 10 ones on 11; no other combination across majors).
CROSS_MAJOR_COMPATIBLE = frozenset({(8, 9), (8, 10), (10, 11)})


def engine_version_problem(built: str, installed: str, *, version_compatible: bool) -> str | None:
    """Why an engine built with TensorRT `built` cannot load on TensorRT `installed`, or None if it can.

    TensorRT's rule: a plain engine loads only on the exact version that built it (10.3.0.26 and 10.3.0.30
    differ); a VERSION_COMPATIBLE engine loads on the same major version, that version or newer, and across the
    major steps in CROSS_MAJOR_COMPATIBLE (10 -> 11, 8 -> 9/10); compatibility is forward only.
    """
    b, i = _version_tuple(built), _version_tuple(installed)
    if not b or not i:
        return f"cannot read the TensorRT versions (built {built!r}, installed {installed!r})"
    if not version_compatible:
        if b != i:
            return (
                "the engine was built without BuilderFlag.VERSION_COMPATIBLE, so it loads only on the exact TensorRT version that built it"
            )
        return None
    if b[0] != i[0]:
        if (b[0], i[0]) in CROSS_MAJOR_COMPATIBLE:
            return None
        steps = ", ".join(f"{x} -> {y}" for x, y in sorted(CROSS_MAJOR_COMPATIBLE))
        return f"a VERSION_COMPATIBLE engine loads on its own TensorRT major version or across {steps} only"
    if i < b:
        return "a VERSION_COMPATIBLE engine loads on the TensorRT that built it or a newer one, not an older one"
    return None


def check_engine_compatibility(
    meta: Mapping[str, Any], *, engine_path: str | os.PathLike, tensorrt_version: str, compute_capability: str, gpu_name: str = ""
) -> None:
    """Refuse an engine whose sidecar names another compute capability than this GPU's, or a TensorRT version
    it cannot load on (engine_version_problem)."""
    sidecar = engine_sidecar_path(engine_path)
    built_cc = str(meta["compute_capability"])
    if built_cc != str(compute_capability):
        built_on = f" ({meta['gpu_name']})" if meta.get("gpu_name") else ""
        here = f" ({gpu_name})" if gpu_name else ""
        raise EngineCompatibilityError(
            f"{engine_path}: built for compute capability {built_cc}{built_on} (per {sidecar}), but this GPU has "
            f"compute capability {compute_capability}{here}. TensorRT engines are specific to the GPU "
            "architecture: rebuild the engine on this device from the ONNX file."
        )
    built_trt = str(meta["tensorrt_version"])
    problem = engine_version_problem(built_trt, tensorrt_version, version_compatible=engine_is_version_compatible(meta))
    if problem is not None:
        raise EngineCompatibilityError(
            f"{engine_path}: built with TensorRT {built_trt} (per {sidecar}), but TensorRT {tensorrt_version} is "
            f"installed here: {problem}. Rebuild the engine with this TensorRT from the ONNX file."
        )


__all__ = [
    "ENGINE_SUFFIXES",
    "EngineCompatibilityError",
    "INT8_ACTIVATIONS_KEY",
    "INT8_WEIGHT_RANGE_KEY",
    "ModelLoadError",
    "ONNX_SUFFIX",
    "OnnxInfo",
    "SIDECAR_SUFFIX",
    "check_engine_compatibility",
    "contract_from_metadata",
    "describe_onnx",
    "engine_is_version_compatible",
    "engine_sidecar_meta",
    "engine_sidecar_path",
    "engine_version_problem",
    "file_sha256",
    "has_qdq",
    "int8_activations",
    "int8_weight_range",
    "is_engine_path",
    "load_onnx",
    "onnx_metadata",
    "read_engine_contract",
    "read_engine_sidecar",
    "read_onnx_contract",
    "read_onnx_info",
    "write_engine_sidecar",
    "write_onnx_contract",
    "write_onnx_metadata",
]
