"""INT8 calibration images: the one reader shared by the ONNX Runtime (precision.to_int8_qdq) and the
TensorRT (df2infer.engine.builder.CalibrationBatches) paths, so one `--calib-images` folder calibrates the same
images, letterboxed exactly as the runtime does, for both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from df2infer.backends.base import head_score_feed
from df2infer.contract import HEAD_SCORE_INPUT, INPUT_NAME, Contract
from df2infer.images import IMAGE_SUFFIXES, list_images, read_image
from df2infer.ops.letterbox import to_input_batch


def list_calibration_images(images_dir: str | os.PathLike, num_images: int | None = None) -> list[Path]:
    """The image files (df2infer.images.IMAGE_SUFFIXES) under `images_dir`, recursively, sorted by relative
    path, the first `num_images`. FileNotFoundError naming the folder when it is missing or has none."""
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: calibration image folder not found")
    files = list_images(root, recursive=True)
    if num_images is not None:
        files = files[:num_images]
    if not files:
        raise FileNotFoundError(f"{root}: no calibration images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def calibration_batch(files: Sequence[str | os.PathLike], contract: Contract, out: np.ndarray | None = None) -> np.ndarray:
    """Read and letterbox `files` as the graph input: float32 [len(files), 3, H, W] (into `out` if given)."""
    batch, _ = to_input_batch([read_image(p) for p in files], contract, out=out)
    return batch


class ImageFolderReader:
    """onnxruntime CalibrationDataReader over image files: one float32 [1, 3, H, W] batch per image
    (calibration_batch). `served` counts the batches handed out (the cache tests check it stays 0 on a
    cache hit)."""

    def __init__(self, files: Sequence[Path], contract: Contract, input_name: str = INPUT_NAME):
        self.files = list(files)
        self.contract = contract
        self.input_name = input_name
        self.served = 0
        self._it: Iterator[Path] | None = None
        self._start, self._end = 0, len(self.files)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = iter(self.files[self._start : self._end])
        path = next(self._it, None)
        if path is None:
            return None
        batch = calibration_batch([path], self.contract)
        self.served += 1
        if self.contract.gated_heads:  # heads on every detection while calibrating
            return {self.input_name: batch, HEAD_SCORE_INPUT: head_score_feed(None)}
        return {self.input_name: batch}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def __len__(self) -> int:
        return len(self.files)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end, self._it = start_index, end_index, None

    def rewind(self) -> None:
        self._it = None


__all__ = ["ImageFolderReader", "calibration_batch", "list_calibration_images"]
