"""Checkpoint -> FP32 ONNX deploy graph with the contract embedded (docs/design.md, "The deploy graph").

    export_onnx(checkpoint, out_path, *, input_size=None, max_detections=50, num_proposals=None,
                opset=17, simplify=True, gate_heads=False) -> Path

gate_heads=True gives the CPU graph: a second graph input `min_head_score` (float32 [1], a real input, not
an initializer: OpenVINO would fold an input that is also an initializer away, and ONNX Runtime skips some
graph optimizations for it) and the heads run only on the detections at or above it (df2infer.contract). TensorRT
needs static heads (gate_heads=False): the gated row count is known only at run time.

Steps: build df2infer_export.deploy.DeployMatchRCNN; torch.onnx.export (TorchScript exporter, batch axis
dynamic); node renaming so box decoding / NMS / post-processing carry the `box_decode/`, `nms/`,
`postproc/` prefixes that df2infer_export.precision keeps in FP32; onnx.checker (full) and shape
inference; optional onnxslim, kept only if ONNX Runtime gives the same outputs before and after
on test inputs; df2infer_export.lint.check_onnx (the export fails on any error); the df2infer.contract
Contract in metadata_props. `model_or_checkpoint` may also be a MatchRCNN instance (tests).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

from df2infer.artifact import file_sha256, write_onnx_contract
from df2infer.contract import HEAD_SCORE_INPUT, INPUT_NAME, OUTPUT_NAMES, PAD_VALUE, Contract

from .contract_builder import build_contract
from .deploy import DeployMatchRCNN

log = logging.getLogger(__name__)

SCOPE_PREFIXES = ("box_decode", "nms", "postproc")
_SEG_RE = re.compile(r"^(box_decode|nms|postproc)(?:_(.+))?$")


class ExportError(RuntimeError):
    """The export produced a graph that fails the checker, the lint or the contract."""


def rename_scoped_nodes(model: onnx.ModelProto) -> int:
    """Give the deploy graph's box decoding / NMS / post-processing nodes the prefixes that
    df2infer_export.precision keys on: the innermost scope named box_decode*, nms* or postproc* becomes the
    prefix, the other scope suffixes follow: '/postproc_rpn/box_decode_1/Mul_2' ->
    'box_decode/rpn/1/Mul_2', '/nms_det/NonMaxSuppression' -> 'nms/det/NonMaxSuppression',
    '/postproc_out/Sigmoid' -> 'postproc/out/Sigmoid'. Returns how many nodes were renamed."""
    n = 0
    taken = {node.name for node in model.graph.node}
    for node in model.graph.node:
        segs = node.name.strip("/").split("/")
        hits = [(i, _SEG_RE.match(seg)) for i, seg in enumerate(segs[:-1])]
        hits = [(i, m) for i, m in hits if m]
        if not hits:
            continue
        j, mj = hits[-1]
        matched = dict(hits)
        parts = []
        for i, seg in enumerate(segs):
            if i == j:
                if mj.group(2):
                    parts.append(mj.group(2))
            elif i in matched:
                if matched[i].group(2):
                    parts.append(matched[i].group(2))
            else:
                parts.append(seg)
        new = f"{mj.group(1)}/" + "/".join(parts)
        k = 1
        base = new
        while new in taken:
            new, k = f"{base}__{k}", k + 1
        taken.add(new)
        node.name = new
        n += 1
    return n


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def test_inputs(height: int, width: int, batches=(1, 3), seed: int = 0) -> list[np.ndarray]:
    """Deterministic float32 test batches: smooth blobs plus noise, 0..255."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for b in batches:
        imgs = np.empty((b, 3, height, width), np.float32)
        for i in range(b):
            img = np.full((3, height, width), PAD_VALUE, np.float32)
            for _ in range(4):
                cx, cy = rng.uniform(0, width), rng.uniform(0, height)
                rx, ry = rng.uniform(0.1, 0.4) * width, rng.uniform(0.1, 0.4) * height
                inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
                img[:, inside] = rng.uniform(0, 255, size=(3, 1))
            imgs[i] = np.clip(img + rng.normal(0, 8, img.shape), 0, 255)
        out.append(imgs)
    return out


def ort_run(path_or_bytes, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
    """Run a deploy graph in ONNX Runtime (CPU). A gated-head graph gets `min_head_score` when given,
    and 0.0 (every detection) when not; files of the older form, where the input was an overridable
    initializer with default 0.0, get it only when given."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = path_or_bytes if isinstance(path_or_bytes, (bytes, str)) else os.fspath(path_or_bytes)
    s = ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: batch}
    required = {i.name for i in s.get_inputs()}
    if HEAD_SCORE_INPUT in required or (
        min_head_score is not None and HEAD_SCORE_INPUT in {i.name for i in s.get_overridable_initializers()}
    ):
        feed[HEAD_SCORE_INPUT] = np.array([min_head_score or 0.0], np.float32)
    return dict(zip(OUTPUT_NAMES, s.run(list(OUTPUT_NAMES), feed)))


def compare_outputs(a: dict, b: dict, *, atol: float = 1e-4, rtol: float = 1e-4) -> list[str]:
    """Differences between two output dicts: counts and labels exactly, the rest within atol + rtol*|b|."""
    probs = []
    for name in OUTPUT_NAMES:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.shape != y.shape:
            probs.append(f"{name}: shape {x.shape} vs {y.shape}")
        elif name in ("num_dets", "labels"):
            if not np.array_equal(x, y):
                probs.append(f"{name}: {int((x != y).sum())} values differ")
        elif not np.allclose(x, y, atol=atol, rtol=rtol):
            probs.append(f"{name}: max |diff| {float(np.abs(x.astype(np.float64) - y).max()):.3g}")
    return probs


def _torch_export(deploy: DeployMatchRCNN, path: Path, opset: int, example: torch.Tensor) -> None:
    dyn = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}}
    args: tuple = (example,)
    names = [INPUT_NAME]
    if deploy.gate_heads:
        args, names = (example, torch.zeros(1)), [INPUT_NAME, HEAD_SCORE_INPUT]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about python ints from shapes (all static here)
        with torch.no_grad():
            torch.onnx.export(
                deploy,
                args,
                os.fspath(path),
                dynamo=False,
                opset_version=opset,
                input_names=names,
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dyn,
                do_constant_folding=True,
            )


def _simplify(model: onnx.ModelProto, inputs: list[np.ndarray], reference: list[dict]) -> tuple[onnx.ModelProto, str]:
    try:
        import onnxslim
    except ImportError:
        return model, "onnxslim not installed: not simplified"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(onnx.ModelProto.FromString(model.SerializeToString()))
    except Exception as e:  # noqa: BLE001
        return model, f"onnxslim failed ({type(e).__name__}: {e}): not simplified"
    if slim is None:
        return model, "onnxslim returned nothing: not simplified"
    data = slim.SerializeToString()
    for x, ref in zip(inputs, reference):
        try:
            got = ort_run(data, x)
        except Exception as e:  # noqa: BLE001
            return model, f"simplified graph does not run in ONNX Runtime ({type(e).__name__}): not simplified"
        probs = compare_outputs(got, ref, atol=1e-5, rtol=1e-5)
        if probs:
            return model, f"simplified graph changes the outputs ({'; '.join(probs)}): not simplified"
    before, after = len(model.graph.node), len(slim.graph.node)
    return slim, f"onnxslim: {before} -> {after} nodes, outputs unchanged on {len(inputs)} test batches"


def deploy_contract(deploy: DeployMatchRCNN, *, checkpoint_info: dict, max_batch: int, opset: int) -> Contract:
    """The contract of an exported deploy graph (contract_builder.build_contract with the deploy's sizes)."""
    return build_contract(
        deploy.model,
        input_size=(deploy.height, deploy.width),
        max_detections=deploy.max_detections,
        max_batch=max_batch,
        score_threshold=deploy.score_thresh,
        nms_iou=deploy.nms_thresh,
        gated_heads=deploy.gate_heads,
        model_info={
            "num_proposals": deploy.num_proposals,
            "rpn_pre_nms_top_n": deploy.pre_nms,
            "opset": opset,
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "exporter": f"torch {torch.__version__} (TorchScript ONNX exporter)",
            **checkpoint_info,
        },
    )


def export_onnx(
    model_or_checkpoint,
    out_path,
    *,
    input_size: int | tuple[int, int] | None = None,
    max_detections: int = 50,
    num_proposals: int | None = None,
    opset: int = 17,
    simplify: bool = True,
    max_batch: int = 8,
    trained_on: str | None = None,
    gate_heads: bool = False,
    report: dict | None = None,
) -> Path:
    """Export a checkpoint (path) or a MatchRCNN to `out_path`; returns the path. `report`, when a
    dict, receives timings, the simplification outcome, the lint problems and the op histogram."""
    t0 = time.perf_counter()
    out = Path(out_path)
    if isinstance(model_or_checkpoint, torch.nn.Module):
        model = model_or_checkpoint
        info = {"checkpoint": None, "checkpoint_sha256": None, "iterations": None, "trained_on": trained_on}
    else:
        from .checkpoint import load_model
        from .checkpoint_import import detect_format, import_checkpoint, read_any

        ckpt_path = Path(model_or_checkpoint)
        raw = read_any(ckpt_path)
        family = detect_format(raw, str(ckpt_path))
        if family == "df2infer":
            model, ckpt = load_model(ckpt_path)
            info = {
                "checkpoint": ckpt_path.name,
                "checkpoint_sha256": file_sha256(ckpt_path),
                "iterations": int(ckpt.get("iteration", 0)),
                "trained_on": trained_on or ckpt.get("trained_on") or (ckpt.get("config", {}).get("train", {}) or {}).get("data"),
            }
            imported = {"family": "df2infer", "description": "df2infer Match R-CNN checkpoint"}
        else:
            model, imported = import_checkpoint(ckpt_path)
            if input_size is None:  # what the family trains at: its short side 800, landscape up to 1344
                input_size = tuple(imported["default_input_hw"])
            info = {
                "checkpoint": ckpt_path.name,
                "checkpoint_sha256": file_sha256(ckpt_path),
                "iterations": None,
                "trained_on": trained_on,
                "imported": imported["description"],
            }
        if report is not None:
            report["checkpoint_format"] = imported["family"]
            report["checkpoint_description"] = imported["description"]
    model = model.float().eval()
    deploy = DeployMatchRCNN(
        model, max_detections=max_detections, num_proposals=num_proposals, input_size=input_size, gate_heads=gate_heads
    )
    H, W = deploy.height, deploy.width
    inputs = test_inputs(H, W)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        _torch_export(deploy, raw, opset, torch.from_numpy(inputs[0]).repeat(2, 1, 1, 1))
        m = onnx.load(os.fspath(raw))
    t_export = time.perf_counter() - t0
    renamed = rename_scoped_nodes(m)
    try:
        onnx.checker.check_model(m, full_check=True)
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{out}: the exported graph fails the ONNX checker / shape inference: {e}") from None
    reference = [ort_run(m.SerializeToString(), x) for x in inputs]
    slim_msg = "not simplified (simplify=False)"
    if simplify:
        m, slim_msg = _simplify(m, inputs, reference)
    log.info(slim_msg)
    contract = deploy_contract(deploy, checkpoint_info=info, max_batch=max_batch, opset=opset)
    del m.metadata_props[:]
    write_onnx_contract(m, contract, str(out))
    m.producer_name = "df2infer.export"
    m.doc_string = f"Match R-CNN deploy graph ({contract.model.get('name')}), df2infer contract in metadata_props"

    from .lint import OnnxLintError, lint_onnx

    problems = lint_onnx(m)
    if any(p.severity == "error" for p in problems):
        raise OnnxLintError(f"{out} (the deploy graph, before saving)", problems)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    onnx.save(m, os.fspath(tmp_out))
    os.replace(tmp_out, out)
    if report is not None:
        report.update(
            export_s=t_export,
            total_s=time.perf_counter() - t0,
            simplify=slim_msg,
            renamed_nodes=renamed,
            lint=[str(p) for p in problems],
            ops=op_histogram(m),
            size_bytes=out.stat().st_size,
            contract=contract,
        )
    return out


__all__ = [
    "ExportError",
    "compare_outputs",
    "deploy_contract",
    "export_onnx",
    "op_histogram",
    "ort_run",
    "rename_scoped_nodes",
    "test_inputs",
]
