"""`df2infer eval DATA_DIR --results RESULTS_DIR [--json OUT]`: score official result files.

Hook for the runtime: `--model` is reserved. To add it, build {kind: entries} from the runtime's
detections (see `results_from_model` below) and pass them to `evaluate_predictions`, the same
call this command makes for files.
"""
from __future__ import annotations

import argparse
import sys

from ..data.annotations import AnnotationError, load_dataset
from .api import evaluate_predictions, ground_truth_as_results
from .report import print_report, write_json
from .results import ResultFormatError, read_results_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA_DIR", help="DeepFashion2-format folder (image/ and annos/)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", metavar="RESULTS_DIR",
                     help="folder with any of bbox.json, segm.json, keys.json, retrieval.json")
    src.add_argument("--self-check", action="store_true",
                     help="score the ground truth as predictions (every metric must be 1.0)")
    src.add_argument("--model", metavar="ARTIFACT", help="predict with a model through the runtime, then score (not available yet)")
    parser.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-attribute tables (faster)")


def results_from_model(args: argparse.Namespace, dataset) -> dict[str, list[dict]]:
    """HOOK for the runtime engineer: run the model on every image of `dataset` and return
    {"bbox": [...], "segm": [...], "keys": [...], "retrieval": [...]} in the official formats."""
    raise NotImplementedError("df2infer eval --model is not implemented yet; write result files and use --results")


def run(args: argparse.Namespace) -> int:
    try:
        ds = load_dataset(args.data)
    except AnnotationError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        if args.self_check:
            results = ground_truth_as_results(ds)
        elif args.model:
            results = results_from_model(args, ds)
        else:
            ids = {im.image_id for im in ds}
            sizes = {im.image_id: (im.width, im.height) for im in ds}
            results = read_results_dir(args.results, image_ids=ids, image_sizes=sizes)
        report = evaluate_predictions(ds, results, breakdown=not args.no_breakdown, validate=not args.results)
    except (ResultFormatError, NotImplementedError) as e:
        print(f"df2infer eval: {e}", file=sys.stderr)
        return 1
    print_report(report)
    if args.json:
        print(f"report written to {write_json(report, args.json)}")
    if args.self_check:
        bad = _self_check_failures(report)
        if bad:
            print("self-check FAILED: " + ", ".join(bad), file=sys.stderr)
            return 1
        print("self-check passed: ground truth scores 1.0 everywhere")
    return 0


def _self_check_failures(report: dict) -> list[str]:
    bad = []
    for m in ("box", "mask", "landmarks_visible", "landmarks_all"):
        if m in report:
            ap = report[m]["overall"]["AP"]
            if ap is not None and abs(ap - 1.0) > 1e-9:
                bad.append(f"{m} AP {ap:.4f}")
    r = report.get("retrieval")
    if r and r.get("top1") is not None and r["top1"] < 1.0:
        bad.append(f"retrieval top1 {r['top1']:.4f}")
    return bad
