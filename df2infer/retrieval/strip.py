"""Retrieval strips (`df2infer demo`, `df2infer search`): a query item and its top matches as labelled
crops side by side."""

from __future__ import annotations

import cv2
import numpy as np


def crop_tile(image: np.ndarray, box, height: int = 200, width: int = 150) -> np.ndarray:
    """The box's crop, fitted into a white height x width tile with 40 px below for labels."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1 = max(0, min(x1, w - 1)), max(0, min(y1, h - 1))
    x2, y2 = max(x1 + 1, min(x2, w)), max(y1 + 1, min(y2, h))
    c = image[y1:y2, x1:x2]
    s = min(height / c.shape[0], width / c.shape[1])
    c = cv2.resize(c, (max(1, int(c.shape[1] * s)), max(1, int(c.shape[0] * s))), interpolation=cv2.INTER_AREA)
    tile = np.full((height + 40, width, 3), 255, np.uint8)
    oy, ox = (height - c.shape[0]) // 2, (width - c.shape[1]) // 2
    tile[oy : oy + c.shape[0], ox : ox + c.shape[1]] = c
    return tile


def label_tile(tile: np.ndarray, lines: list[str], color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Up to two caption lines in the tile's bottom band (in place)."""
    for i, t in enumerate(lines):
        cv2.putText(tile, t, (4, tile.shape[0] - 26 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, color, 1, cv2.LINE_AA)
    return tile


def outline_tile(tile: np.ndarray, color: tuple[int, int, int] = (255, 0, 0), thickness: int = 3) -> np.ndarray:
    """A frame around the tile (in place): marks the query tile."""
    cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, tile.shape[0] - 1), color, thickness)
    return tile


def blank_tile(lines: list[str], height: int = 200, width: int = 150) -> np.ndarray:
    """A grey tile for a gallery image that cannot be read here."""
    t = np.full((height + 40, width, 3), 255, np.uint8)
    t[:height] = 200
    return label_tile(t, lines)


def strip(tiles: list[np.ndarray], gap: int = 12) -> np.ndarray:
    """Tiles of one height side by side, `gap` white pixels apart."""
    sep = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([x for t in tiles for x in (t, sep)][:-1], axis=1)
