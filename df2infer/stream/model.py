"""The adapter between the stream pipeline and the Predictor: one call per batch of frames.

Kept in one place so the switch to the Predictor's public batch call is a one-line change."""
from __future__ import annotations

import numpy as np

from df2infer.results import Detections

# Cross-category duplicates: the bundled model often reports one garment as two or three similar
# categories (short-sleeved shirt + vest + long-sleeved shirt) with IoU > 0.85. Video and detect
# keep the best-scoring one by default; evaluation keeps all.
DUPLICATE_IOU = 0.85


class BatchPredictor:
    """predict_batch(images) -> one Detections per image, with the options fixed at construction."""

    def __init__(self, predictor, conf: float = 0.3, keep_duplicates: bool = False, masks: bool = True,
                 landmarks: bool = True, embeddings: bool = True):
        self.predictor = predictor
        self.max_batch = int(predictor.backend.max_batch)
        self.options = dict(conf=conf, masks=masks, landmarks=landmarks, embeddings=embeddings,
                            suppress_iou=None if keep_duplicates else DUPLICATE_IOU)

    def predict_batch(self, images: list[np.ndarray]) -> list[Detections]:
        if len(images) > self.max_batch:
            raise ValueError(f"predict_batch: {len(images)} images, more than the model's max_batch {self.max_batch}")
        return list(self.predictor.stream(images, batch_size=len(images), on_error="raise", **self.options))
