"""The stream pipeline's model call: the Predictor's public `predict_batch` with the options fixed once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from df2infer.results import Detections

# Cross-category duplicates: the bundled model often reports one garment as two or three similar
# categories (short-sleeved shirt + vest + long-sleeved shirt) with IoU > 0.85. Video and detect
# keep the best-scoring one by default (df2infer.ops.boxes.suppress_overlaps); evaluation keeps all.
DUPLICATE_IOU = 0.85


class BatchPredictor:
    """predict_batch(images, sources) -> one Detections per image, with the options fixed at construction."""

    def __init__(
        self,
        predictor,
        conf: float = 0.3,
        keep_duplicates: bool = False,
        masks: bool = True,
        landmarks: bool = True,
        embeddings: bool = True,
    ):
        self.predictor = predictor
        self.max_batch = int(predictor.backend.max_batch)
        self.options = dict(
            conf=conf, masks=masks, landmarks=landmarks, embeddings=embeddings, suppress_iou=None if keep_duplicates else DUPLICATE_IOU
        )

    def predict_batch(self, images: Sequence[np.ndarray], sources: Sequence[int] | None = None) -> list[Detections]:
        """`sources`: each result's Detections.source (default: its position in `images`)."""
        return self.predictor.predict_batch(images, sources=sources, **self.options)
