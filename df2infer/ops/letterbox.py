"""THE letterbox of the project, forward (image -> graph input batch) and inverse (input pixels -> image
pixels), the numpy reference.

Everything here is numpy + OpenCV and nothing else, so the training code (df2infer_export) imports the
same letterbox the runtime uses, and the CUDA preprocessing kernel has one reference to match.

Letterbox definition (centered, aspect ratio kept), for an image of h x w into a canvas H x W:
    scale  = min(H / h, W / w)
    new_w  = round(w * scale), new_h = round(h * scale)   (Python round, clamped to 1..W / 1..H)
    pad_x  = (W - new_w) // 2   (left; the right side gets the ceil half: W - new_w - pad_x)
    pad_y  = (H - new_h) // 2   (top;  the bottom gets H - new_h - pad_y)
    the image is resized to new_w x new_h by `resize_bilinear` (OpenCV's bit-exact bilinear,
    cv2.INTER_LINEAR_EXACT) and placed at (pad_x, pad_y); the rest of the canvas is `pad_value`.
A point maps forward as  x_in = x * scale + pad_x,  y_in = y * scale + pad_y  and back as
x = (x_in - pad_x) / scale (see `LetterboxInfo.to_original`). Because new_w/new_h are rounded,
the true per-axis factors are new_w / w and new_h / h, which differ from `scale` by less than
0.5 / min(w, h) relative; the single `scale` is the definition both directions use.

Why INTER_LINEAR_EXACT and not INTER_LINEAR: OpenCV's INTER_LINEAR for uint8 takes different code
paths per CPU (SIMD width, vendor HALs) that round differently; on aarch64 it differed from x86 by one
grey level on ~8% of the input values, enough to change detections. INTER_LINEAR_EXACT is integer
arithmetic specified to the bit (8-bit fixed-point weights, docs/cuda_kernels.md gives the formula), so
the input tensor is the same on every CPU, and the CUDA letterbox reproduces it exactly.

Graph input (df2infer.contract): float32 [B, 3, H, W], RGB, values 0..255 (no normalization
here: mean/std live in the graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from df2infer.contract import PAD_VALUE
from df2infer.images import ImageError
from df2infer.ops.boxes import clip_boxes


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image of orig_h x orig_w was placed on the letterboxed canvas."""

    scale: float
    pad_x: int
    pad_y: int
    orig_h: int
    orig_w: int

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Map points [..., 2] (x, y) from letterboxed input pixels back to original pixels (no clipping)."""
        xy = np.asarray(xy, dtype=np.float32)
        return (xy - np.array([self.pad_x, self.pad_y], np.float32)) / np.float32(self.scale)

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Map points [..., 2] (x, y) from original pixels to letterboxed input pixels."""
        xy = np.asarray(xy, dtype=np.float32)
        return xy * np.float32(self.scale) + np.array([self.pad_x, self.pad_y], np.float32)


class LetterboxGeometry(NamedTuple):
    """The centered letterbox of an image into a canvas (see the module doc); x before y everywhere."""

    scale: float
    new_w: int
    new_h: int
    pad_x: int
    pad_y: int


def letterbox_geometry(h: int, w: int, size: tuple[int, int]) -> LetterboxGeometry:
    """The centered letterbox of an h x w image into size = (H, W)."""
    H, W = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"letterbox: image size {h}x{w} is empty")
    scale = min(H / h, W / w)
    new_w = min(max(int(round(w * scale)), 1), W)
    new_h = min(max(int(round(h * scale)), 1), H)
    return LetterboxGeometry(scale, new_w, new_h, (W - new_w) // 2, (H - new_h) // 2)


def resize_bilinear(image: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """THE image resize of the project (letterbox, training data): OpenCV's bit-exact bilinear
    (cv2.INTER_LINEAR_EXACT), identical on every CPU; the image itself when the size is unchanged."""
    if (new_h, new_w) == image.shape[:2]:
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR_EXACT)


def letterbox(
    image: np.ndarray, size: tuple[int, int], pad_value: float = PAD_VALUE, out: np.ndarray | None = None
) -> tuple[np.ndarray, LetterboxInfo]:
    """Centered letterbox of an HxWxC (or HxW) uint8 image into size = (H, W); see the module doc.

    Returns (canvas, info); the canvas has the image's dtype and channel order (BGR stays BGR).
    `out`, if given, is a preallocated canvas of the right shape and dtype that is filled in place.
    """
    h, w = image.shape[:2]
    H, W = int(size[0]), int(size[1])
    scale, new_w, new_h, pad_x, pad_y = letterbox_geometry(h, w, (H, W))
    shape = (H, W) + image.shape[2:]
    if out is None:
        canvas = np.empty(shape, dtype=image.dtype)
    else:
        if out.shape != shape or out.dtype != image.dtype:
            raise ValueError(f"letterbox: out is {out.shape} {out.dtype}, expected {shape} {image.dtype}")
        canvas = out
    fill = np.asarray(pad_value).astype(image.dtype)
    # Fill only the borders; the image region is written by the resize.
    canvas[:pad_y] = fill
    canvas[pad_y + new_h :] = fill
    canvas[pad_y : pad_y + new_h, :pad_x] = fill
    canvas[pad_y : pad_y + new_h, pad_x + new_w :] = fill
    region = canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w]
    region[...] = resize_bilinear(image, new_w, new_h).reshape(region.shape)
    return canvas, LetterboxInfo(scale=float(scale), pad_x=pad_x, pad_y=pad_y, orig_h=h, orig_w=w)


def to_input_batch(images: Sequence[np.ndarray], contract, out: np.ndarray | None = None) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Letterbox BGR uint8 images and pack them as the graph input: float32 [B, 3, H, W], RGB, 0..255.

    `contract` supplies input_height, input_width and pad_value. The images must already be
    HxWx3 BGR uint8 (use coerce_image). `out` may be a preallocated float32 [>=B, 3, H, W] buffer.
    """
    H, W = int(contract.input_height), int(contract.input_width)
    B = len(images)
    if B == 0:
        raise ValueError("to_input_batch: no images")
    if out is None:
        batch = np.empty((B, 3, H, W), dtype=np.float32)
    else:
        if out.dtype != np.float32 or out.shape[0] < B or out.shape[1:] != (3, H, W):
            raise ValueError(f"to_input_batch: out is {out.shape} {out.dtype}, expected float32 [>={B}, 3, {H}, {W}]")
        batch = out[:B]
    canvas = np.empty((H, W, 3), dtype=np.uint8)
    infos = []
    for i, img in enumerate(images):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ImageError(f"images[{i}]: expected HxWx3 BGR uint8, got {img.shape} {img.dtype} (use coerce_image)")
        _, info = letterbox(img, (H, W), contract.pad_value, out=canvas)
        infos.append(info)
        # BGR HWC uint8 -> RGB CHW float32, one strided copy per channel.
        for c in range(3):
            batch[i, c] = canvas[:, :, 2 - c]
    return batch, infos


def scale_boxes_back(boxes: np.ndarray, info: LetterboxInfo, clip: bool = True) -> np.ndarray:
    """Boxes [n, 4] x1,y1,x2,y2 in letterboxed input pixels -> original image pixels (float32),
    by the letterbox's inverse x = (x_in - pad_x) / scale; clipped to [0, orig_w] x [0, orig_h]
    unless clip=False (masks and landmarks are box-relative to the unclipped box)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    pad = np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], np.float32)
    out = (b - pad) / np.float32(info.scale)
    return clip_boxes(out, (info.orig_h, info.orig_w)) if clip else out
