"""`df2infer eval DATA_DIR --results RESULTS_DIR [--json OUT]`: score official result files.

`df2infer eval DATA_DIR --model ARTIFACT [--device D] [--conf 0.05] [--batch N] [--max-images N]
[--write-results DIR]`: predict every image through the runtime (df2infer.load(...).predict), build
the official result lists (eval/predict.py: predict_results) and score them with
`evaluate_predictions`, the same call this command makes for files.
"""

from __future__ import annotations

import argparse
import sys

from df2infer.apps.common import DEVICE_HELP, add_backend_argument, add_decode_arguments, decode_options, load_model
from df2infer.data.annotations import AnnotationError, load_dataset
from df2infer.eval.api import evaluate_predictions, ground_truth_as_results
from df2infer.eval.report import print_report, write_json
from df2infer.eval.results import ResultFormatError, read_results_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA_DIR", help="DeepFashion2-format folder (image/ and annos/)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", metavar="RESULTS_DIR", help="folder with any of bbox.json, segm.json, keys.json, retrieval.json")
    src.add_argument("--self-check", action="store_true", help="score the ground truth as predictions (every metric must be 1.0)")
    src.add_argument("--model", metavar="ARTIFACT", help="predict with a model artifact (.onnx, .engine) through the runtime, then score")
    parser.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    g = parser.add_argument_group("with --model")
    g.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_backend_argument(g)
    add_decode_arguments(g, conf=0.05, duplicates=False)
    g.add_argument("--batch", type=int, default=None, help="images per batch (default: the model's max_batch)")
    g.add_argument("--max-images", type=int, default=None, help="score only the first N images of the folder")
    g.add_argument(
        "--gallery-score", type=float, default=0.3, help="minimum score of shop detections in the retrieval gallery (default: %(default)s)"
    )
    g.add_argument("--threads", type=int, default=0, help="ONNX Runtime CPU threads (0: its default)")
    g.add_argument("--write-results", metavar="DIR", help="also write bbox/segm/keys/retrieval.json to DIR")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-attribute tables (faster)")


def results_from_model(args: argparse.Namespace, dataset) -> dict[str, list[dict]]:
    """Run the model on the images of `dataset` (the first --max-images) through the runtime and return
    {"bbox": [...], "segm": [...], "keys": [...], "retrieval": [...]} in the official formats."""
    import time

    from df2infer.eval.predict import predict_results

    predictor = load_model(args, "eval", threads=getattr(args, "threads", 0))
    n = min(len(dataset), args.max_images) if getattr(args, "max_images", None) else len(dataset)
    print(f"predicting {n} images with {predictor} (conf {args.conf})", file=sys.stderr)
    t0 = time.perf_counter()
    results = predict_results(
        predictor,
        dataset,
        decode_options(args, "eval", suppress_iou=None),
        batch_size=getattr(args, "batch", None),
        max_images=getattr(args, "max_images", None),
        gallery_score=getattr(args, "gallery_score", 0.3),
        progress=sys.stderr.isatty(),
    )
    dt = time.perf_counter() - t0
    per = ", ".join(f"{s} {v['per_image_ms']:.1f}" for s, v in predictor.timings.summary().items())
    print(
        f"predicted {n} images in {dt:.1f} s ({1000 * dt / max(n, 1):.1f} ms/image; per stage ms/image: {per}); "
        f"{len(results['bbox'])} detections, {len(results.get('retrieval', []))} retrieval queries",
        file=sys.stderr,
    )
    if getattr(args, "write_results", None):
        from df2infer.eval.results import write_results

        paths = write_results(results, args.write_results)
        print(f"result files: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return results


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
            if args.max_images:
                ds = type(ds)(ds.root, ds.images[: args.max_images])
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
