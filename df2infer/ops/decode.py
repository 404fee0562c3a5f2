"""Graph outputs -> Detections for one image, the numpy reference: score filter, boxes back to image pixels
(letterbox inverse), optional class-agnostic suppression, mask pasting, landmark decoding, embeddings.

`outputs` are the contract's padded host arrays for a batch (df2infer.contract.OUTPUT_NAMES); rows at or
beyond num_dets[b] are padding and never read.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from df2infer.ops.boxes import clip_boxes, suppress_overlaps
from df2infer.ops.landmarks import LANDMARK_METHODS, decode_landmarks
from df2infer.ops.letterbox import LetterboxInfo, scale_boxes_back
from df2infer.ops.masks import paste_masks
from df2infer.results import Detections


def decode_detections(outputs: Mapping[str, np.ndarray], b: int, info: LetterboxInfo, *, conf: float = 0.3,
                      masks: bool = True, landmarks: bool = True, embeddings: bool = True, mask_threshold: float = 0.5,
                      landmark_method: str = "subpixel", suppress_iou: float | None = None, path: str | None = None,
                      source: int | None = None) -> Detections:
    """The Detections of image `b` of a batch's outputs, in the original image's pixels (`info`: its letterbox).

    conf: minimum score kept; suppress_iou: drop items overlapping a higher-scoring one by IoU > this
    (None: off); masks / landmarks / embeddings: compute those parts (see ops.masks.paste_masks at
    mask_threshold, ops.landmarks.decode_landmarks with landmark_method)."""
    if landmark_method not in LANDMARK_METHODS:
        raise ValueError(f"landmark_method={landmark_method!r}, expected one of {LANDMARK_METHODS}")
    size = (info.orig_h, info.orig_w)
    n = int(min(max(int(outputs["num_dets"][b]), 0), outputs["scores"].shape[1]))
    scores = outputs["scores"][b, :n]
    idx = np.flatnonzero(scores >= conf)
    raw = scale_boxes_back(outputs["boxes"][b, idx], info, clip=False)
    if suppress_iou is not None and len(idx) > 1:
        keep = np.sort(suppress_overlaps(raw, scores[idx], suppress_iou))
        idx, raw = idx[keep], raw[keep]
    labels = outputs["labels"][b, idx].astype(np.int32)
    pasted, extents = None, None
    if masks:
        # Masks and landmarks are box-relative to the graph's (unclipped) boxes.
        pasted, extents = paste_masks(outputs["masks"][b, idx], raw, size, mask_threshold)
    points = decode_landmarks(outputs["landmark_heatmaps"][b, idx], raw, labels, landmark_method) if landmarks else None
    emb = np.array(outputs["embeddings"][b, idx], dtype=np.float32) if embeddings else None
    return Detections(boxes=clip_boxes(raw, size), scores=scores[idx].astype(np.float32), labels=labels,
                      image_size=size, masks=pasted, mask_boxes=extents, landmarks=points, embeddings=emb,
                      path=path, source=source)


__all__ = ["decode_detections"]
