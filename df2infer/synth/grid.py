"""A grid picture of generated images with their ground truth drawn: visible masks, boxes,
landmarks (filled: visible, hollow: occluded) joined by the spec's skeleton."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..data.annotations import read_annotation
from ..images import read_image

PALETTE = [
    (255, 56, 56),
    (56, 255, 56),
    (56, 56, 255),
    (255, 200, 0),
    (255, 0, 200),
    (0, 200, 255),
    (160, 80, 255),
    (80, 255, 160),
    (255, 128, 64),
    (128, 255, 255),
    (255, 255, 128),
    (200, 200, 200),
    (128, 64, 255),
]


def draw_annotation(img: np.ndarray, ann) -> np.ndarray:
    out = img.copy()
    overlay = img.copy()
    for it in ann.items:
        col = PALETTE[(it.category_id - 1) % len(PALETTE)]
        polys = [np.round(np.asarray(p).reshape(-1, 2)).astype(np.int32) for p in it.segmentation]
        cv2.fillPoly(overlay, polys, col)
    out = cv2.addWeighted(overlay, 0.4, out, 0.6, 0)
    for it in ann.items:
        col = PALETTE[(it.category_id - 1) % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in it.bbox)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), col, 2)
        label = f"{it.category.name} s{it.style} o{it.occlusion} v{it.viewpoint}"
        cv2.putText(out, label, (x1 + 2, max(12, y1 + 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, (x1 + 2, max(12, y1 + 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1, cv2.LINE_AA)
        lm = it.landmarks
        for a, b in it.category.skeleton:
            if lm[a, 2] > 0 and lm[b, 2] > 0:
                cv2.line(out, tuple(int(v) for v in lm[a, :2]), tuple(int(v) for v in lm[b, :2]), col, 1, cv2.LINE_AA)
        for x, y, v in lm:
            if v == 2:
                cv2.circle(out, (int(x), int(y)), 3, (255, 255, 255), -1)
                cv2.circle(out, (int(x), int(y)), 3, (0, 0, 0), 1)
            elif v == 1:
                cv2.circle(out, (int(x), int(y)), 3, (0, 0, 255), 1)
    return out


def make_grid(root: str | Path, out_path: str | Path, *, rows: int = 3, cols: int = 4, cell: int = 320, start: int = 1) -> Path:
    root = Path(root)
    cells = []
    for k in range(rows * cols):
        stem = f"{start + k:06d}"
        jp, ip = root / "annos" / f"{stem}.json", root / "image" / f"{stem}.jpg"
        canvas = np.full((cell, cell, 3), 40, np.uint8)
        if jp.exists() and ip.exists():
            img = read_image(ip)
            ann = read_annotation(jp)
            d = draw_annotation(img, ann)
            s = cell / max(d.shape[:2])
            d = cv2.resize(d, (int(d.shape[1] * s), int(d.shape[0] * s)), interpolation=cv2.INTER_AREA)
            y0, x0 = (cell - d.shape[0]) // 2, (cell - d.shape[1]) // 2
            canvas[y0 : y0 + d.shape[0], x0 : x0 + d.shape[1]] = d
            cv2.putText(
                canvas,
                f"{stem} {ann.source} pair {ann.pair_id}",
                (4, cell - 6),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.42,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
        cells.append(canvas)
    grid = np.vstack([np.hstack(cells[r * cols : (r + 1) * cols]) for r in range(rows)])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out_path
