"""Graph outputs -> Detections for one image, the numpy reference: score filter, boxes back to image pixels
(letterbox inverse), optional class-agnostic suppression, mask pasting, landmark decoding, embeddings.

`outputs` are the contract's padded host arrays for a batch (df2infer.contract.OUTPUT_NAMES); rows at or
beyond num_dets[b] are padding and never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from df2infer.ops.boxes import clip_boxes, suppress_overlaps
from df2infer.ops.landmarks import decode_landmarks
from df2infer.ops.letterbox import LetterboxInfo, scale_boxes_back
from df2infer.ops.masks import paste_masks, paste_masks_torchvision
from df2infer.ops.options import DEFAULT_OPTIONS, DecodeOptions
from df2infer.results import Detections


@dataclass
class KeptDetections:
    """The detections of image `b` that pass `conf` (and suppression), before masks and landmarks.

    idx: int [n] rows of the padded outputs; boxes: float32 [n, 4] image pixels, unclipped (masks and landmarks
    are relative to these); scores: float32 [n]; labels: int32 [n]; image_size: (h, w) of the original image."""

    b: int
    idx: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]


def keep_detections(
    outputs: Mapping[str, np.ndarray], b: int, info: LetterboxInfo, *, conf: float = 0.3, suppress_iou: float | None = None
) -> KeptDetections:
    """Score filter, boxes back to image pixels (letterbox inverse), optional class-agnostic suppression.
    Reads only num_dets, scores, boxes and labels (what a GPU backend copies back before its GPU postprocessing)."""
    size = (info.orig_h, info.orig_w)
    n = int(min(max(int(outputs["num_dets"][b]), 0), outputs["scores"].shape[1]))
    scores = outputs["scores"][b, :n]
    idx = np.flatnonzero(scores >= conf)
    raw = scale_boxes_back(outputs["boxes"][b, idx], info, clip=False)
    if suppress_iou is not None and len(idx) > 1:
        keep = np.sort(suppress_overlaps(raw, scores[idx], suppress_iou))
        idx, raw = idx[keep], raw[keep]
    labels = outputs["labels"][b, idx].astype(np.int32)
    return KeptDetections(b=b, idx=idx, boxes=raw, scores=scores[idx].astype(np.float32), labels=labels, image_size=size)


def assemble_detections(
    outputs: Mapping[str, np.ndarray],
    kept: KeptDetections,
    *,
    masks: list[np.ndarray] | None,
    mask_boxes: np.ndarray | None,
    landmarks: list[np.ndarray] | None,
    embeddings: bool = True,
    path: str | None = None,
) -> Detections:
    """Detections from kept detections and their (CPU- or GPU-computed) masks and landmarks."""
    emb = np.array(outputs["embeddings"][kept.b, kept.idx], dtype=np.float32) if embeddings else None
    return Detections(
        boxes=clip_boxes(kept.boxes, kept.image_size),
        scores=kept.scores,
        labels=kept.labels,
        image_size=kept.image_size,
        masks=masks,
        mask_boxes=mask_boxes,
        landmarks=landmarks,
        embeddings=emb,
        path=path,
    )


def decode_detections(
    outputs: Mapping[str, np.ndarray],
    b: int,
    info: LetterboxInfo,
    options: DecodeOptions = DEFAULT_OPTIONS,
    *,
    path: str | None = None,
    mask_paste: str = "grid_sample",
) -> Detections:
    """The Detections of image `b` of a batch's outputs, in the original image's pixels (`info`: its letterbox).

    options: a DecodeOptions (validated when made): conf, suppression, and which parts (masks at
    mask_threshold, landmarks with landmark_method, embeddings) to compute."""
    o = options
    kept = keep_detections(outputs, b, info, conf=o.conf, suppress_iou=o.suppress_iou)
    pasted, extents = None, None
    if o.masks:
        # Masks and landmarks are box-relative to the graph's (unclipped) boxes.
        # the model's pasting rule (contract.mask_paste): torchvision's for masks trained against its targets
        paste = paste_masks_torchvision if mask_paste == "torchvision" else paste_masks
        pasted, extents = paste(outputs["masks"][b, kept.idx], kept.boxes, kept.image_size, o.mask_threshold)
    points = (
        decode_landmarks(outputs["landmark_heatmaps"][b, kept.idx], kept.boxes, kept.labels, o.landmark_method) if o.landmarks else None
    )
    return assemble_detections(outputs, kept, masks=pasted, mask_boxes=extents, landmarks=points, embeddings=o.embeddings, path=path)


__all__ = ["DecodeOptions", "KeptDetections", "assemble_detections", "decode_detections", "keep_detections"]
