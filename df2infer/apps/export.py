"""`df2infer export CHECKPOINT --out DIR`: ONNX deploy graphs (FP32, FP16, INT8 Q/DQ) and TensorRT engines.

    df2infer export model.pt --out build/                     # DIR/model.fp32.onnx
    df2infer export model.pt --out build/ --precision fp32,fp16,int8 --calib-images data/synth_val/image
    df2infer export model.pt --out build/ --precision fp16 --engine --max-batch 8

FP16 and INT8 are made from the FP32 graph by df2infer_export.precision (FP16: sensitive ops and the
box_decode/, nms/, postproc/ nodes kept FP32; INT8: Q/DQ, calibrated on --calib-images with a
reusable cache DIR/calibration_cache.json). --engine builds a strongly typed TensorRT engine per
precision with df2infer.engine.builder (needs TensorRT; a clear error without it). Prints the
export time, file sizes and the op histogram of each graph.

CHECKPOINT may also be a torchvision or detectron2 checkpoint (df2infer_export.checkpoint_import: the
format is detected and printed, the family's semantics are built into the graph, input 800x1344 unless
--input-size); --check-parity then runs the source framework's own model on the same inputs.

--heads gated (the default without --engine) gives the CPU graphs: the mask, landmark and matching
heads run only on the detections at or above the runtime's `conf` (df2infer.contract,
gated_heads). --heads static runs them on all N rows, which TensorRT needs; --engine implies it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from df2infer.apps.common import CliExit

NEEDS_EXPORT_EXTRA = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="a df2infer checkpoint (.pt), a torchvision Mask/Keypoint R-CNN state dict (.pth) or a detectron2 "
        "Mask R-CNN checkpoint (.pth, model-zoo .pkl); the format is detected and printed (docs/models.md)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (model.<precision>.onnx, engines)")
    p.add_argument("--precision", default="fp32", help="comma-separated subset of fp32,fp16,int8 (default fp32)")
    p.add_argument(
        "--calib-images", metavar="DIR", help="calibration images for int8 (the folder and its subfolders; df2infer.images.IMAGE_SUFFIXES)"
    )
    p.add_argument("--calib-method", default="minmax", help="int8 calibration: minmax | entropy | percentile")
    p.add_argument("--calib-num", type=int, default=200, help="calibration images to use (default 200)")
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: the model's)")
    p.add_argument("--max-detections", type=int, default=50, help="N, padded detections per image (default 50)")
    p.add_argument("--num-proposals", type=int, default=None, help="RPN proposals per image (default: the model's test setting)")
    p.add_argument(
        "--heads",
        choices=("gated", "static"),
        default=None,
        help="gated: heads only on detections >= the runtime's conf (ONNX Runtime; default); "
        "static: on all N rows (TensorRT; the default with --engine)",
    )
    p.add_argument(
        "--check-parity",
        action="store_true",
        help="after export, run the source framework's own model (torchvision, when the checkpoint is one) and the "
        "exported graph on the same inputs and print the differences; exit 1 beyond the documented tolerances",
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--engine", action="store_true", help="also build TensorRT engines (needs TensorRT)")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch (contract max_batch, TensorRT profile max)")
    p.add_argument("--opt-batch", type=int, default=1, help="TensorRT profile opt batch")
    p.add_argument("--workspace-gib", type=float, default=2.0)


def _mib(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB"


def _print_ops(path: Path) -> None:
    import onnx

    from df2infer_export.onnx_export import op_histogram

    ops = op_histogram(onnx.load(str(path), load_external_data=False))
    print(f"  ops ({sum(ops.values())} nodes): " + ", ".join(f"{k} {v}" for k, v in ops.items()))


def _check_args(args: argparse.Namespace) -> tuple[str, list[str]]:
    """(heads, precisions) of valid arguments; CliExit(2) naming the bad one before anything is exported."""
    from df2infer_export.precision import CALIBRATION_METHODS

    heads = args.heads or ("static" if args.engine else "gated")
    if args.engine and heads == "gated":
        raise CliExit(2, "df2infer export: --engine needs --heads static (TensorRT cannot build gated heads)")
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    bad = [p for p in precisions if p not in ("fp32", "fp16", "int8")]
    if bad or not precisions:
        raise CliExit(2, f"df2infer export: --precision {args.precision!r}: expected a comma-separated subset of fp32,fp16,int8")
    if "int8" in precisions:
        if not args.calib_images:
            raise CliExit(2, "df2infer export: int8 needs --calib-images DIR (real images, e.g. the training or validation images)")
        if not Path(args.calib_images).is_dir():
            raise CliExit(2, f"df2infer export: --calib-images {args.calib_images}: no such folder")
        if args.calib_method not in CALIBRATION_METHODS:
            raise CliExit(2, f"df2infer export: --calib-method {args.calib_method!r}: expected one of {CALIBRATION_METHODS}")
    if args.engine:
        from df2infer.engine.builder import TensorRTUnavailable, require_tensorrt

        try:
            require_tensorrt()
        except TensorRTUnavailable as e:
            raise CliExit(2, f"df2infer export --engine: {e}") from e
    return heads, precisions


def _check_parity(checkpoint: str, onnx_path: Path, family: str) -> int:
    """--check-parity: the source framework's own forward against the exported graph on the same input."""
    if family == "df2infer":
        print("parity: a df2infer checkpoint is its own reference (export compares ONNX Runtime with the graph already)")
        return 0
    if family == "detectron2":
        print("parity: detectron2 checkpoints are checked by tests/test_detectron2_import.py's fixture; no in-process detectron2 run")
        return 0
    import onnx

    from df2infer.contract import Contract
    from df2infer_export.checkpoint_import import read_any, state_dict_of
    from df2infer_export.checkpoint_import.parity import compare_torchvision, parity_images, torchvision_model

    c = Contract.from_metadata({p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props})
    hw = (c.input_height, c.input_width)
    tv = torchvision_model(state_dict_of(read_any(checkpoint)), hw, max_detections=c.max_detections)
    r = compare_torchvision(tv, onnx_path, parity_images(hw), conf=0.3)
    print("parity with torchvision's forward (same input tensor, 3 synthetic images, conf 0.3):")
    for k in ("detections_ref", "detections_ours", "matched", "label_mismatches", "box_max_rel", "box_max_px", "score_max_abs"):
        print(f"  {k}: {r[k]}")
    for k in ("mask_min_iou", "mask_mean_iou", "keypoint_max_px", "keypoint_max_px_untied"):
        if r[k] is not None:
            print(f"  {k}: {r[k]:.4f}")
    if r["keypoint_ties"]:
        print(f"  keypoint_ties: {r['keypoint_ties']} (beyond 0.5 px, where torchvision's own heatmap is tied within its float32 rounding)")
    for u in r["unmatched"]:
        print(f"  {u}")
    ok = not r["unmatched"] and r["label_mismatches"] == 0 and r["box_max_rel"] <= 1e-3
    ok = ok and (r["mask_min_iou"] is None or r["mask_min_iou"] >= 0.99)
    ok = ok and (r["keypoint_max_px_untied"] is None or r["keypoint_max_px_untied"] <= 0.5)
    print(f"parity: {'ok' if ok else 'FAILED'} (boxes <= 1e-3 of the image side, same labels, mask IoU >= 0.99, keypoints <= 0.5 px)")
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    heads, precisions = _check_args(args)
    from df2infer_export.checkpoint import CheckpointError
    from df2infer_export.onnx_export import export_onnx

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.fp32.onnx"
    report: dict = {}
    t0 = time.perf_counter()
    try:
        export_onnx(
            args.checkpoint,
            fp32,
            input_size=args.input_size,
            max_detections=args.max_detections,
            num_proposals=args.num_proposals,
            opset=args.opset,
            simplify=not args.no_simplify,
            max_batch=args.max_batch,
            gate_heads=heads == "gated",
            report=report,
        )
    except (CheckpointError, FileNotFoundError) as e:
        print(f"df2infer export: {e}", file=sys.stderr)
        return 1
    c = report["contract"]
    print(f"checkpoint: {args.checkpoint}: {report['checkpoint_format']} format ({report['checkpoint_description']})")
    print(f"  heads: {', '.join(c.heads)}; input: {c.input_convention}; masks pasted the {c.mask_paste} way")
    if args.check_parity:
        status = _check_parity(args.checkpoint, fp32, report["checkpoint_format"])
        if status:
            return status
    print(
        f"fp32: {fp32} ({_mib(fp32)}) in {report['total_s']:.1f} s (torch.onnx.export {report['export_s']:.1f} s); "
        f"input {c.input_height}x{c.input_width}, N={c.max_detections}, proposals={c.model['num_proposals']}, "
        f"{heads} heads"
    )
    print(f"  {report['simplify']}")
    for w in report["lint"]:
        print(f"  lint {w}")
    _print_ops(fp32)
    artifacts = {"fp32": fp32} if "fp32" in precisions else {}
    if "fp16" in precisions:
        from df2infer_export.precision import to_fp16

        t = time.perf_counter()
        p = to_fp16(fp32, out / "model.fp16.onnx")
        print(f"fp16: {p} ({_mib(p)}) in {time.perf_counter() - t:.1f} s")
        _print_ops(p)
        artifacts["fp16"] = p
    if "int8" in precisions:
        from df2infer_export.precision import to_int8_qdq

        t = time.perf_counter()
        p = to_int8_qdq(
            fp32,
            out / "model.int8.onnx",
            args.calib_images,
            method=args.calib_method,
            num_images=args.calib_num,
            cache=out / "calibration_cache.json",
        )
        print(f"int8: {p} ({_mib(p)}) in {time.perf_counter() - t:.1f} s ({args.calib_method} calibration)")
        _print_ops(p)
        artifacts["int8"] = p
    if "fp32" not in precisions:
        fp32.unlink()
    if args.engine:
        from df2infer.engine.builder import build_engine

        for prec, onnx_path in artifacts.items():
            t = time.perf_counter()
            e = build_engine(
                onnx_path,
                out / f"model.{prec}.engine",
                min_batch=1,
                opt_batch=args.opt_batch,
                max_batch=args.max_batch,
                workspace_gib=args.workspace_gib,
                timing_cache=out / "timing.cache",
            )
            print(f"engine {prec}: {e} ({_mib(Path(e))}) in {time.perf_counter() - t:.1f} s")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
