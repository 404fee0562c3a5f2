"""A tiny hand-made DeepFashion2-format folder for fast tests: coloured polygons on a grey
background, landmarks on polygon vertices, shop/user image pairs with matching styles."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from df2infer.data import spec


def make_tiny_dataset(root, n_images: int = 8, size: int = 128, seed: int = 0) -> Path:
    root = Path(root)
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "annos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(1, n_images + 1):
        pair = (i - 1) // 2 + 1
        source = "shop" if i % 2 else "user"
        prng = np.random.default_rng(1000 + pair)  # same garment look within a pair
        cat = int(prng.integers(1, spec.NUM_CATEGORIES + 1))
        color = prng.integers(40, 255, 3)
        img = np.full((size, size + 16, 3), 200, np.uint8)
        w, h = img.shape[1], img.shape[0]
        bw, bh = rng.integers(size // 3, size // 2 + 20), rng.integers(size // 3, size // 2 + 20)
        x1, y1 = rng.integers(2, w - bw - 2), rng.integers(2, h - bh - 2)
        x2, y2 = x1 + bw, y1 + bh
        cx = (x1 + x2) / 2
        poly = np.array([[x1, y1], [cx, y1 + bh * 0.15], [x2, y1], [x2, y2], [x1, y2]], np.float64)
        cv2.fillPoly(img, [np.round(poly).astype(np.int32)], tuple(int(c) for c in color[::-1]))
        n = spec.category(cat).num_landmarks
        t = np.linspace(0, 1, n, endpoint=False)
        per = np.concatenate([poly, poly[:1]])
        seg_len = np.linalg.norm(np.diff(per, axis=0), axis=1)
        cum = np.concatenate([[0], np.cumsum(seg_len)]) / seg_len.sum()
        lm = np.stack([np.interp(t, cum, per[:, 0]), np.interp(t, cum, per[:, 1]), np.full(n, 2.0)], 1)
        item = {
            "category_id": cat,
            "category_name": spec.category(cat).raw_name,
            "style": 1,
            "bounding_box": [int(x1), int(y1), int(x2), int(y2)],
            "landmarks": [round(float(v), 2) for v in lm.reshape(-1)],
            "segmentation": [[round(float(v), 2) for v in poly.reshape(-1)]],
            "scale": 2,
            "occlusion": 1,
            "zoom_in": 1,
            "viewpoint": 2,
        }
        cv2.imwrite(str(root / "image" / f"{i:06d}.jpg"), img)
        (root / "annos" / f"{i:06d}.json").write_text(json.dumps({"source": source, "pair_id": pair, "item1": item}))
    return root
