"""The kernels against their numpy references on realistic inputs, on any Driver.

Used three ways: by the tests (through the CPU shim), by `benchmarks/gpu_check.py` on a GPU, and by
`benchmarks/gpu_check.py --shim` to print the same comparison table on a machine without one. Each
check returns a dict of plain numbers; the tolerances are in docs/cuda_kernels.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

from df2infer.data import spec
from df2infer.ops.cuda.launch import Driver
from df2infer.ops.cuda.pipeline import GpuPostprocessor, GpuPreprocessor, PostItem, instance_map_reference, linear_taps
from df2infer.ops.landmarks import LANDMARK_METHODS, decode_landmarks
from df2infer.ops.letterbox import to_input_batch
from df2infer.ops.masks import paste_masks

# Pixels whose exact (float64) probability lies this close to the threshold may legitimately differ:
# there the reference's own result depends on the BLAS's summation order.
MASK_AMBIGUITY = 1e-6


def to_device(driver: Driver, arr: np.ndarray) -> int:
    arr = np.ascontiguousarray(arr)
    ptr = driver.alloc(arr.nbytes)
    driver.upload(ptr, arr)
    return ptr


def from_device(driver: Driver, ptr: int, shape: Sequence[int], dtype: Any) -> np.ndarray:
    out = np.empty(tuple(shape), dtype)
    driver.download(out, ptr)
    driver.synchronize()
    return out


# ---------------------------------------------------------------- realistic inputs
def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int = 4) -> np.ndarray:
    """Low-frequency noise over the last two axes (bilinear upsampling of a coarse grid), float32."""
    *lead, h, w = shape
    coarse = rng.normal(size=(*lead, cells, cells)).astype(np.float32)
    ys, xs = np.linspace(0, cells - 1, h), np.linspace(0, cells - 1, w)
    y0, x0 = np.minimum(ys.astype(int), cells - 2), np.minimum(xs.astype(int), cells - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    c = coarse
    out = (
        c[..., y0, :][..., :, x0] * (1 - fy) * (1 - fx)
        + c[..., y0 + 1, :][..., :, x0] * fy * (1 - fx)
        + c[..., y0, :][..., :, x0 + 1] * (1 - fy) * fx
        + c[..., y0 + 1, :][..., :, x0 + 1] * fy * fx
    )
    return out.astype(np.float32)


def random_frames(rng: np.random.Generator, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """uint8 BGR frames: smooth gradients plus noise (like photos: mostly smooth, some texture)."""
    frames = []
    for h, w in shapes:
        base = (smooth_noise(rng, (3, h, w), 3) * 50 + 128).transpose(1, 2, 0)
        frames.append(np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8))
    return frames


def random_boxes(rng: np.random.Generator, n: int, size: tuple[int, int], edge_cases: bool = False) -> np.ndarray:
    """float32 [n, 4] boxes in an image of size (h, w); with edge_cases, boxes crossing and touching the
    borders, sub-pixel boxes, boxes larger than the image, degenerate (zero-width) boxes."""
    h, w = size
    x1, y1 = rng.uniform(-0.1 * w, 0.9 * w, n), rng.uniform(-0.1 * h, 0.9 * h, n)
    bw, bh = rng.uniform(0.05, 0.6, n) * w + 1, rng.uniform(0.05, 0.6, n) * h + 1
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh], 1)
    if edge_cases and n:
        special = np.array(
            [
                [0, 0, w, h],
                [-w, -h, 2 * w, 2 * h],
                [w - 0.3, h - 0.3, w + 5, h + 5],
                [0.2, 0.2, 0.7, 0.9],
                [w / 2, h / 2, w / 2, h / 2 + 3],
                [-10, -10, 0, 0],
                [w, 0, w + 10, h],
                [3.5, 2.5, 3.5 + 1e-3, 9],
                [-0.5, -0.5, w + 0.5, h + 0.5],
            ]
        )
        k = min(n, len(special))
        boxes[:k] = special[:k]
    return boxes.astype(np.float32)


# ---------------------------------------------------------------- checks
def check_letterbox(
    driver: Driver, frames: Sequence[np.ndarray], size: tuple[int, int], *, out_dtype: Any = np.float32, pad_value: float = 114.0
) -> dict[str, float]:
    """GPU letterbox vs to_input_batch (the CPU letterbox: OpenCV's INTER_LINEAR_EXACT): largest |difference| in grey
    levels and its share of pixels (both 0: the kernel is bit-exact)."""
    H, W = size
    contract = SimpleNamespace(input_height=H, input_width=W, pad_value=pad_value)
    ref, ref_infos = to_input_batch(list(frames), contract)
    gp = GpuPreprocessor(driver, size, pad_value, out_dtype=out_dtype)
    out = driver.alloc(max(ref.size, 1) * np.dtype(out_dtype).itemsize)
    try:
        infos = gp(list(frames), out)
        got = from_device(driver, out, ref.shape, out_dtype).astype(np.float32)
    finally:
        driver.free(out)
        gp.close()
    if infos != ref_infos:
        raise AssertionError(f"letterbox geometry differs: {infos} vs {ref_infos}")
    expect = ref.astype(out_dtype).astype(np.float32)
    diff = np.abs(got - expect)
    return {
        "max_abs_diff": float(diff.max(initial=0.0)),
        "differing_fraction": float((diff > 0).mean()) if diff.size else 0.0,
        "elements": int(diff.size),
    }


def check_resize(driver: Driver, frame: np.ndarray, new_h: int, new_w: int) -> int:
    """letterbox_kernel resizing one BGR frame to exactly new_h x new_w (a canvas of that size, no padding)
    against OpenCV's cv2.resize(INTER_LINEAR_EXACT) itself: the number of output values that differ."""
    h, w = frame.shape[:2]
    geom = np.array([[h, w, 3 * w, new_h, new_w, 0, 0, 0]], np.int32)
    taps = np.concatenate([linear_taps(new_w, w), linear_taps(new_h, h)])
    ptrs = [to_device(driver, a) for a in (frame, np.zeros(1, np.int64), geom, taps, np.zeros(1, np.int32))]
    out = driver.alloc(3 * new_h * new_w * 4)
    try:
        grid = ((new_w + 31) // 32, (new_h + 7) // 8, 1)
        driver.launch("letterbox_kernel", grid, (32, 8, 1), (*ptrs, out, 0, 1, new_h, new_w, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0))
        got = from_device(driver, out, (3, new_h, new_w), np.float32)
    finally:
        for p in (*ptrs, out):
            driver.free(p)
    want = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR_EXACT)
    return int((got != want.transpose(2, 0, 1)[::-1].astype(np.float32)).sum())


def _exact_probability(mask: np.ndarray, box: np.ndarray, x: int, y: int) -> float:
    """paste_masks' probability at pixel (x, y), in float64 (for judging pixels at the threshold)."""
    m_h, m_w = mask.shape

    def weights(lo: float, hi: float, p: int, m: int) -> np.ndarray:
        u = (p + 0.5 - lo) * (m / max(hi - lo, 1e-6)) - 0.5
        return np.maximum(0.0, 1.0 - np.abs(u - np.arange(m)))

    wy = weights(float(box[1]), float(box[3]), y, m_h)
    wx = weights(float(box[0]), float(box[2]), x, m_w)
    return float(wy @ mask.astype(np.float64) @ wx)


def check_postprocess(
    driver: Driver,
    masks: np.ndarray,
    heatmaps: np.ndarray,
    items: Sequence[PostItem],
    *,
    threshold: float = 0.5,
    instance_maps: bool = True,
) -> dict[str, float]:
    """GPU masks and landmarks (both methods) vs paste_masks / decode_landmarks on the same detections."""
    B, N, M, _ = masks.shape
    C, K = heatmaps.shape[2], heatmaps.shape[3]
    mp, hp = to_device(driver, masks), to_device(driver, heatmaps)
    gp = GpuPostprocessor(driver, detections=N, mask_size=M, heatmap_size=K, channels=C)
    stats: dict[str, float] = {
        "detections": 0,
        "mask_pixels": 0,
        "mask_mismatches": 0,
        "mask_mismatches_unexplained": 0,
        "instance_map_mismatches": 0,
    }
    try:
        for method in LANDMARK_METHODS:
            res = gp(
                list(items), mp, hp, mask_threshold=threshold, landmark_method=method, instance_maps=instance_maps and method == "subpixel"
            )
            xy_diff, score_diff, exact, total = 0.0, 0.0, 0, 0
            for it, r in zip(items, res):
                lm_ref = decode_landmarks(heatmaps[it.row, it.idx], it.boxes, it.labels, method)
                assert r.landmarks is not None and len(r.landmarks) == len(lm_ref)
                for a, b in zip(lm_ref, r.landmarks):
                    if a.shape != b.shape:
                        raise AssertionError(f"landmarks shape {b.shape}, reference {a.shape}")
                    d = np.abs(a - b)
                    xy_diff = max(xy_diff, float(d[:, :2].max(initial=0.0)))
                    score_diff = max(score_diff, float(d[:, 2].max(initial=0.0)))
                    exact += int((d[:, :2].max(axis=1, initial=0.0) <= 1e-3).sum())
                    total += len(a)
                if method != "subpixel":
                    continue
                ref_m, ref_e = paste_masks(masks[it.row, it.idx], it.boxes, it.image_size, threshold)
                if r.mask_boxes is None or not np.array_equal(ref_e, r.mask_boxes):
                    raise AssertionError(f"mask extents differ: {r.mask_boxes} vs {ref_e}")
                stats["detections"] += len(ref_m)
                for d_i, (a, b) in enumerate(zip(ref_m, r.masks or [])):
                    stats["mask_pixels"] += a.size
                    for y, x in zip(*np.nonzero(a != b)):
                        stats["mask_mismatches"] += 1
                        p = _exact_probability(masks[it.row, it.idx[d_i]], it.boxes[d_i], int(x + ref_e[d_i, 0]), int(y + ref_e[d_i, 1]))
                        stats["mask_mismatches_unexplained"] += int(abs(p - threshold) > MASK_AMBIGUITY)
                if instance_maps:
                    ref_map = instance_map_reference(ref_m, ref_e, it.image_size)
                    stats["instance_map_mismatches"] += int((ref_map != r.instance_map).sum())
            stats[f"landmarks_{method}_xy_max_diff"] = xy_diff
            stats[f"landmarks_{method}_score_max_diff"] = score_diff
            stats[f"landmarks_{method}_exact_fraction"] = exact / total if total else 1.0
            stats["landmarks"] = total
    finally:
        gp.close()
        driver.free(mp)
        driver.free(hp)
    return stats


def realistic_batch(
    rng: np.random.Generator,
    sizes: Sequence[tuple[int, int]],
    *,
    detections: int = 100,
    per_image: int = 20,
    mask_size: int = 28,
    heatmap_size: int = 56,
    edge_cases: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[PostItem]]:
    """Engine-like outputs for len(sizes) images: mask probabilities (sigmoid of smooth noise),
    heatmap logits (a Gaussian peak per landmark plus noise), and the kept detections of each image."""
    B, N, M, K = len(sizes), detections, mask_size, heatmap_size
    C = spec.MAX_CATEGORY_LANDMARKS
    masks = (1.0 / (1.0 + np.exp(-3.0 * smooth_noise(rng, (B, N, M, M))))).astype(np.float32)
    yy, xx = np.mgrid[0:K, 0:K].astype(np.float32)
    cy, cx = rng.uniform(2, K - 3, (2, B, N, C, 1, 1)).astype(np.float32)
    heat = 8.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0) + rng.normal(0, 0.3, (B, N, C, K, K))
    items = []
    for b, size in enumerate(sizes):
        n = min(per_image, N)
        idx = np.sort(rng.choice(N, n, replace=False))
        items.append(
            PostItem(
                row=b,
                idx=idx,
                boxes=random_boxes(rng, n, size, edge_cases),
                labels=rng.integers(1, spec.NUM_CATEGORIES + 1, n).astype(np.int32),
                image_size=size,
            )
        )
    return masks, heat.astype(np.float32), items
