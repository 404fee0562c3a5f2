"""Mask pasting, the numpy reference: box-relative M x M mask probabilities -> compact boolean masks in
image pixels (detectron2's paste_masks_in_image semantics). The CUDA twin is checked against this.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os

import numpy as np


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


def paste_masks(
    masks: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int], threshold: float = 0.5
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
        return Wy[ry[i] : ry[i] + h] @ masks32[i] @ Wx[rx[i] : rx[i] + w].T >= threshold

    pixels = int((hs.astype(np.int64) * ws).sum())
    pool = _paste_pool() if n > 1 and pixels >= _PARALLEL_PASTE_PIXELS else None
    if pool is None:
        return [paste(i) for i in range(n)], extents
    # The matmuls release the GIL: two halves of the pixels, one on a worker thread (BLAS itself is
    # kept single-threaded by the Predictor, see df2infer.api), the other here.
    order = np.argsort(-(hs.astype(np.int64) * ws), kind="stable")
    load = [0, 0]
    halves: tuple[list[int], list[int]] = ([], [])
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


def _linear_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of torch's bilinear resize along one axis (align_corners=False, no
    antialias): source = max((i + 0.5) * n_in / n_out - 0.5, 0), taps floor(source) and the next,
    clamped to the last cell."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0).astype(np.float32)
    R = np.zeros((n_out, n_in), np.float32)
    np.add.at(R, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(R, (np.arange(n_out), i1), frac)
    return R


def paste_masks_torchvision(
    masks: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int], threshold: float = 0.5
) -> tuple[list[np.ndarray], np.ndarray]:
    """Paste masks as torchvision's paste_masks_in_image does (for models imported from torchvision, whose
    masks were trained against its RoIAlign targets): the M x M map padded by one zero cell on each side,
    the box scaled by (M + 2) / M about its centre and truncated to integers, the padded map resized
    bilinearly (align_corners=False) to (y2 - y1 + 1) x (x2 - x1 + 1) pixels and placed at (x1, y1).
    Same inputs and compact output as paste_masks; extents are the placed rectangle clipped to the image."""
    masks = np.asarray(masks, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if masks.ndim != 3 or len(masks) != len(boxes):
        raise ValueError(f"paste_masks_torchvision: masks {masks.shape} and boxes {boxes.shape} do not pair up as [n, M, M] / [n, 4]")
    n, m = len(masks), masks.shape[-1]
    H, W = image_size
    scale = np.float32((m + 2) / m)
    extents = np.zeros((n, 4), np.int32)
    out = []
    for i in range(n):
        x1, y1, x2, y2 = boxes[i]
        wh, hh = (x2 - x1) * np.float32(0.5) * scale, (y2 - y1) * np.float32(0.5) * scale
        cx, cy = (x2 + x1) * np.float32(0.5), (y2 + y1) * np.float32(0.5)
        bx1, by1, bx2, by2 = (int(v) for v in (cx - wh, cy - hh, cx + wh, cy + hh))  # int(): truncation, as .to(int64)
        w, h = max(bx2 - bx1 + 1, 1), max(by2 - by1 + 1, 1)
        padded = np.pad(masks[i], 1)
        resized = _linear_resize_matrix(m + 2, h) @ padded @ _linear_resize_matrix(m + 2, w).T
        x0, xe = max(bx1, 0), min(bx2 + 1, W)
        y0, ye = max(by1, 0), min(by2 + 1, H)
        xe, ye = max(xe, x0), max(ye, y0)
        extents[i] = (x0, y0, xe, ye)
        out.append(resized[y0 - by1 : ye - by1, x0 - bx1 : xe - bx1] >= threshold)
    return out, extents
