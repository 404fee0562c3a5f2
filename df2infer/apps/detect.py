"""`df2infer detect IMAGES... [--model M] [--out DIR] [--conf C] [--device D] [--keep-duplicates]`

Video files and streams belong to `df2infer video` (detect says so).

Writes DIR/<name>.jpg (annotated) for each image and DIR/detections.jsonl (one JSON line per
image, in input order; unreadable images get a line with "error"). Folders are searched for images
(non-recursively). Exit status 0 when every image was processed, 1 when some failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from df2infer.images import list_images


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("--model", default=None, help="model artifact (.onnx, .engine); default: the bundled model")
    p.add_argument("--out", default="df2infer_out", help="output folder (default: %(default)s)")
    p.add_argument("--conf", type=float, default=0.3, help="minimum score (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--batch", type=int, default=None, help="images per batch (default: the model's max_batch)")
    p.add_argument("--landmark-method", default="subpixel", choices=("torchvision", "subpixel"))
    p.add_argument("--no-draw", action="store_true", help="write only the JSONL, no annotated images")
    p.add_argument("--embeddings", action="store_true", help="include embeddings in the JSONL")
    p.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep cross-category duplicates (default: one garment reported as two categories at IoU > 0.85 is shown once)",
    )


def _expand(inputs: list[str]) -> list[str]:
    files = []
    for x in inputs:
        if os.path.isdir(x):
            found = [str(p) for p in list_images(x)]
            if not found:
                print(f"df2infer detect: {x}: no images in this folder", file=sys.stderr)
            files.extend(found)
        else:
            files.append(x)  # a missing file becomes a named failure, like a corrupt one
    return files


def run(args: argparse.Namespace) -> int:
    import df2infer
    from df2infer.sinks.annotate import annotate
    from df2infer.sinks.image_folder import ImageFolderSink
    from df2infer.sinks.jsonl import JsonlSink
    from df2infer.stream.model import DUPLICATE_IOU
    from df2infer.stream.sources import VIDEO_SUFFIXES

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    videos = [x for x in args.images if x.lower().endswith(VIDEO_SUFFIXES) or "://" in x]
    if videos:
        print(
            f"df2infer detect: {videos[0]} is a video or stream; detect reads images. Use:\n    df2infer video {' '.join(videos)}",
            file=sys.stderr,
        )
        return 2
    files = _expand(args.images)
    if not files:
        print("df2infer detect: no images given", file=sys.stderr)
        return 2
    try:
        model = df2infer.load(args.model, device=args.device)
    except (FileNotFoundError, df2infer.ModelLoadError, df2infer.ContractError, df2infer.DeviceError, ValueError) as e:
        print(f"df2infer detect: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = ImageFolderSink(out)
    n_ok = n_fail = n_items = 0
    with JsonlSink(out / "detections.jsonl") as jsonl:
        for res, img in model.stream(
            files,
            conf=args.conf,
            batch_size=args.batch,
            landmark_method=args.landmark_method,
            embeddings=args.embeddings,
            with_images=True,
            suppress_iou=None if args.keep_duplicates else DUPLICATE_IOU,
        ):
            jsonl.write(res.to_json(embeddings=args.embeddings))
            if not res.ok:
                n_fail += 1
                print(f"df2infer detect: skipped: {res.message}", file=sys.stderr)
                continue
            n_ok += 1
            n_items += len(res)
            if not args.no_draw:
                images.write(annotate(img, res), res.path)
    t = model.timings.summary()
    per = ", ".join(f"{s} {v['per_image_ms']:.1f}" for s, v in t.items())
    print(f"{n_ok} images, {n_items} items, {n_fail} failed -> {out}/  (ms per image: {per}; {model})")
    return 1 if n_fail else 0
