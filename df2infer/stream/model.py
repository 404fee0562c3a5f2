"""The stream pipeline's model call: the Predictor's public `predict_batch` with the DecodeOptions fixed once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from df2infer.ops.options import DUPLICATE_IOU, DecodeOptions
from df2infer.results import Detections

__all__ = ["DUPLICATE_IOU", "BatchPredictor", "stream_options"]


def stream_options(conf: float = 0.3, *, keep_duplicates: bool = False, **changes) -> DecodeOptions:
    """The DecodeOptions video, demo and detect use: cross-category duplicates suppressed at DUPLICATE_IOU
    unless keep_duplicates (evaluation keeps them: DecodeOptions() itself)."""
    return DecodeOptions(conf=conf, suppress_iou=None if keep_duplicates else DUPLICATE_IOU).replace(**changes)


class BatchPredictor:
    """predict_batch(images) -> one Detections per image, with the DecodeOptions fixed at construction
    (default: stream_options(), without embeddings)."""

    def __init__(self, predictor, options: DecodeOptions | None = None):
        self.predictor = predictor
        self.max_batch = int(predictor.backend.max_batch)
        self.options = options if options is not None else stream_options(embeddings=False)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self.predictor.predict_batch(images, self.options)
