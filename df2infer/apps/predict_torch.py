"""`df2infer predict-torch`: PyTorch eager inference writing the official DeepFashion2 result files
(bbox, segm, keys, retrieval .json; df2infer_export.infer). Needs the export extra.
"""

from __future__ import annotations

import argparse
import json

NEEDS_EXPORT_EXTRA = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="df2infer checkpoint (.pt)")
    p.add_argument("--data", required=True, help="DeepFashion2-format folder (image/, annos/)")
    p.add_argument("--out", required=True, help="folder for bbox/segm/keys/retrieval.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--gallery-score", type=float, default=0.3, help="min score of shop detections in the gallery")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval", action="store_true", help="also score the results (df2infer.eval) and print them")


def run(args: argparse.Namespace) -> int:
    import torch

    from df2infer.data import load_dataset
    from df2infer_export.checkpoint import load_model
    from df2infer_export.infer import evaluate, predict, summary, write_results

    torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.checkpoint, args.device)
    folder = load_dataset(args.data)
    results, timing = predict(model, folder, args.device, args.batch_size, args.max_images, args.gallery_score)
    out = write_results(results, args.out)
    (out / "timing.json").write_text(json.dumps(timing, indent=1))
    print(
        f"wrote {out}/{{bbox,segm,keys,retrieval}}.json: {len(results['bbox'])} detections on {timing['images']} images, "
        f"{timing['model_ms_per_image']:.1f} ms/image in the model, {timing['total_ms_per_image']:.1f} ms/image total"
    )
    if args.eval:
        m = evaluate(folder, results, args.max_images)
        if m is not None:
            (out / "metrics.json").write_text(json.dumps(m, indent=1))
            print(json.dumps(summary(m), indent=1))
    return 0
