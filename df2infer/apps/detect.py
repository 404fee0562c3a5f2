"""`df2infer detect IMAGES... [--model M] [--out DIR] [--conf C] [--device D] [--keep-duplicates] [--landmark-method M]`

Video files and streams belong to `df2infer video` (detect says so).

Writes DIR/<name>.jpg (annotated) for each image and DIR/detections.jsonl (one record per image, in
input order, schema in docs/video.md: "source" the file, "source_id" its position; unreadable images get
a record with "error"). Folders are searched for images
(non-recursively). Exit status 0 when every image was processed, 1 when some failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from df2infer.apps.common import CliExit, add_decode_arguments, add_model_arguments, decode_options, load_model
from df2infer.images import list_images
from df2infer.results import FrameInfo


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files or folders of images")
    add_model_arguments(p)
    p.add_argument("--out", default="df2infer_out", help="output folder (default: %(default)s)")
    add_decode_arguments(p)
    p.add_argument("--batch", type=int, default=None, help="images per batch (default: the model's max_batch)")
    p.add_argument("--no-draw", action="store_true", help="write only the JSONL, no annotated images")
    p.add_argument("--embeddings", action="store_true", help="include embeddings in the JSONL")


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
    from df2infer.results import FrameResult
    from df2infer.sinks.base import Tee
    from df2infer.sinks.image_folder import ImageFolderSink
    from df2infer.sinks.jsonl import JsonlSink
    from df2infer.stream.sources import VIDEO_SUFFIXES

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    videos = [x for x in args.images if x.lower().endswith(VIDEO_SUFFIXES) or "://" in x]
    if videos:
        raise CliExit(
            2, f"df2infer detect: {videos[0]} is a video or stream; detect reads images. Use:\n    df2infer video {' '.join(videos)}"
        )
    files = _expand(args.images)
    if not files:
        raise CliExit(2, "df2infer detect: no images given")
    options = decode_options(args, "detect", embeddings=args.embeddings)
    model = load_model(args, "detect", options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sinks = [JsonlSink(out / "detections.jsonl", masks=True, embeddings=args.embeddings)]
    if not args.no_draw:
        sinks.append(ImageFolderSink(out))
    n_ok = n_fail = n_items = 0
    with Tee(sinks) as sink:
        for i, (res, img) in enumerate(model.stream(files, batch_size=args.batch, with_images=True)):
            info = res.info if not res.ok else FrameInfo.of_input(i, res.path or f"images[{i}]")
            sink.write(FrameResult(info, res, img))
            if not res.ok:
                n_fail += 1
                print(f"df2infer detect: skipped: {res.message}", file=sys.stderr)
                continue
            n_ok += 1
            n_items += len(res)
    t = model.timings.summary()
    per = ", ".join(f"{s} {v['per_image_ms']:.1f}" for s, v in t.items())
    print(f"{n_ok} images, {n_items} items, {n_fail} failed -> {out}/  (ms per image: {per}; {model})")
    return 1 if n_fail else 0
