"""NV12 frames (what cameras and hardware decoders deliver) and their conversion to BGR, the numpy reference of
the CUDA kernel letterbox_nv12_kernel (df2infer/ops/cuda/letterbox.cu).

NV12: a Y plane of h x w bytes, then the chroma at half resolution in both directions, U and V interleaved:
ceil(h / 2) x ceil(w / 2) x 2. Pixel (x, y) takes the chroma sample of its 2x2 block (x // 2, y // 2).
Conversion: limited ("TV") range, Y in 16..235 and U, V in 16..240, with the BT.601 or the BT.709 matrix (as
the caps say), in 8-bit fixed point (coefficients x 256, rounded), then clipped to 0..255:

    BT.601   R = (298 (Y-16) + 409 (V-128) + 128) >> 8    G = (298 (Y-16) - 100 (U-128) - 208 (V-128) + 128) >> 8
             B = (298 (Y-16) + 516 (U-128) + 128) >> 8
    BT.709   R = (298 (Y-16) + 459 (V-128) + 128) >> 8    G = (298 (Y-16) -  55 (U-128) - 136 (V-128) + 128) >> 8
             B = (298 (Y-16) + 541 (U-128) + 128) >> 8

(298 = 256 * 255 / 219; the others are 256 * 255 / 224 * the matrices' factors: BT.601 1.402, 0.344, 0.714,
1.772; BT.709 1.5748, 0.1873, 0.4681, 1.8556.) Full-range NV12 (JPEG cameras) is not handled: it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MATRICES = {"bt601": (409, 100, 208, 516), "bt709": (459, 55, 136, 541)}  # R from V; G from U, V; B from U


@dataclass
class Nv12Image:
    """One NV12 frame: y uint8 [h, w], uv uint8 [ceil(h/2), ceil(w/2), 2] (U, V), the colour matrix its caps
    name ("bt601" or "bt709") and whether it is full range."""

    y: np.ndarray
    uv: np.ndarray
    matrix: str = "bt601"
    full_range: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.y.shape[0]), int(self.y.shape[1]))

    def check(self, what: str = "NV12 frame") -> None:
        """Raise ValueError naming what is wrong (plane shapes, dtype, matrix, range)."""
        h, w = self.shape
        want = ((h + 1) // 2, (w + 1) // 2, 2)
        if self.y.dtype != np.uint8 or self.uv.dtype != np.uint8 or self.y.ndim != 2 or self.uv.shape != want:
            raise ValueError(f"{what}: y {self.y.shape} {self.y.dtype}, uv {self.uv.shape} {self.uv.dtype}; expected uv {want} uint8")
        if self.matrix not in MATRICES:
            raise ValueError(f"{what}: colour matrix {self.matrix!r}, expected one of {sorted(MATRICES)}")
        if self.full_range:
            raise ValueError(f"{what}: full-range NV12 is not supported (limited range only)")


def nv12_to_bgr(img: Nv12Image) -> np.ndarray:
    """BGR uint8 [h, w, 3] by the fixed-point formulas of the module doc."""
    img.check()
    h, w = img.shape
    kr, kgu, kgv, kb = MATRICES[img.matrix]
    uv = img.uv.astype(np.int32).repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
    c = 298 * (img.y.astype(np.int32) - 16)
    d, e = uv[..., 0] - 128, uv[..., 1] - 128
    out = np.empty((h, w, 3), np.uint8)
    out[..., 0] = np.clip((c + kb * d + 128) >> 8, 0, 255)
    out[..., 1] = np.clip((c - kgu * d - kgv * e + 128) >> 8, 0, 255)
    out[..., 2] = np.clip((c + kr * e + 128) >> 8, 0, 255)
    return out
