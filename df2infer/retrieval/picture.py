"""Retrieval pictures: a query item and its top matches as a strip of labelled crops (what
`df2infer demo` and `df2infer search` draw)."""
from __future__ import annotations

import numpy as np


def crop_tile(img: np.ndarray, box, height: int = 200, width: int = 150) -> np.ndarray:
    """The box's crop, fitted into a white height x width tile with 40 px below for labels."""
    import cv2

    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1 = max(0, min(x1, w - 1)), max(0, min(y1, h - 1))
    x2, y2 = max(x1 + 1, min(x2, w)), max(y1 + 1, min(y2, h))
    c = img[y1:y2, x1:x2]
    s = min(height / c.shape[0], width / c.shape[1])
    c = cv2.resize(c, (max(1, int(c.shape[1] * s)), max(1, int(c.shape[0] * s))), interpolation=cv2.INTER_AREA)
    tile = np.full((height + 40, width, 3), 255, np.uint8)
    oy, ox = (height - c.shape[0]) // 2, (width - c.shape[1]) // 2
    tile[oy:oy + c.shape[0], ox:ox + c.shape[1]] = c
    return tile


def label_tile(tile: np.ndarray, lines: list[str], color=(0, 0, 0)) -> np.ndarray:
    import cv2

    for i, t in enumerate(lines):
        cv2.putText(tile, t, (4, tile.shape[0] - 26 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, color, 1, cv2.LINE_AA)
    return tile


def blank_tile(lines: list[str], height: int = 200, width: int = 150) -> np.ndarray:
    """A grey tile for a gallery image that cannot be read here."""
    t = np.full((height + 40, width, 3), 255, np.uint8)
    t[:height] = 200
    return label_tile(t, lines)


def strip(tiles: list[np.ndarray], gap: int = 12) -> np.ndarray:
    sep = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([x for t in tiles for x in (t, sep)][:-1], axis=1)
