"""Preprocessing: image checks, THE letterbox of the project, and the graph's input batch.

Everything here is numpy + OpenCV and nothing else, so the training code (export/) imports the
same letterbox the runtime uses, and the CUDA preprocessing kernel has one reference to match.

Letterbox definition (centered, aspect ratio kept), for an image of h x w into a canvas H x W:
    scale  = min(H / h, W / w)
    new_w  = round(w * scale), new_h = round(h * scale)   (Python round, clamped to 1..W / 1..H)
    pad_x  = (W - new_w) // 2   (left; the right side gets the ceil half: W - new_w - pad_x)
    pad_y  = (H - new_h) // 2   (top;  the bottom gets H - new_h - pad_y)
    the image is resized to new_w x new_h with cv2.INTER_LINEAR and placed at (pad_x, pad_y);
    the rest of the canvas is `pad_value` in every channel.
A point maps forward as  x_in = x * scale + pad_x,  y_in = y * scale + pad_y  and back as
x = (x_in - pad_x) / scale (see `LetterboxInfo.to_original`). Because new_w/new_h are rounded,
the true per-axis factors are new_w / w and new_h / h, which differ from `scale` by less than
0.5 / min(w, h) relative; the single `scale` is the definition both directions use.

Graph input (df2infer.contract): float32 [B, 3, H, W], RGB, values 0..255 (no normalization
here: mean/std live in the graph).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)


class ImageError(ValueError):
    """An input image that cannot be used; the message names it (file path or ``images[i]``)."""


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


def letterbox_geometry(h: int, w: int, size: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """(scale, new_h, new_w, pad_y, pad_x) of the centered letterbox of h x w into size = (H, W)."""
    H, W = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"letterbox: image size {h}x{w} is empty")
    scale = min(H / h, W / w)
    new_w = min(max(int(round(w * scale)), 1), W)
    new_h = min(max(int(round(h * scale)), 1), H)
    return scale, new_h, new_w, (H - new_h) // 2, (W - new_w) // 2


def letterbox(image: np.ndarray, size: tuple[int, int], pad_value: float = 114,
              out: np.ndarray | None = None) -> tuple[np.ndarray, LetterboxInfo]:
    """Centered letterbox of an HxWxC (or HxW) uint8 image into size = (H, W); see the module doc.

    Returns (canvas, info); the canvas has the image's dtype and channel order (BGR stays BGR).
    `out`, if given, is a preallocated canvas of the right shape and dtype that is filled in place.
    """
    h, w = image.shape[:2]
    H, W = int(size[0]), int(size[1])
    scale, new_h, new_w, pad_y, pad_x = letterbox_geometry(h, w, (H, W))
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
    canvas[pad_y + new_h:] = fill
    canvas[pad_y:pad_y + new_h, :pad_x] = fill
    canvas[pad_y:pad_y + new_h, pad_x + new_w:] = fill
    region = canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w]
    if (new_h, new_w) == (h, w):
        region[...] = image
    else:
        region[...] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR).reshape(region.shape)
    return canvas, LetterboxInfo(scale=float(scale), pad_x=pad_x, pad_y=pad_y, orig_h=h, orig_w=w)


def coerce_image(x: object, name: str = "image") -> np.ndarray:
    """Return `x` as a contiguous HxWx3 BGR uint8 image, or raise ImageError naming `name`.

    Accepted: uint8 HxW / HxWx1 (grayscale), HxWx3 (BGR), HxWx4 (BGRA, alpha dropped); uint16 (scaled
    to 8 bits, x / 257, with a log note); other integer dtypes and float dtypes whose values lie in
    0..255 (floats are rounded; 0..255 is assumed, not 0..1). Refused: non-arrays, empty arrays,
    bool, complex, object dtypes, NaN/inf, values outside 0..255, ndim other than 2 or 3, channel
    counts other than 1, 3, 4.
    """
    if not isinstance(x, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array (HxWx3 BGR uint8) or an image path, got {type(x).__name__}")
    if x.ndim not in (2, 3):
        raise ImageError(f"{name}: expected an HxW or HxWxC image, got an array with {x.ndim} dimensions {x.shape}")
    if x.size == 0 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ImageError(f"{name}: empty image (shape {x.shape})")
    if x.ndim == 3 and x.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: {x.shape[2]} channels (shape {x.shape}); expected 1 (gray), 3 (BGR) or 4 (BGRA)")
    dt = x.dtype
    if dt == np.uint8:
        img = x
    elif dt == np.uint16:
        log.info("%s: 16-bit image scaled to 8 bits (value / 257)", name)
        img = ((x.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif dt.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ImageError(f"{name}: {dt} values span {lo}..{hi}; expected 0..255 (or pass uint8/uint16)")
        img = x.astype(np.uint8)
    elif dt.kind == "f":
        if not np.isfinite(x).all():
            raise ImageError(f"{name}: float image contains NaN or infinity")
        flo, fhi = float(x.min()), float(x.max())
        if flo < 0.0 or fhi > 255.0:
            raise ImageError(f"{name}: float values span {flo:g}..{fhi:g}; expected 0..255 (convert to uint8 first)")
        img = np.rint(x).astype(np.uint8)
    else:
        raise ImageError(f"{name}: dtype {dt} is not an image type; expected uint8 (or uint16, or numbers in 0..255)")
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 BGR uint8 (EXIF orientation applied; 16-bit, gray and alpha handled
    by coerce_image). Raises FileNotFoundError or ImageError naming the path."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: no such image file")
    data = np.fromfile(p, dtype=np.uint8)  # fromfile + imdecode also handles non-ASCII paths
    if data.size == 0:
        raise ImageError(f"{p}: empty file, not an image")
    img = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise ImageError(f"{p}: cannot decode (corrupt, truncated or not an image format OpenCV reads)")
    return coerce_image(img, p)


def to_input_batch(images: Sequence[np.ndarray], contract, out: np.ndarray | None = None
                   ) -> tuple[np.ndarray, list[LetterboxInfo]]:
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
