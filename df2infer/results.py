"""Per-image results: plain dataclasses, converted to JSON / DeepFashion2 result entries on demand.

Coordinates are original-image pixels; boxes are x1, y1, x2, y2 (float32). Masks are kept compact
(one bool array per item over its integer pixel extent) and expanded or RLE-encoded only when asked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from df2infer.data import spec


@dataclass
class Detections:
    """Detections in one image (n items, sorted by descending score).

    boxes        float32 [n, 4] x1, y1, x2, y2, original image pixels
    scores       float32 [n]
    labels       int32 [n] category ids 1..13 (names: `names`)
    masks        list of n bool arrays, mask i covering mask_boxes[i] = [x0, y0, x1, y1) (int32 [n, 4]);
                 None when masks were not computed
    landmarks    list of n float32 [k_i, 3] arrays (x, y, score logit), k_i = the item's category's
                 landmark count; None when not computed. Names: `landmark_names(i)`
    embeddings   float32 [n, D] matching-network embeddings (see df2infer.matching), or None
    image_size   (h, w) of the original image
    path         the image's file path, or None for arrays
    source       the image's position in the predict() input
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]
    masks: list[np.ndarray] | None = None
    mask_boxes: np.ndarray | None = None
    landmarks: list[np.ndarray] | None = None
    embeddings: np.ndarray | None = None
    path: str | None = None
    source: int | None = None

    ok = True  # a PredictionFailure has ok = False

    @classmethod
    def empty(cls, image_size: tuple[int, int], embedding_dim: int = 0, **kw) -> "Detections":
        return cls(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32), labels=np.zeros(0, np.int32),
                   image_size=image_size, masks=[], mask_boxes=np.zeros((0, 4), np.int32), landmarks=[],
                   embeddings=np.zeros((0, embedding_dim), np.float32), **kw)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, idx) -> "Detections":
        """Subset by an int, a slice, an index array or a bool array; returns a Detections."""
        if isinstance(idx, (int, np.integer)):
            n = len(self)
            if not -n <= int(idx) < n:
                raise IndexError(f"detection index {idx} out of range for {n} detections")
            idx = [int(idx) % n]
        sel = np.arange(len(self))[idx]
        sel = np.atleast_1d(sel)
        pick = lambda seq: None if seq is None else [seq[i] for i in sel]  # noqa: E731
        return Detections(
            boxes=self.boxes[sel], scores=self.scores[sel], labels=self.labels[sel], image_size=self.image_size,
            masks=pick(self.masks), mask_boxes=None if self.mask_boxes is None else self.mask_boxes[sel],
            landmarks=pick(self.landmarks), embeddings=None if self.embeddings is None else self.embeddings[sel],
            path=self.path, source=self.source)

    def filter(self, min_score: float) -> "Detections":
        """The detections with score >= min_score."""
        return self[self.scores >= min_score]

    @property
    def names(self) -> list[str]:
        """Category names (COCO-style, e.g. "short_sleeved_shirt") of the items."""
        return [spec.category(int(c)).name for c in self.labels]

    def landmark_names(self, i: int) -> tuple[str, ...]:
        return spec.category(int(self.labels[i])).landmark_names

    def full_masks(self) -> np.ndarray:
        """bool [n, h, w] full-image masks (allocated on demand)."""
        if self.masks is None or self.mask_boxes is None:
            raise ValueError("these detections carry no masks (predict(..., masks=False))")
        h, w = self.image_size
        full = np.zeros((len(self), h, w), dtype=bool)
        for i, (m, (x0, y0, x1, y1)) in enumerate(zip(self.masks, self.mask_boxes)):
            full[i, y0:y1, x0:x1] = m
        return full

    def full_mask(self, i: int) -> np.ndarray:
        if self.masks is None or self.mask_boxes is None:
            raise ValueError("these detections carry no masks (predict(..., masks=False))")
        h, w = self.image_size
        full = np.zeros((h, w), dtype=bool)
        x0, y0, x1, y1 = self.mask_boxes[i]
        full[y0:y1, x0:x1] = self.masks[i]
        return full

    def rle(self) -> list[dict]:
        """COCO RLE per item ({"size": [h, w], "counts": str}), via pycocotools."""
        from pycocotools import mask as mask_util

        out = []
        for i in range(len(self)):
            r = mask_util.encode(np.asfortranarray(self.full_mask(i).astype(np.uint8)))
            r["counts"] = r["counts"].decode("ascii")
            out.append(r)
        return out

    def to_dict(self, masks: bool = True, landmarks: bool = True, embeddings: bool = False) -> dict[str, Any]:
        """A JSON-ready dict: image info and one entry per item (box xyxy, score, category, and
        optionally RLE mask, landmarks [[x, y, score], ...] and the embedding)."""
        rles = self.rle() if masks and self.masks is not None else None
        items = []
        for i in range(len(self)):
            it: dict[str, Any] = {
                "category_id": int(self.labels[i]), "category": spec.category(int(self.labels[i])).name,
                "score": round(float(self.scores[i]), 5), "box": [round(float(v), 2) for v in self.boxes[i]]}
            if rles is not None:
                it["mask"] = rles[i]
            if landmarks and self.landmarks is not None:
                it["landmarks"] = [[round(float(x), 2), round(float(y), 2), round(float(s), 4)] for x, y, s in self.landmarks[i]]
            if embeddings and self.embeddings is not None:
                it["embedding"] = [round(float(v), 6) for v in self.embeddings[i]]
            items.append(it)
        return {"path": self.path, "source": self.source, "image_size": list(self.image_size), "items": items}

    def to_json(self, **kw) -> str:
        """One-line JSON of to_dict(**kw) (a JSONL line)."""
        return json.dumps(self.to_dict(**kw), separators=(",", ":"))

    def to_df2_results(self, image_id: int) -> dict[str, list[dict]]:
        """Official DeepFashion2 result entries for this image (see df2infer.sinks.result_files)."""
        from df2infer.sinks.result_files import df2_result_entries

        return df2_result_entries(self, image_id)

    def __repr__(self) -> str:
        where = f" {self.path!r}" if self.path else (f" images[{self.source}]" if self.source is not None else "")
        items = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.names[:5], self.scores[:5]))
        more = ", ..." if len(self) > 5 else ""
        return f"Detections({len(self)} in {self.image_size[1]}x{self.image_size[0]}{where}: {items}{more})"


@dataclass
class PredictionFailure:
    """Stands in a prediction list where an input image could not be used.

    index: the position in the input; source: the file path or "images[i]"; error: the exception.
    Falsy and of length 0, with ok = False, so `[d for d in results if d.ok]` keeps the successes.
    """

    index: int
    source: str
    error: BaseException
    ok = False

    @property
    def message(self) -> str:
        return str(self.error)

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return False

    def to_dict(self, **_) -> dict[str, Any]:
        return {"path": self.source, "source": self.index, "error": self.message}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(**kw), separators=(",", ":"))


class Predictions(list):
    """predict()'s return value: a list with one entry per input image, in input order, each a
    Detections or (for an image that could not be read or used) a PredictionFailure.
    `failures` lists the PredictionFailure entries; `ok` the Detections."""

    @property
    def failures(self) -> list[PredictionFailure]:
        return [r for r in self if not r.ok]

    @property
    def ok(self) -> list[Detections]:
        return [r for r in self if r.ok]
