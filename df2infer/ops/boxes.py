"""Box operations, the numpy reference: clipping, IoU, class-agnostic overlap suppression (xyxy, float32)."""

from __future__ import annotations

import numpy as np


def clip_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """A float32 copy of boxes [n, 4] clipped to [0, w] x [0, h], image_size = (h, w)."""
    out = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    np.clip(out[:, 0::2], 0, image_size[1], out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, image_size[0], out=out[:, 1::2])
    return out


def box_iou(a, b, dtype: type = np.float32) -> np.ndarray:
    """IoU matrix [n, m] of xyxy boxes a [n, 4] and b [m, 4] (continuous areas, no +1; empty boxes
    have area 0). Computed in `dtype`: float32 for the runtime (tracking, overlap suppression), float64
    for evaluation, where a match at exactly the threshold must not flip with rounding."""
    a = np.asarray(a, dtype).reshape(-1, 4)
    b = np.asarray(b, dtype).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(dtype)


def suppress_overlaps(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.85) -> np.ndarray:
    """Class-agnostic greedy NMS: indices of the kept boxes, highest score first; a box is
    dropped when it overlaps a higher-scoring kept box by IoU > `iou`. Used to remove the same garment
    detected as two categories; the graph's own NMS is per class."""
    scores = np.asarray(scores, np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    ious = box_iou(boxes, boxes)
    keep = []
    suppressed = np.zeros(len(order), dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= ious[i] > iou
    return np.asarray(keep, dtype=np.int64)
