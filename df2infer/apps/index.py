"""`df2infer index build IMAGES_OR_DF2_FOLDER --out GALLERY [--model M] [--conf 0.05]
[--gallery-score 0.3] [--dtype float32|float16] [--ray-workers N]`

Detects and embeds every shop item and stores it in the gallery folder GALLERY (embeddings, boxes,
image ids, categories, detection scores; pair id and style for a DeepFashion2 folder, style from the
ground-truth item a detection overlaps by IoU >= 0.5). A DeepFashion2 folder contributes its shop
images (--source user for the consumer ones); files and folders of images contribute every image
(id = path relative to the folder). Resumable: the gallery is saved every --checkpoint-every images,
and images already in GALLERY are skipped, so running the same command again finishes an
interrupted build or adds new images. Exit status 0, 1 when some images could not be read (named,
retried by the next run), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from df2infer.apps.common import CliExit, add_model_arguments, load_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="index_command", metavar="ACTION")
    b = sub.add_parser(
        "build",
        help="detect + embed catalog images into a gallery folder (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("inputs", nargs="+", help="a DeepFashion2 folder, or image files / folders")
    b.add_argument("--out", required=True, help="gallery folder (created, or resumed when it exists)")
    add_model_arguments(b, model_help="model artifact; default: the bundled model")
    b.add_argument(
        "--source", default="shop", choices=("shop", "user"), help="which images of a DeepFashion2 folder (default: %(default)s)"
    )
    b.add_argument("--conf", type=float, default=0.05, help="detection score of the run (default %(default)s, as `df2infer eval`)")
    b.add_argument(
        "--gallery-score",
        type=float,
        default=0.3,
        help="items enter the gallery with score >= this (default: %(default)s, as `df2infer eval`)",
    )
    b.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="embedding storage")
    b.add_argument("--batch", type=int, default=None, help="images per model call (default: the model's max_batch)")
    b.add_argument("--checkpoint-every", type=int, default=500, help="save the gallery every N images (default: %(default)s)")
    b.add_argument(
        "--ray-workers",
        type=int,
        default=0,
        help="index on Ray Data with N workers, one Predictor each (needs ray[data]; 0: in this process)",
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.index_command != "build":
        print("df2infer index: give an action: df2infer index build IMAGES_OR_DF2_FOLDER --out GALLERY", file=sys.stderr)
        return 2
    from df2infer.api import DEFAULT_MODEL
    from df2infer.retrieval import Gallery, GalleryError, RankingPolicy
    from df2infer.retrieval.catalog import catalog_images, index_images

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model_path = Path(args.model) if args.model else DEFAULT_MODEL
    try:
        images, info, _ = catalog_images(args.inputs, args.source)
    except (FileNotFoundError, ValueError) as e:
        raise CliExit(2, f"df2infer index build: {e}") from e
    model = load_model(args, "index build")
    out = Path(args.out)
    policy = RankingPolicy("first", args.gallery_score)
    try:
        if (out / "gallery.json").exists():
            gallery = Gallery.load(out, model.similarity)
            if gallery.policy.min_gallery_score != args.gallery_score or gallery.dtype != args.dtype:
                print(
                    f"df2infer index build: {out} was built with --gallery-score {gallery.policy.min_gallery_score} "
                    f"--dtype {gallery.dtype}; resume with those, or give another --out",
                    file=sys.stderr,
                )
                return 2
            print(f"resuming {out}: {len(gallery)} items from {len(gallery.indexed_images)} images already indexed")
        else:
            info.update(model=str(Path(model_path).resolve()), conf=args.conf)
            gallery = Gallery(model.similarity, dtype=args.dtype, policy=policy, info=info)
    except GalleryError as e:
        print(f"df2infer index build: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.ray_workers > 0:
        from df2infer.retrieval.ray_indexing import index_with_ray

        stats = index_with_ray(
            str(model_path),
            gallery,
            images,
            num_workers=args.ray_workers,
            conf=args.conf,
            batch_size=args.batch or 8,
            device=args.device,
            save_to=out,
        )
    else:
        stats = index_images(
            model,
            gallery,
            images,
            conf=args.conf,
            batch_size=args.batch,
            progress=not args.no_progress,
            save_to=out,
            checkpoint_every=args.checkpoint_every,
        )
    dt = time.perf_counter() - t0
    rate = stats["indexed"] / dt if dt > 0 and stats["indexed"] else 0.0
    print(
        f"gallery {out}: {len(gallery)} items from {len(gallery.indexed_images)} images "
        f"({stats['indexed']} indexed now, {stats['skipped_already_indexed']} already there, {stats['failed']} failed; "
        f"{stats['items_added']} items added in {dt:.1f} s, {rate:.1f} images/s)"
    )
    with (out / "index_log.jsonl").open("a") as f:
        f.write(json.dumps({**stats, "seconds": round(dt, 2), "inputs": args.inputs}) + "\n")
    for m in stats["failures"][:10]:
        print(f"df2infer index build: failed: {m}", file=sys.stderr)
    return 1 if stats["failed"] else 0
