"""`df2infer synth`: generate a synthetic DeepFashion2-format data set, a video and a grid picture."""

from __future__ import annotations

import argparse
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (image/, annos/, coco/, video.mp4)")
    p.add_argument("--images", type=int, default=2000, help="number of images (default 2000)")
    p.add_argument("--seed", type=int, default=1, help="random seed; same seed -> identical output")
    p.add_argument("--video-frames", type=int, default=300, help="frames of the synthetic video (0: none)")
    p.add_argument("--grid", default=None, help="also write a grid picture with ground truth drawn (PNG)")


def run(args) -> int:
    from df2infer.synth import generator

    t0 = time.perf_counter()
    print(f"generating {args.images} images into {args.out} (seed {args.seed})")
    generator.generate(args.out, args.images, args.seed)
    t_img = time.perf_counter() - t0
    if args.video_frames > 0:
        from df2infer.synth.video import make_video

        v, g = make_video(args.out, args.video_frames, args.seed)
        print(f"video: {v} ({args.video_frames} frames), ground truth {g}")
    try:
        from df2infer.data.coco import write_coco_files
    except ImportError as e:
        if "coco" not in str(e):
            raise
        print("note: df2infer.data.coco is not available; COCO files and retrieval ground truth not written")
    else:
        written = write_coco_files(args.out)
        print(f"COCO files: {', '.join(str(p) for p in (written.values() if isinstance(written, dict) else written))}")
    if args.grid:
        from df2infer.synth.grid import make_grid

        print(f"grid: {make_grid(args.out, args.grid)}")
    generator.stats(args.out)
    print(
        f"generation time: {t_img:.1f} s for {args.images} images ({1000 * t_img / max(1, args.images):.1f} ms/image), "
        f"{time.perf_counter() - t0:.1f} s in all"
    )
    return 0
