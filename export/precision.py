"""Precision variants of the FP32 deploy graph (docs/design.md, "Precision lives in the graph").

    to_fp16(fp32_onnx, out, ...)                      mixed FP16 ONNX, sensitive ops kept FP32, I/O as the contract
    to_int8_qdq(fp32_onnx, out, calibration_images_dir, *, method=..., num_images=..., cache=...)
                                                      INT8 Q/DQ ONNX: symmetric (zero points 0), per-channel weights,
                                                      calibrated on real images, with a reusable calibration cache

Both copy the FP32 model's metadata and rewrite the contract's `precision` (and, for INT8, record
what stays float in `contract.model["int8_float_layers"]` etc.).

What stays FP32 in the FP16 graph
  op types: FP16_KEEP_OPS (NonMaxSuppression, RoiAlign, TopK and onnxconverter-common's defaults:
            Range, CumSum, Min, Max, the ML-domain ops); Resize/Upsample are *not* blocked (the FPN
            upsamples are on the heavy path and TensorRT runs them in FP16);
  node names starting with KEEP_FP32_NAME_PREFIXES ("box_decode/", "nms/", "postproc/"): the deploy
            graph names its box decoding, NMS and post-processing nodes with these prefixes.

What stays float in the INT8 graph (weights quantized: INT8_OP_TYPES = Conv, ConvTranspose, MatMul, Gemm)
  every other op type (RoiAlign, NonMaxSuppression, TopK, Resize, Sigmoid, Softmax, Exp, Gather*,
  Reshape, Concat, pooling, ...) runs in float, and Conv/ConvTranspose/MatMul/Gemm nodes whose name
  starts with one of KEEP_FP32_NAME_PREFIXES or `keep_float_name_prefixes`, or is listed in
  `keep_float_nodes` (default INT8_SENSITIVE_FLOAT_LAYERS, the layers the sensitivity analysis keeps);
  the Relu / Add / MaxPool / Resize nodes between quantized layers get Q/DQ too (INT8_CHAIN_OP_TYPES).
  The exact list for a given artifact is written into its contract:
  model["int8_float_layers"] (names of the heavy nodes left float) and model["int8_float_op_types"].
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from df2infer.artifact import INT8_ACTIVATIONS_KEY, INT8_WEIGHT_RANGE_KEY, file_sha256, read_onnx_contract, write_onnx_metadata
from df2infer.contract import METADATA_KEY, Contract

from .calibration import ImageFolderReader, list_calibration_images
from .lint import iter_graphs

log = logging.getLogger(__name__)

KEEP_FP32_NAME_PREFIXES: tuple[str, ...] = ("box_decode/", "nms/", "postproc/")
# FP16 also keeps Match R-CNN's matching head in FP32: in FP16 its embeddings lost 9 points of
# retrieval top-10 on the held-out synthetic split (0.494 against 0.585; FP32 head: 0.585).
FP16_KEEP_FP32_NAME_PREFIXES: tuple[str, ...] = KEEP_FP32_NAME_PREFIXES + ("/match_head/",)
FP16_KEEP_OPS: tuple[str, ...] = ("NonMaxSuppression", "RoiAlign", "TopK")
INT8_OP_TYPES: tuple[str, ...] = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# Ops between quantized layers that get Q/DQ too, so ONNX Runtime runs the chain in INT8 (QLinearConv ->
# QLinearAdd -> ...) instead of float islands, and TensorRT sees quantized residual adds. Only nodes
# all of whose data inputs come from quantized nodes (see _chain_nodes): never the post-processing.
INT8_CHAIN_OP_TYPES: tuple[str, ...] = ("Relu", "Add", "MaxPool", "Resize")
# Match R-CNN's deploy-graph layers the INT8 sensitivity analysis keeps float by default (benchmarks/
# int8_study.py; docs/int8.md): the box predictor (box AP -5.0 -> +0.4 points vs FP32 on 200 held-out
# images), then the box head's fc6/fc7 and the keypoint predictor's MatMul (landmarks). Names absent
# from a graph are ignored.
INT8_SENSITIVE_FLOAT_LAYERS: tuple[str, ...] = (
    "/box_predictor/cls_score/Gemm",
    "/box_predictor/bbox_pred/Gemm",
    "/box_head/fc6/Gemm",
    "/box_head/fc7/Gemm",
    "/keypoint_predictor/MatMul",
)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
CACHE_FORMAT = "df2infer.calibration_cache"
CACHE_VERSION = 1


# ---------------------------------------------------------------------------------------------------
# shared helpers


def _load(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else onnx.load(os.fspath(model))


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def _finish(source: onnx.ModelProto, converted: onnx.ModelProto, props: dict, contract: Contract, out, verify: bool) -> Path:
    """Embed the updated contract, check the I/O types against the source, save, and optionally run once."""
    props[METADATA_KEY] = contract.to_json()
    write_onnx_metadata(converted, props)
    _check_io_types(source, converted)
    path = _save(converted, out)
    if verify:
        _smoke_run(path, contract)
    return path


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of the graph and of its subgraphs."""
    return (node for g in iter_graphs(graph) for node in g.node)


def _ensure_node_names(model: onnx.ModelProto) -> None:
    used = {n.name for n in _all_nodes(model.graph) if n.name}
    for i, n in enumerate(_all_nodes(model.graph)):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)


def _save(model: onnx.ModelProto, out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() > 1_900_000_000:
        onnx.save(model, os.fspath(out), save_as_external_data=True, location=out.name + ".data")
    else:
        onnx.save(model, os.fspath(out))
    return out


def _ort_session(path: str | os.PathLike):
    import onnxruntime as ort

    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------------
# FP16


def to_fp16(
    fp32_onnx: str | os.PathLike | onnx.ModelProto,
    out: str | os.PathLike,
    *,
    keep_fp32_ops: Sequence[str] = FP16_KEEP_OPS,
    keep_fp32_name_prefixes: Sequence[str] = FP16_KEEP_FP32_NAME_PREFIXES,
    keep_fp32_nodes: Sequence[str] = (),
    verify: bool = True,
) -> Path:
    """Write a mixed-precision FP16 copy of the FP32 deploy graph to `out` and return its path.

    Weights and activations become FP16 except in the blocked op types (`keep_fp32_ops` plus
    onnxconverter-common's own default block list, minus Resize/Upsample), in nodes whose names start
    with one of `keep_fp32_name_prefixes`, and in `keep_fp32_nodes`; Cast nodes are inserted at the
    boundaries. Graph inputs and outputs keep their contract types (keep_io_types). All metadata is
    kept, the contract's precision becomes "fp16". With `verify`, the file is loaded and run once
    in ONNX Runtime (CPU) on a zero batch; ORT falls back to FP32 kernels (inserted casts) for ops
    it has no FP16 CPU kernel for.
    """
    from onnxconverter_common import float16

    model = _load(fp32_onnx)
    source = "<model>" if isinstance(fp32_onnx, onnx.ModelProto) else os.fspath(fp32_onnx)
    contract = read_onnx_contract(model, source)
    props = {p.key: p.value for p in model.metadata_props}
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never modify the caller's proto
    _ensure_node_names(model)

    op_block = (set(float16.DEFAULT_OP_BLOCK_LIST) - {"Resize", "Upsample"}) | set(keep_fp32_ops)
    node_block = {n.name for n in _all_nodes(model.graph) if _matches(n.name, keep_fp32_name_prefixes)}
    node_block |= set(keep_fp32_nodes)
    # Defaults of optional inputs (initializers named like a graph input, e.g. min_head_score) keep
    # their input's FP32 type: the converter would make them FP16, which no longer matches the input.
    input_names = {i.name for i in model.graph.input}
    defaults = [onnx.TensorProto.FromString(t.SerializeToString()) for t in model.graph.initializer if t.name in input_names]
    for t in [t for t in model.graph.initializer if t.name in input_names]:
        model.graph.initializer.remove(t)
    fp16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=sorted(op_block), node_block_list=sorted(node_block))
    fp16.graph.initializer.extend(defaults)
    _restore_fp32_outputs(model, fp16)
    _fix_resize_scales(fp16)
    contract.precision = "fp16"
    contract.model = dict(
        contract.model, fp16_fp32_ops=sorted(op_block & {n.op_type for n in _all_nodes(model.graph)}), fp16_fp32_nodes=sorted(node_block)
    )
    return _finish(model, fp16, props, contract, out, verify)


def _restore_fp32_outputs(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    """Work around onnxconverter-common 1.16 (keep_io_types): a graph output produced by a *blocked*
    node comes out FLOAT16 (the converter casts the blocked node's FP32 result to FP16 and then skips
    the output as already FP16). Put the FP32 result back: the trailing Cast-to-FP16 becomes an
    Identity (no FP32 -> FP16 -> FP32 rounding of boxes/scores); any other FP16 producer gets a Cast."""
    want = {o.name: o.type.tensor_type.elem_type for o in before.graph.output}
    g = after.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    for o in g.output:
        if want.get(o.name) != onnx.TensorProto.FLOAT or o.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
            continue
        producer = next(n for n in g.node if o.name in n.output)
        if producer.op_type == "Cast" and types.get(producer.input[0]) == onnx.TensorProto.FLOAT:
            producer.op_type = "Identity"
            del producer.attribute[:]
        else:
            k = list(producer.output).index(o.name)
            producer.output[k] = o.name + "/fp16"
            g.node.append(
                onnx.helper.make_node("Cast", [o.name + "/fp16"], [o.name], name=o.name + "/cast_fp32", to=onnx.TensorProto.FLOAT)
            )
        o.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        for v in g.value_info:
            if v.name == o.name:
                v.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    from onnxconverter_common.float16 import sort_topology

    sort_topology(g)


def _fix_resize_scales(model: onnx.ModelProto) -> None:
    """Resize/Upsample `scales` must stay tensor(float); the converter turns constant scales into
    FLOAT16 when it does not block Resize (which it does by default only for that reason)."""
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    new_nodes = []
    for node in g.node:
        idx = 2 if node.op_type == "Resize" else 1 if node.op_type == "Upsample" else None
        if idx is None or len(node.input) <= idx or not node.input[idx]:
            continue
        name = node.input[idx]
        if name in inits and inits[name].data_type == onnx.TensorProto.FLOAT16:
            arr = numpy_helper.to_array(inits[name]).astype(np.float32)
            new = name + "/fp32"
            if new not in inits:
                inits[new] = numpy_helper.from_array(arr, new)
                g.initializer.append(inits[new])
            node.input[idx] = new
        elif name in consts or types.get(name) == onnx.TensorProto.FLOAT16:
            new = name + "/fp32"
            new_nodes.append(onnx.helper.make_node("Cast", [name], [new], name=node.name + "/scales_fp32", to=onnx.TensorProto.FLOAT))
            node.input[idx] = new
    if new_nodes:
        g.node.extend(new_nodes)
        from onnxconverter_common.float16 import sort_topology

        sort_topology(g)
    used = {i for n in _all_nodes(g) for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    if len(keep) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(keep)


def _check_io_types(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    def types(vis):
        return {v.name: v.type.tensor_type.elem_type for v in vis}

    for kind in ("input", "output"):
        a, b = types(getattr(before.graph, kind)), types(getattr(after.graph, kind))
        if a != b:
            raise RuntimeError(f"precision conversion changed graph {kind} types: {a} -> {b}")


def _smoke_run(path: Path, contract: Contract) -> None:
    sess = _ort_session(path)
    x = np.full((1, 3, contract.input_height, contract.input_width), contract.pad_value, np.float32)
    sess.run(None, {sess.get_inputs()[0].name: x})


# ---------------------------------------------------------------------------------------------------
# INT8 (Q/DQ)


def images_digest(files: Sequence[Path], root: str | os.PathLike) -> str:
    """sha256 over (relative path, content sha256) of each calibration image, in order."""
    h = hashlib.sha256()
    for p in files:
        h.update(Path(p).relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(file_sha256(p).encode())
        h.update(b"\n")
    return h.hexdigest()


def calibration_cache_key(model_sha256: str, method: str, images_sha256: str, options: dict | None = None) -> str:
    opts = json.dumps(options or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{model_sha256}|{method}|{images_sha256}|{opts}".encode()).hexdigest()[:32]


def _read_cache(cache: Path) -> dict:
    if not cache.is_file():
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": {}}
    try:
        raw = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError) as e:
        log.warning("calibration cache %s unreadable (%s); recalibrating and rewriting it", cache, e)
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": {}}
    if raw.get("format") != CACHE_FORMAT or raw.get("version") != CACHE_VERSION or not isinstance(raw.get("entries"), dict):
        log.warning("calibration cache %s has another format/version; recalibrating and rewriting it", cache)
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": {}}
    return raw


def _write_cache(cache: Path, data: dict) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".calib_", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, cache)


def to_int8_qdq(
    fp32_onnx: str | os.PathLike,
    out: str | os.PathLike,
    calibration_images_dir: str | os.PathLike,
    *,
    method: str = "minmax",
    num_images: int | None = 200,
    cache: str | os.PathLike | None = None,
    percentile: float = 99.999,
    hist_bins: int = 2048,
    keep_float_name_prefixes: Sequence[str] = KEEP_FP32_NAME_PREFIXES,
    keep_float_nodes: Sequence[str] = INT8_SENSITIVE_FLOAT_LAYERS,
    op_types: Sequence[str] = INT8_OP_TYPES,
    chain_op_types: Sequence[str] = INT8_CHAIN_OP_TYPES,
    weight_bits: int = 7,
    activations: str = "int8",
    verify: bool = True,
    _reader_hook=None,
) -> Path:
    """Write an INT8 Q/DQ copy of the FP32 deploy graph to `out` and return its path.

    Calibrates on up to `num_images` jpg/png images from `calibration_images_dir` (sorted by path),
    letterboxed as the runtime does, with `method` ("minmax", "entropy" or "percentile" at
    `percentile`). Quantization: onnxruntime.quantization.quantize_static, QDQ format, QInt8
    activations and weights, symmetric (all zero points 0), per-channel weights, biases left in
    float (TensorRT's DequantizeLinear takes INT8 only), Q/DQ only around `op_types`.

    `weight_bits` 7 (default) stores the weights in [-64, 64] (ORT's reduce_range): still symmetric
    INT8 for TensorRT, and the only weights whose products ONNX Runtime's x86 kernels cannot
    saturate on CPUs without VNNI (u8 x s8 pairs summed into int16: 2 * 255 * 64 < 32767; with
    8-bit weights, 2 * 255 * 127 overflows). 8 keeps [-127, 127]: right on VNNI x86, ARM and
    TensorRT only; the runtime refuses such a file on x86 without VNNI (df2infer.cpu_features).
    `activations` "int8" (symmetric, zero point 0: TensorRT's form) or "uint8" (asymmetric: ONNX
    Runtime only; Relu folds into the quantization range).

    `cache` (a JSON file) keeps the computed tensor ranges keyed by sha256(model file) + method +
    digest of the image list (names and contents) + options; several keys may share one file. On a
    hit no image is read and no calibration runs. Either way the ranges reach ORT's QDQ quantizer
    through quantize_static's calibration_cache_path (calibration itself is ORT's create_calibrator,
    run here so the entropy/percentile histogram size can be set: `hist_bins`, 2048 like TensorRT;
    entropy calibration takes seconds per tensor at that size). The contract's precision becomes "int8" and its
    `model` dict records int8_float_layers / int8_float_op_types / int8_calibration.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}, expected one of {CALIBRATION_METHODS}")
    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits {weight_bits!r}, expected 7 (portable: no int16 saturation on x86 without VNNI) or 8")
    if activations not in ("int8", "uint8"):
        raise ValueError(f"activations {activations!r}, expected 'int8' (symmetric, TensorRT) or 'uint8' (asymmetric, ONNX Runtime)")
    symmetric_act = activations == "int8"
    fp32_path = Path(fp32_onnx)
    model = onnx.load(os.fspath(fp32_path))
    contract = read_onnx_contract(model, os.fspath(fp32_path))
    props = {p.key: p.value for p in model.metadata_props}
    _ensure_node_names(model)
    input_name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})

    names = {n.name for n in model.graph.node}
    exclude = sorted(
        {n.name for n in model.graph.node if n.op_type in op_types and _matches(n.name, keep_float_name_prefixes)}
        | (set(keep_float_nodes) & names)
    )
    heavy = {n.name for n in model.graph.node if n.op_type in op_types} - set(exclude)
    chain = _chain_nodes(model.graph, heavy, chain_op_types)
    all_types = sorted(set(op_types) | {n.op_type for n in model.graph.node if n.name in chain})
    root = Path(calibration_images_dir)
    files = list_calibration_images(root, num_images)
    model_sha = file_sha256(fp32_path)
    img_sha = images_digest(files, root)
    # Calibrator options. quantize_static does not pass num_bins through, and ORT's entropy default
    # (128 bins, 128 quantized bins) leaves no threshold to choose, i.e. degenerates to min/max; so the
    # calibrator is run here with TensorRT's entropy settings (2048 bins, 128 quantized bins).
    calib_opts: dict = {"symmetric": symmetric_act}
    if method == "entropy":
        calib_opts.update(num_bins=hist_bins, num_quantized_bins=128)
    elif method == "percentile":
        calib_opts.update(num_bins=hist_bins, percentile=percentile)
    options = {k: v for k, v in calib_opts.items() if k != "symmetric"}
    if all_types != sorted(INT8_OP_TYPES):  # ranges are collected for the outputs of these op types
        options["op_types"] = all_types
    if not symmetric_act:  # asymmetric ranges are other ranges: another cache key
        options["symmetric"] = False
    key = calibration_cache_key(model_sha, method, img_sha, options)

    ort_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[
        method
    ]
    extra = {
        "ActivationSymmetric": symmetric_act,
        "WeightSymmetric": True,
        "QuantizeBias": False,  # TensorRT's DequantizeLinear takes INT8/FP8/INT4 only, not an INT32 bias
    }

    cache_path = Path(cache) if cache is not None else None
    cache_data = _read_cache(cache_path) if cache_path is not None else None
    entry = cache_data["entries"].get(key) if cache_data is not None else None
    reader = ImageFolderReader(files, contract, input_name)
    if _reader_hook is not None:
        _reader_hook(reader)

    with tempfile.TemporaryDirectory(prefix="df2infer-int8-") as tmp:
        named = Path(tmp) / "named.onnx"
        onnx.save(model, os.fspath(named))  # node names filled in, so nodes_to_exclude can name them
        ranges_file = Path(tmp) / "ranges.json"
        if entry is not None:
            ranges_file.write_text(json.dumps(entry["ranges"]))
            log.info("calibration cache hit (%s, key %s): no calibration run", cache_path, key)
        else:
            _calibrate(named, reader, ort_method, calib_opts, all_types, ranges_file, Path(tmp) / "augmented.onnx")
        # The ranges always reach the quantizer through ORT's own cache path (no reader, no calibration).
        quantize_static(
            os.fspath(named),
            os.fspath(Path(tmp) / "q.onnx"),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=all_types,
            nodes_to_quantize=sorted(heavy | chain),
            per_channel=True,
            reduce_range=weight_bits == 7,  # weights only (ORT ignores it for activations in QDQ)
            activation_type=QuantType.QInt8 if symmetric_act else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=ort_method,
            extra_options=extra,
            calibration_cache_path=os.fspath(ranges_file),
        )
        if entry is None and cache_path is not None:
            cache_data["entries"][key] = {
                "model_sha256": model_sha,
                "method": method,
                "options": options,
                "images_sha256": img_sha,
                "num_images": len(files),
                "images": [p.relative_to(root).as_posix() for p in files],
                "ranges": json.loads(ranges_file.read_text()),
            }
            _write_cache(cache_path, cache_data)
        q = onnx.load(os.fspath(Path(tmp) / "q.onnx"))

    float_layers, float_ops = _float_parts(q, op_types)
    contract.precision = "int8"
    contract.model = dict(
        contract.model,
        int8_float_layers=float_layers,
        int8_float_op_types=float_ops,
        int8_quantized_op_types=sorted(op_types),
        int8_chain_nodes=sorted(chain),
        **{INT8_WEIGHT_RANGE_KEY: list(weight_range(q)), INT8_ACTIVATIONS_KEY: activations},
        int8_calibration={
            "method": method,
            **options,
            "num_images": len(files),
            "images_sha256": img_sha,
            "cache_key": key,
            "cache_hit": entry is not None,
        },
    )
    return _finish(model, q, props, contract, out, verify)


def _calibrate(model_path: Path, reader, method, calib_opts: dict, op_types: list[str], ranges_file: Path, augmented_path: Path) -> None:
    """Run ORT's calibrator over `reader` and save the tensor ranges (ORT's JSON cache format)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        model_path, op_types, augmented_model_path=os.fspath(augmented_path), calibrate_method=method, extra_options=dict(calib_opts)
    )
    if method == CalibrationMethod.MinMax:
        calibrator.collect_data(reader)
    else:
        # One image per call: ORT's histogram collector stacks each tensor's values over the batches
        # of one call with np.asarray, which fails on tensors whose shape varies per image (the gated
        # heads' rows); across calls it merges histograms, so per-image calls give the same result.
        for i in range(len(reader)):
            reader.set_range(i, i + 1)
            calibrator.collect_data(reader)
    if reader.served == 0:
        raise ValueError("calibration read no images")
    ranges = calibrator.compute_data()
    del calibrator
    save_tensors_data(ranges, ranges_file, smooth_quant=False)


def _float_parts(q: onnx.ModelProto, op_types: Sequence[str]) -> tuple[list[str], list[str]]:
    """(names of op_types nodes whose weights are not fed by a DequantizeLinear, op types left in float)."""
    produced_by_dq = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    float_layers = sorted(n.name for n in q.graph.node if n.op_type in op_types and not (len(n.input) > 1 and n.input[1] in produced_by_dq))
    float_ops = sorted({n.op_type for n in q.graph.node} - set(op_types) - {"QuantizeLinear", "DequantizeLinear"})
    return float_layers, float_ops


def weight_range(q: onnx.ModelProto) -> tuple[int, int]:
    """(min, max) of the INT8 weight codes of a Q/DQ model: INT8 initializers (more than 1-D) feeding
    a DequantizeLinear, and float initializers that a QuantizeLinear to INT8 turns into codes at
    load time (some tools store weights that way; ONNX Runtime folds them into the same codes)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in q.graph.initializer}
    lo, hi = 0, 0
    for n in q.graph.node:
        t = inits.get(n.input[0]) if n.op_type in ("DequantizeLinear", "QuantizeLinear") else None
        if t is None or len(t.dims) < 2:
            continue
        if n.op_type == "DequantizeLinear" and t.data_type == onnx.TensorProto.INT8:
            w = numpy_helper.to_array(t).astype(np.int64)
        elif (
            n.op_type == "QuantizeLinear"
            and t.data_type == onnx.TensorProto.FLOAT
            and len(n.input) > 2
            and n.input[2] in inits
            and inits[n.input[2]].data_type == onnx.TensorProto.INT8
        ):
            scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            w = numpy_helper.to_array(t).astype(np.float64)
            if scale.ndim == 1 and scale.size > 1:
                scale = scale.reshape([-1 if d == axis else 1 for d in range(w.ndim)])
            w = np.clip(np.rint(w / scale), -128, 127).astype(np.int64)
        else:
            continue
        lo, hi = min(lo, int(w.min())), max(hi, int(w.max()))
    return lo, hi


def _chain_nodes(graph: onnx.GraphProto, quantized: set[str], chain_op_types: Sequence[str]) -> set[str]:
    """Names of the `chain_op_types` nodes whose data inputs (Add: both; others: the first) are all
    produced by `quantized` nodes or by chain nodes found before them (graph order is topological)."""
    producer = {o: n.name for n in graph.node for o in n.output}
    inside = set(quantized)
    chain: set[str] = set()
    for n in graph.node:
        if n.op_type not in chain_op_types or not n.input:
            continue
        data = list(n.input[:2]) if n.op_type == "Add" else [n.input[0]]
        if all(producer.get(i) in inside for i in data):
            chain.add(n.name)
            inside.add(n.name)
    return chain
