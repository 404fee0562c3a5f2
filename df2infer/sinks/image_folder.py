"""Annotated images into a folder, one file per input, names made unique (a.jpg, a_1.jpg, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from df2infer.results import FrameResult
from df2infer.sinks.annotate import annotated
from df2infer.sinks.base import Sink


class ImageFolderSink(Sink):
    """write(result): the annotated image as <stem of its display name><suffix> (failures are skipped)."""

    def __init__(self, folder: str | os.PathLike, suffix: str = ".jpg"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.suffix = suffix
        self._used: set[str] = set()
        self.paths: list[Path] = []

    def write(self, result: FrameResult) -> None:
        if result.ok:
            self.paths.append(self.write_image(annotated(result), result.info.display_name))

    def write_image(self, image: np.ndarray, name: str) -> Path:
        """Write `image` as <stem of name><suffix>; returns the path written."""
        import cv2

        stem = Path(name).stem
        n, k = stem, 1
        while n in self._used:
            n, k = f"{stem}_{k}", k + 1
        self._used.add(n)
        path = self.folder / f"{n}{self.suffix}"
        if not cv2.imwrite(str(path), image):
            raise OSError(f"{path}: cv2.imwrite failed (unwritable folder or unknown suffix {self.suffix!r})")
        return path
