"""Landmark decoding, the numpy reference: heatmap logits [n, C, K, K] -> per-item points (x, y, score) in
image pixels, by torchvision's Keypoint R-CNN rule or a cheaper sub-pixel argmax.
"""

from __future__ import annotations

import cv2
import numpy as np

from df2infer.data import spec

LANDMARK_METHODS = ("torchvision", "subpixel")


def _heatmaps_torchvision(maps: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torchvision.models.detection.roi_heads.heatmaps_to_keypoints for one box: maps [k, K, K]."""
    w = max(float(box[2] - box[0]), 1.0)
    h = max(float(box[3] - box[1]), 1.0)
    mw, mh = int(np.ceil(w)), int(np.ceil(h))
    k = maps.shape[0]
    hwc = np.ascontiguousarray(maps.transpose(1, 2, 0), dtype=np.float32)
    # cv2 INTER_CUBIC: a = -0.75, half-pixel centers, replicated border = F.interpolate(bicubic, align_corners=False)
    roi = cv2.resize(hwc, (mw, mh), interpolation=cv2.INTER_CUBIC).reshape(mh, mw, k)
    flat = roi.reshape(-1, k)
    pos = flat.argmax(axis=0)
    yi, xi = np.divmod(pos, mw)
    x = (xi + 0.5) * (w / mw) + box[0]
    y = (yi + 0.5) * (h / mh) + box[1]
    return np.stack([x, y], axis=1).astype(np.float32), flat[pos, np.arange(k)].astype(np.float32)


def _heatmaps_subpixel(maps: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax on the K x K maps, a 1-D quadratic (Newton step) refinement per axis, then map the
    cell coordinate to the box: x = x1 + (px + 0.5) * bw / K. maps [n, k, K, K] -> xy [n, k, 2], score [n, k]."""
    n, k, Kh, Kw = maps.shape
    flat = maps.reshape(n, k, -1)
    pos = flat.argmax(axis=2)
    yi, xi = np.divmod(pos, Kw)
    score = np.take_along_axis(flat, pos[..., None], axis=2)[..., 0]

    def at(yy, xx):
        return np.take_along_axis(flat, (np.clip(yy, 0, Kh - 1) * Kw + np.clip(xx, 0, Kw - 1))[..., None], axis=2)[..., 0]

    def refine(minus, plus, inside):
        d1 = 0.5 * (plus - minus)
        d2 = plus - 2.0 * score + minus
        off = np.where((d2 < 0) & inside, -d1 / np.where(d2 < 0, d2, -1.0), 0.0)
        return np.clip(off, -0.5, 0.5)

    dx = refine(at(yi, xi - 1), at(yi, xi + 1), (xi > 0) & (xi < Kw - 1))
    dy = refine(at(yi - 1, xi), at(yi + 1, xi), (yi > 0) & (yi < Kh - 1))
    bw = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)[:, None]
    bh = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)[:, None]
    x = boxes[:, 0:1] + (xi + dx + 0.5) * bw / Kw
    y = boxes[:, 1:2] + (yi + dy + 0.5) * bh / Kh
    return np.stack([x, y], axis=2).astype(np.float32), score.astype(np.float32)


def decode_landmarks(heatmaps: np.ndarray, boxes: np.ndarray, labels: np.ndarray, method: str = "torchvision") -> list[np.ndarray]:
    """Decode landmark heatmap logits to image points.

    heatmaps [n, C, K, K] (C >= the largest landmark count; channel j = the item's category's
    landmark j, box-relative), boxes [n, 4] in image pixels, labels [n] category ids 1..13.
    Returns one float32 [k, 3] array (x, y, score) per item, k = that category's landmark count.

    method="torchvision": exactly torchvision's heatmaps_to_keypoints (Keypoint R-CNN): resize the
      map bicubically to ceil(box w) x ceil(box h), argmax, x = x1 + (xi + 0.5) * w / ceil(w), and the
      score is the resized logit at the argmax.
    method="subpixel": argmax on the K x K map itself plus a quadratic sub-cell refinement (cheap,
      fully vectorized); the score is the logit at the argmax cell.
    """
    if method not in LANDMARK_METHODS:
        raise ValueError(f"decode_landmarks: method {method!r}, expected one of {LANDMARK_METHODS}")
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    n = len(boxes)
    if heatmaps.ndim != 4 or len(heatmaps) != n or len(labels) != n:
        raise ValueError(f"decode_landmarks: heatmaps {heatmaps.shape}, boxes {boxes.shape}, labels {labels.shape} do not pair up")
    counts = spec.landmark_counts()
    if n and (labels.min() < 1 or labels.max() > spec.NUM_CATEGORIES):
        raise ValueError(f"decode_landmarks: labels must be 1..{spec.NUM_CATEGORIES}, got {labels.tolist()}")
    ks = [int(counts[int(c)]) for c in labels]
    if method == "subpixel":
        kmax = max(ks, default=0)
        if n == 0:
            return []
        xy, score = _heatmaps_subpixel(heatmaps[:, :kmax], boxes)
        return [np.concatenate([xy[i, :k], score[i, :k, None]], axis=1) for i, k in enumerate(ks)]
    out = []
    for i, k in enumerate(ks):
        xy, score = _heatmaps_torchvision(heatmaps[i, :k], boxes[i])
        out.append(np.concatenate([xy, score[:, None]], axis=1))
    return out
