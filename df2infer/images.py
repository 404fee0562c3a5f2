"""Images in: the one image reader, the one list of image suffixes, the one folder lister.

Every part of df2infer (the Predictor, `df2infer detect`, bench, INT8 calibration for ONNX Runtime and
TensorRT, data tools) reads and lists images through here, so one folder means the same images everywhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from df2infer.errors import InputError

log = logging.getLogger(__name__)

# Formats OpenCV decodes on every platform the runtime supports (lower case; matching ignores case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(InputError, ValueError):
    """An input image that cannot be used; the message names it (file path or ``images[i]``)."""


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file name ends in one of IMAGE_SUFFIXES (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """The image files (IMAGE_SUFFIXES) in `folder`, sorted by their path relative to it; with
    `recursive`, in its subfolders too. FileNotFoundError if `folder` is not a directory."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted((p for p in candidates if p.is_file() and is_image_path(p)), key=lambda p: p.relative_to(root).as_posix())


def find_image(folder: str | os.PathLike, stem: str) -> Path | None:
    """The image named `stem` plus one of IMAGE_SUFFIXES (tried in that order) in `folder`, or None."""
    for ext in IMAGE_SUFFIXES:
        p = Path(folder) / (stem + ext)
        if p.exists():
            return p
    return None


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
