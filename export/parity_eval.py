"""Accuracy parity of the export path on a held-out DeepFashion2-format split (not run in CI: slow).

    python -m df2infer_export.parity_eval --checkpoint model.pt --data /work/data/synth_val [--artifacts DIR]
        [--calib-images DIR] [--max-images N] [--json OUT]

Scores, with df2infer.eval.evaluate_predictions, the results of
  eager      the PyTorch model (export/infer.py),
  deploy     df2infer_export.deploy.DeployMatchRCNN in PyTorch (static shapes, padded),
  ort-fp32 / ort-fp16 / ort-int8   the exported ONNX graphs in ONNX Runtime (CPU),
each loaded as a df2infer Predictor (eager / deploy through df2infer_export.torch_backend, ONNX through
df2infer.load) and turned into official result lists by the runtime's own postprocessing
(df2infer.eval.predict.predict_results, via df2infer_export.infer.predict), so the columns differ only by
the model path. Artifacts come from --artifacts (DIR/model.<precision>.onnx) or are
exported into a temporary folder (int8 calibrates on --calib-images, default the training images).
Prints a table: box / mask / landmark AP (visible, visible+occluded) / retrieval top-10, ms/image.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

COLUMNS = (("box", "box AP"), ("mask", "mask AP"), ("landmarks_visible", "lmk AP vis"), ("landmarks_all", "lmk AP vis+occ"))


def row(metrics: dict) -> dict:
    r = {label: metrics.get(k, {}).get("overall", {}).get("AP") for k, label in COLUMNS}
    r["retr top-10"] = metrics.get("retrieval", {}).get("top10")
    return r


def print_table(rows: dict[str, dict]) -> None:
    cols = [label for _, label in COLUMNS] + ["retr top-10", "ms/img"]
    print(f"{'path':<10} " + " ".join(f"{c:>14}" for c in cols))
    for name, r in rows.items():
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{'-' if v is None else (f'{v:.1f}' if c == 'ms/img' else f'{v:.4f}'):>14}")
        print(f"{name:<10} " + " ".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m df2infer_export.parity_eval", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="/work/data/synth_val")
    p.add_argument("--artifacts", default=None, help="folder with model.{fp32,fp16,int8}.onnx (default: export now)")
    p.add_argument("--calib-images", default="/work/data/synth_train/image")
    p.add_argument("--calib-num", type=int, default=100)
    p.add_argument("--paths", default="eager,deploy,ort-fp32,ort-fp16,ort-int8")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-detections", type=int, default=None, help="N (default: the model's max_detections)")
    p.add_argument("--json", default=None, help="write the table (and full metrics) as JSON")
    args = p.parse_args(argv)

    import df2infer
    from df2infer.data import load_dataset
    from df2infer.eval import evaluate_predictions

    from .checkpoint import load_model
    from .infer import predict
    from .torch_backend import DeployBackend, TorchBackend

    torch.set_num_threads(args.threads)
    model, _ = load_model(args.checkpoint)
    model.eval()
    n_det = args.max_detections or int(model.cfg["max_detections"])
    folder = load_dataset(args.data)
    images = folder.images[: args.max_images] if args.max_images else folder.images
    paths = [s.strip() for s in args.paths.split(",") if s.strip()]

    tmp = None
    art = Path(args.artifacts) if args.artifacts else None
    if art is None and any(s.startswith("ort-") for s in paths):
        from .onnx_export import export_onnx
        from .precision import to_fp16, to_int8_qdq

        tmp = tempfile.TemporaryDirectory()
        art = Path(tmp.name)
        t = time.perf_counter()
        export_onnx(args.checkpoint, art / "model.fp32.onnx", max_detections=n_det)
        if "ort-fp16" in paths:
            to_fp16(art / "model.fp32.onnx", art / "model.fp16.onnx")
        if "ort-int8" in paths:
            to_int8_qdq(
                art / "model.fp32.onnx",
                art / "model.int8.onnx",
                args.calib_images,
                num_images=args.calib_num,
                cache=art / "calibration_cache.json",
            )
        print(f"exported artifacts in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    rows, full = {}, {}
    for name in paths:
        if name == "eager":
            m = df2infer.load(TorchBackend(model, max_detections=n_det))
        elif name == "deploy":
            m = df2infer.load(DeployBackend(model, max_detections=n_det))
        elif name.startswith("ort-"):
            f = art / f"model.{name[4:]}.onnx"
            if not f.is_file():
                print(f"{name}: {f} missing, skipped", file=sys.stderr)
                continue
            m = df2infer.load(f, device="cpu", threads=args.threads)
        else:
            print(f"unknown path {name!r}", file=sys.stderr)
            return 2
        results, timing = predict(m, folder, batch_size=args.batch_size, max_images=args.max_images, progress=False)
        metrics = evaluate_predictions(images, results, breakdown=False)
        rows[name] = {**row(metrics), "ms/img": timing["model_ms_per_image"]}
        full[name] = metrics
        print(f"{name}: done ({len(results['bbox'])} detections, {timing['model_ms_per_image']:.1f} ms/image)", file=sys.stderr)
    print(f"{len(images)} images from {args.data}, checkpoint {args.checkpoint}")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"table": rows, "metrics": full}, indent=1, default=str))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
