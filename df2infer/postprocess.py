"""Postprocessing references: boxes back to image pixels, mask pasting, landmark decoding, overlap
suppression. numpy/OpenCV, vectorized within each detection; each function's semantics are
defined exactly here because the CUDA kernels are checked against them.
"""
from __future__ import annotations

import concurrent.futures
import functools
import math
import os

import cv2
import numpy as np

from df2infer.data import spec
from df2infer.preprocess import LetterboxInfo

LANDMARK_METHODS = ("torchvision", "subpixel")


def scale_boxes_back(boxes: np.ndarray, info: LetterboxInfo, clip: bool = True) -> np.ndarray:
    """Boxes [n, 4] x1,y1,x2,y2 in letterboxed input pixels -> original image pixels (float32),
    by the letterbox's inverse x = (x_in - pad_x) / scale; clipped to [0, orig_w] x [0, orig_h]
    unless clip=False (masks and landmarks are box-relative to the unclipped box)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    pad = np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], np.float32)
    out = (b - pad) / np.float32(info.scale)
    return clip_boxes(out, (info.orig_h, info.orig_w)) if clip else out


def clip_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """A float32 copy of boxes [n, 4] clipped to [0, w] x [0, h], image_size = (h, w)."""
    out = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    np.clip(out[:, 0::2], 0, image_size[1], out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, image_size[0], out=out[:, 1::2])
    return out


def mask_extent(box: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer pixel extent [x0, y0, x1, y1) of a box's compact mask: [floor(x1), ceil(x2)) x
    [floor(y1), ceil(y2)), clipped to the image. Every pixel whose center lies inside the box is in it."""
    h, w = image_size
    x0 = min(max(math.floor(float(box[0])), 0), w)
    y0 = min(max(math.floor(float(box[1])), 0), h)
    x1 = min(max(math.ceil(float(box[2])), x0), w)
    y1 = min(max(math.ceil(float(box[3])), y0), h)
    return x0, y0, x1, y1


def _sample_positions(lo: float, hi: float, start: int, count: int, m: int) -> np.ndarray:
    """Pixel centers start+0.5 ... start+count-0.5 in the cell coordinates of a length-m map spanning
    [lo, hi] (cell centers at 0..m-1; grid_sample align_corners=False): float64 [count]."""
    extent = max(hi - lo, 1e-6)
    return (np.arange(start, start + count, dtype=np.float64) + 0.5 - lo) * (m / extent) - 0.5


def _bilinear_weights(u: np.ndarray, m: int) -> np.ndarray:
    """[len(u), m] bilinear weights, padding_mode="zeros": sample u takes max(0, 1 - |u - j|) from
    cell j; taps outside 0..m-1 read zeros, so they simply have no column. float32, C-contiguous
    (its row blocks feed BLAS matmuls directly)."""
    R = np.abs(u.astype(np.float32)[:, None] - np.arange(m, dtype=np.float32)[None, :])
    np.subtract(1.0, R, out=R)
    return np.maximum(R, 0.0, out=R)


def _interp_matrix(lo: float, hi: float, start: int, count: int, m: int) -> np.ndarray:
    """[count, m] bilinear weights sampling pixel centers start+0.5 ... of a length-m map spanning
    [lo, hi], with grid_sample(align_corners=False, padding_mode="zeros") semantics."""
    return _bilinear_weights(_sample_positions(lo, hi, start, count, m), m)


def paste_mask_probs(mask: np.ndarray, box: np.ndarray, extent: tuple[int, int, int, int]) -> np.ndarray:
    """The probability map of one M x M box-relative mask sampled over the pixels of `extent`
    (x0, y0, x1, y1): float32 [y1 - y0, x1 - x0]. See paste_masks for the exact semantics."""
    x0, y0, x1, y1 = extent
    m_h, m_w = mask.shape
    Ry = _interp_matrix(float(box[1]), float(box[3]), y0, y1 - y0, m_h)
    Rx = _interp_matrix(float(box[0]), float(box[2]), x0, x1 - x0, m_w)
    return Ry @ mask.astype(np.float32, copy=False) @ Rx.T


def paste_masks(masks: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int], threshold: float = 0.5
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Paste box-relative mask probabilities into the image, compactly.

    masks [n, M, M] probabilities (the predicted class's channel), boxes [n, 4] in image pixels,
    image_size (h, w). Semantics = detectron2's paste_masks_in_image (grid_sample, bilinear,
    align_corners=False, zeros padding): the M x M map covers the box exactly, cell (i, j) centered
    at (x1 + (j + 0.5) * bw / M, y1 + (i + 0.5) * bh / M); pixel (x, y) is sampled at its center
    (x + 0.5, y + 0.5), bilinearly, out-of-map taps counting 0; a pixel is on when the sample
    >= threshold. The sampling is separable, so each mask is computed as Ry @ mask @ Rx^T
    (paste_mask_probs); here the weights of all detections are computed in one vectorized pass.

    Returns (compact, extents): compact[i] is a bool array over extents[i] = [x0, y0, x1, y1) (int32
    [n, 4], see mask_extent). For threshold >= 0.5 nothing outside the extent can be on, so the
    compact form loses nothing; the full mask is compact[i] placed at extents[i].
    """
    masks = np.asarray(masks)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if masks.ndim != 3 or len(masks) != len(boxes):
        raise ValueError(f"paste_masks: masks {masks.shape} and boxes {boxes.shape} do not pair up as [n, M, M] / [n, 4]")
    n, m_h, m_w = masks.shape
    extents = np.zeros((n, 4), dtype=np.int32)
    us_y, us_x = [], []
    for i in range(n):
        x0, y0, x1, y1 = extents[i] = mask_extent(boxes[i], image_size)
        us_y.append(_sample_positions(float(boxes[i, 1]), float(boxes[i, 3]), y0, y1 - y0, m_h))
        us_x.append(_sample_positions(float(boxes[i, 0]), float(boxes[i, 2]), x0, x1 - x0, m_w))
    if n == 0:
        return [], extents
    Wy, Wx = _bilinear_weights(np.concatenate(us_y), m_h), _bilinear_weights(np.concatenate(us_x), m_w)
    masks32 = masks.astype(np.float32, copy=False)
    hs, ws = extents[:, 3] - extents[:, 1], extents[:, 2] - extents[:, 0]
    ry, rx = np.concatenate([[0], np.cumsum(hs)]), np.concatenate([[0], np.cumsum(ws)])

    def paste(i: int) -> np.ndarray:
        h, w = int(hs[i]), int(ws[i])
        if h == 0 or w == 0:
            return np.zeros((h, w), dtype=bool)
        return Wy[ry[i]:ry[i] + h] @ masks32[i] @ Wx[rx[i]:rx[i] + w].T >= threshold

    pixels = int((hs.astype(np.int64) * ws).sum())
    pool = _paste_pool() if n > 1 and pixels >= _PARALLEL_PASTE_PIXELS else None
    if pool is None:
        return [paste(i) for i in range(n)], extents
    # The matmuls release the GIL: two halves of the pixels, one on a worker thread (BLAS itself is
    # kept single-threaded by the Predictor, see df2infer.api), the other here.
    order = np.argsort(-(hs.astype(np.int64) * ws), kind="stable")
    load, halves = [0, 0], ([], [])
    for i in order:
        k = int(load[1] < load[0])
        halves[k].append(int(i))
        load[k] += int(hs[i]) * int(ws[i])
    future = pool.submit(lambda idx: [paste(i) for i in idx], halves[1])
    out: list = [None] * n
    for i in halves[0]:
        out[i] = paste(i)
    for i, r in zip(halves[1], future.result()):
        out[i] = r
    return out, extents


# Masks covering at least this many pixels in all are pasted on two threads (below it the hand-off
# costs more than it saves; measured on 2 cores: 10 masks / 1.56 Mpx at 1280x720).
_PARALLEL_PASTE_PIXELS = 200_000


@functools.cache
def _paste_pool() -> concurrent.futures.ThreadPoolExecutor | None:
    """One worker thread for paste_masks, started at first use; None on a single-CPU machine."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="df2infer-paste") if usable > 1 else None


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


def decode_landmarks(heatmaps: np.ndarray, boxes: np.ndarray, labels: np.ndarray, method: str = "torchvision"
                     ) -> list[np.ndarray]:
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


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [n, m] of xyxy boxes (continuous areas, no +1)."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def suppress_overlaps(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.85) -> np.ndarray:
    """Class-agnostic greedy NMS: indices of the kept boxes, highest score first; a box is
    dropped when it overlaps a higher-scoring kept box by IoU > `iou`. Used to remove the same garment detected as two categories; the graph's own NMS is per class."""
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
