"""A tiny hand-made DeepFashion2 folder for the data and eval tests (no synthetic generator)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from df2infer.data import spec

W, H = 200, 160


def make_item(cid: int, box, style: int, rng: np.random.Generator, *, scale=2, occlusion=1, zoom_in=1, viewpoint=2) -> dict:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    # a diamond inside the box: its mask covers half the box, so a box-shaped mask scores lower
    poly = [cx, y1, x2, cy, cx, y2, x1, cy]
    n = spec.category(cid).num_landmarks
    lms = []
    for k in range(n):
        v = int(rng.choice([0, 1, 2, 2])) if k > 0 else 2
        if v == 0:
            lms += [0, 0, 0]
        else:
            lms += [float(rng.integers(2 * x1 + 2, 2 * x2 - 2)) / 2, float(rng.integers(y1 + 1, y2 - 1)), v]
    return {
        "category_id": cid,
        "category_name": spec.category(cid).raw_name,
        "style": style,
        "bounding_box": list(box),
        "landmarks": lms,
        "segmentation": [poly],
        "scale": scale,
        "occlusion": occlusion,
        "zoom_in": zoom_in,
        "viewpoint": viewpoint,
    }


def make_folder(root: Path, n_pairs: int = 4, seed: int = 0) -> Path:
    """n_pairs shop/consumer image pairs, two items each: a left item (style 1, matching across the
    pair) and a right item (style 2, matching, in even pairs; style 0, never matching, in odd ones)."""
    rng = np.random.default_rng(seed)
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "annos").mkdir(parents=True, exist_ok=True)
    img = np.full((H, W, 3), 128, np.uint8)
    image_id = 0
    for p in range(1, n_pairs + 1):
        for source in ("shop", "user"):
            image_id += 1
            left = make_item(
                (p % 13) + 1,
                (10, 20, 90, 140),
                1,
                rng,
                scale=1 + image_id % 3,
                occlusion=1 + p % 3,
                zoom_in=1 + (image_id + 1) % 3,
                viewpoint=1 + (p + 1) % 3,
            )
            right = make_item(
                ((p + 6) % 13) + 1,
                (110.5, 30, 190, 150),
                2 if p % 2 == 0 else 0,
                rng,
                scale=1 + (image_id + 1) % 3,
                occlusion=1 + (p + 2) % 3,
                zoom_in=1 + image_id % 3,
                viewpoint=1 + p % 3,
            )
            ann = {"source": source, "pair_id": p, "item1": left, "item2": right}
            name = f"{image_id:06d}"
            (root / "annos" / f"{name}.json").write_text(json.dumps(ann))
            cv2.imwrite(str(root / "image" / f"{name}.jpg"), img)
    return root
