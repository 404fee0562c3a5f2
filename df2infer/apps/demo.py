"""`df2infer demo --out DIR [--model M]` (what `make demo` runs).

1. makes a small synthetic DeepFashion2-format set (24 images, seeded) and a short video in DIR/data
   (skipped when already there);
2. detects clothing with the bundled model (or --model) on every image: annotated pictures in
   DIR/annotated/, one JSON line per image in DIR/detections.jsonl, and the video annotated to
   DIR/annotated/video.mp4 by the video loop with tracking (df2infer.stream; per-frame JSON lines in
   DIR/annotated/video.jsonl);
3. retrieval: the most confident item of a consumer picture queries a gallery of the shop
   pictures' items (the model's similarity network); the top 5 are drawn as a strip,
   DIR/retrieval.jpg, and listed in DIR/retrieval.json;
4. a short latency report (one 1280x720 synthetic scene, batch 1, 30 timed runs after warm-up):
   DIR/bench/bench.{md,json,png}.
Exit status 2, with the command that makes it, when the bundled model is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.apps.common import add_decode_arguments, add_model_arguments, load_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    add_model_arguments(p)
    p.add_argument("--images", type=int, default=24, help="synthetic images to generate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic data (default: %(default)s)")
    p.add_argument("--video-frames", type=int, default=60, help="frames of the synthetic video (0: none; default: %(default)s)")
    add_decode_arguments(p, duplicates=False, landmark_method=False)
    p.add_argument("--runs", type=int, default=30, help="timed runs of the latency report (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs of the latency report (default: %(default)s)")


def make_data(root: Path, n_images: int, seed: int, video_frames: int) -> None:
    from df2infer.synth import generator

    if not (root / "annos").is_dir() or len(list((root / "annos").glob("*.json"))) < n_images:
        print(f"generating {n_images} synthetic images into {root} (seed {seed})")
        generator.generate(root, n_images, seed, log=None)
    if video_frames > 0 and not (root / "video.mp4").is_file():
        from df2infer.synth.video import make_video

        make_video(root, frames=video_frames, seed=seed)
        print(f"video: {root / 'video.mp4'} ({video_frames} frames)")


def retrieval_example(
    model, ds, dets: dict[int, Any], images: dict[int, np.ndarray], out: Path, k: int = 5, gallery_score: float = 0.3
) -> dict | None:
    """Query the most confident consumer item against the shop items; write the strip and JSON."""
    import cv2

    from df2infer.retrieval import Gallery, RankingPolicy
    from df2infer.retrieval.strip import crop_tile, label_tile, outline_tile, strip

    by_id = {a.image_id: a for a in ds.images}
    gallery = Gallery(model.similarity, policy=RankingPolicy(min_gallery_score=gallery_score))
    for iid, d in dets.items():
        if by_id[iid].source == "shop":
            gallery.add(d, image_id=iid)
    cands = [(float(d.scores[i]), iid, i) for iid, d in dets.items() if by_id[iid].source == "user" for i in range(len(d))]
    if not cands or len(gallery) == 0:
        return None
    _, qid, qi = max(cands)
    q = dets[qid][qi]
    matches = gallery.search(q, k=k)[0]
    qann = by_id[qid]
    tiles = [
        outline_tile(label_tile(crop_tile(images[qid], q.boxes[0]), [f"query {q.names[0][:18]}", f"image {qid} score {q.scores[0]:.2f}"]))
    ]
    listed = []
    for r, m in enumerate(matches, 1):
        mid: int = m.image_id  # type: ignore[assignment]
        same = by_id[mid].pair_id == qann.pair_id
        t = label_tile(
            crop_tile(images[mid], m.box),
            [f"#{r} p={m.probability:.3f}", f"shop {mid}" + (" same pair" if same else "")],
            (0, 140, 0) if same else (0, 0, 0),
        )
        tiles.append(t)
        listed.append(
            {
                "rank": r,
                "image_id": mid,
                "box": [round(float(v), 1) for v in m.box],
                "category_id": m.label,
                "probability": round(m.probability, 5),
                "same_pair_id": bool(same),
            }
        )
    cv2.imwrite(str(out / "retrieval.jpg"), strip(tiles))
    info = {
        "query": {
            "image_id": int(qid),
            "pair_id": qann.pair_id,
            "box": [round(float(v), 1) for v in q.boxes[0]],
            "category_id": int(q.labels[0]),
            "score": round(float(q.scores[0]), 4),
        },
        "gallery_items": len(gallery),
        "top": listed,
    }
    (out / "retrieval.json").write_text(json.dumps(info, indent=1))
    return info


def annotate_video(model, src: Path, dst: Path, options, max_frames: int) -> tuple[int, str]:
    """The video loop (df2infer.stream) on the clip with tracking: annotated `dst` (fragmented MP4)
    and one JSON record per frame beside it. Returns (frames, summary line)."""
    from df2infer.sinks.base import Tee
    from df2infer.sinks.jsonl import JsonlSink
    from df2infer.sinks.video import VideoSink
    from df2infer.stream import Pipeline, format_summary

    pipe = Pipeline([str(src)], model, options=options, track=True, max_frames=max_frames)
    video = VideoSink(dst, fps=30)
    with Tee([video, JsonlSink(dst.with_suffix(".jsonl"))]) as sink:
        for r in pipe:
            sink.write(r)
    return video.frames, format_summary(pipe.summary())


def detect_images(model, paths: list[str], out: Path, ann_dir: Path) -> tuple[dict[int, Any], dict[int, np.ndarray], list]:
    """Detection on every image: annotated pictures in ann_dir, one JSON record per image in
    out/detections.jsonl. Returns (detections, images) by position, and the failures."""
    from df2infer.results import FrameInfo, FrameResult
    from df2infer.sinks.base import Tee
    from df2infer.sinks.image_folder import ImageFolderSink
    from df2infer.sinks.jsonl import JsonlSink

    dets: dict[int, Any] = {}
    images: dict[int, np.ndarray] = {}
    failures = []
    with Tee([JsonlSink(out / "detections.jsonl", masks=True), ImageFolderSink(ann_dir)]) as sink:
        for i, (det, img) in enumerate(model.stream(paths, with_images=True)):
            sink.write(FrameResult(det.info if not det.ok else FrameInfo.of_input(i, paths[i]), det, img))
            if det.ok:
                dets[i], images[i] = det, img
            else:
                failures.append(det)
    return dets, images, failures


def latency_report(model, model_path: Path, args: argparse.Namespace, bench_dir: Path) -> list:
    """The latency report (one 1280x720 synthetic scene, batch 1) into bench_dir; prints its summary line."""
    from df2infer.bench import report as rep
    from df2infer.bench.runner import machine_info, measure, subject_from_predictor, synthetic_scene

    scene, n_garments = synthetic_scene((1280, 720))
    subj = subject_from_predictor(model, model_path.name, model_path)
    machine = machine_info()
    rows = measure([subj], [scene], [1], warmup=args.warmup, runs=args.runs, conf=args.conf, log=None)
    machine["loadavg_1m_end"] = machine_info().get("loadavg_1m")
    report = {
        "machine": machine,
        "config": {
            "images": f"synthetic 1280x720 scene with {n_garments} garments (seed 0)",
            "batches": [1],
            "warmup": args.warmup,
            "runs": args.runs,
            "conf": args.conf,
            "device": args.device,
            "threads": 0,
        },
        "subjects": [{"name": subj.name, "kind": subj.kind, "path": subj.path, "precision": subj.precision, "info": subj.info}],
        "results": rows,
        "notes": [] if args.runs >= 30 else [f"only {args.runs} timed runs: p99 is not meaningful"],
    }
    rep.write(report, bench_dir)
    s = rows[0]["stages"]
    print(
        "latency (1280x720, batch 1, ms): "
        + ", ".join(f"{st} p50 {s[st]['p50']:.1f}" for st in ("preprocess", "inference", "postprocess"))
        + f"; total p50 {s['total']['p50']:.1f} / p90 {s['total']['p90']:.1f} / p99 {s['total']['p99']:.1f} "
        f"over {args.runs} runs ({rows[0]['throughput_ips']:.2f} images/s)"
    )

    return rows


def run(args: argparse.Namespace) -> int:
    from df2infer.api import DEFAULT_MODEL
    from df2infer.data.annotations import load_dataset
    from df2infer.stream.model import stream_options

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = stream_options(args.conf)
    model = load_model(args, "demo", options)
    model_path = Path(args.model) if args.model else DEFAULT_MODEL
    print(f"model: {model_path} -> {model}")
    out = Path(args.out)
    data = out / "data"
    ann_dir = out / "annotated"
    ann_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    make_data(data, args.images, args.seed, args.video_frames)
    ds = load_dataset(data)
    ds.images = ds.images[: args.images]
    paths = [str(ds.image_path(a)) for a in ds.images]

    by_pos, images_by_pos, failures = detect_images(model, paths, out, ann_dir)
    for f in failures:
        print(f"df2infer demo: skipped {f.message}", file=sys.stderr)
    dets = {ds.images[i].image_id: d for i, d in by_pos.items()}
    images = {ds.images[i].image_id: im for i, im in images_by_pos.items()}
    n_items = sum(len(d) for d in dets.values())
    t = model.timings.summary()
    per = ", ".join(f"{s} {v['per_image_ms']:.1f}" for s, v in t.items())
    print(f"detection: {len(dets)} images, {n_items} items (conf {args.conf}); ms per image: {per}")

    # video
    video_out = None
    if args.video_frames > 0 and (data / "video.mp4").is_file():
        n, line = annotate_video(model, data / "video.mp4", ann_dir / "video.mp4", options, args.video_frames)
        if n:
            video_out = ann_dir / "video.mp4"
            print(f"video loop (tracking): {line} -> {video_out}, {video_out.with_suffix('.jsonl')}")

    # retrieval
    info = retrieval_example(model, ds, dets, images, out)
    if info is None:
        print("retrieval: no consumer item or no shop item detected; no example drawn")
    else:
        top = ", ".join(
            f"#{m['rank']} image {m['image_id']} p={m['probability']:.3f}{' (same pair)' if m['same_pair_id'] else ''}" for m in info["top"]
        )
        print(f"retrieval: query image {info['query']['image_id']} ({info['gallery_items']} shop items): {top}")

    latency_report(model, model_path, args, out / "bench")
    print(f"\ndone in {time.perf_counter() - t0:.1f} s. Outputs in {out}/:")
    video_in = ", video.mp4" if (data / "video.mp4").is_file() else ""
    print(f"  data/                 {len(ds.images)} synthetic images + annotations{video_in}")
    print(f"  annotated/            {len(dets)} annotated images" + (", video.mp4" if video_out else ""))
    print("  detections.jsonl      one JSON line per image (boxes, scores, categories, RLE masks, landmarks)")
    if info is not None:
        print("  retrieval.jpg / .json query item and its top-5 shop items")
    print("  bench/                bench.md, bench.json, bench.png")
    return 0
