"""A short synthetic video: outfits walking across the frame, turning (front -> side -> back),
zooming, entering and leaving; ground truth per frame in JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from . import generator, scene


def make_video(out_dir: str | Path, frames: int = 300, seed: int = 0, size=(640, 360), fps: int = 30) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng([seed, 2])
    bg = scene.user_background(w, h, rng)
    tracks = []
    n_tracks = 3
    for k in range(n_tracks):
        cid = int(rng.integers(1, 14))
        products = [dict(generator.random_product(cid, rng), style=1)]
        outfit = generator.fill_outfit(products, rng)
        direction = 1 if k % 2 == 0 else -1
        tracks.append(
            {
                "id": k + 1,
                "outfit": outfit,
                "bounds": generator.outfit_bounds(outfit),
                "skin": generator.random_skin(rng),
                "x0": -0.3 * w if direction > 0 else 1.3 * w,
                "vx": direction * w * rng.uniform(1.6, 2.4) / frames,
                "t0": int(rng.integers(0, frames // 3)),
                "y": h * rng.uniform(0.45, 0.6),
                "scale0": rng.uniform(0.5, 0.9),
                "zoom": rng.uniform(0.1, 0.4),
                "turn": rng.uniform(1.0, 2.5),
            }
        )
    vid_path, gt_path = out_dir / "video.mp4", out_dir / "video_gt.jsonl"
    writer = cv2.VideoWriter(str(vid_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a video writer for {vid_path}")
    with open(gt_path, "w") as gt:
        for f in range(frames):
            layers = []
            fr = np.random.default_rng([seed, 3, f])
            for tr in sorted(tracks, key=lambda t: t["scale0"]):
                t = f - tr["t0"]
                cx = tr["x0"] + tr["vx"] * t
                phase = 2 * np.pi * tr["turn"] * f / frames
                c = np.cos(phase)
                squeeze = max(0.35, abs(c))
                frac = tr["scale0"] * (1 + tr["zoom"] * np.sin(2 * np.pi * f / frames))
                H = scene.placement(
                    tr["bounds"], w, h, fr, frac=frac, squeeze=squeeze, flip=c < 0, rot_deg=4 * np.sin(phase * 1.7), center=(cx, tr["y"])
                )
                layers += generator.body_layers(tr["outfit"], H, tr["skin"], fr)
                layers += generator.outfit_layers(tr["outfit"], H, fr, meta={"track_id": tr["id"]})
            img, anns = scene.render(bg, layers, min_inside=1.0, min_visible_px=60)
            writer.write(img)
            items = [
                {
                    "track_id": a["meta"].get("track_id"),
                    "category_id": a["category_id"],
                    "style": a["style"],
                    "bbox": list(a["bbox"]),
                    "landmarks": [round(float(v), 2) for v in a["landmarks"].reshape(-1)],
                    "occlusion": a["occlusion"],
                    "zoom_in": a["zoom_in"],
                    "viewpoint": a["viewpoint"],
                }
                for a in anns
            ]
            gt.write(json.dumps({"frame": f, "width": w, "height": h, "items": items}) + "\n")
    writer.release()
    return vid_path, gt_path
