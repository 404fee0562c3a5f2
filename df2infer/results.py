"""Per-image results: plain dataclasses, converted to JSON on demand (DeepFashion2 result files:
df2infer.eval.results).

Detections holds what was found in one image (per-item columns and the image size); FrameInfo holds the
facts of the frame it was found in (which source, which frame, when), and travels beside it. `record`
is the one serializer of both into the versioned JSON Lines record (JSONL_SCHEMA, docs/video.md).

Coordinates are original-image pixels; boxes are x1, y1, x2, y2 (float32). Masks are kept compact
(one bool array per item over its integer pixel extent) and expanded or RLE-encoded only when asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    embeddings   float32 [n, D] matching-network embeddings (see df2infer.retrieval), or None
    image_size   (h, w) of the original image
    path         the image's file path when predict() read it from a file, else None
    track_ids    int64 [n] track id per item when a tracker assigned them, else None

    The arrays' shapes are checked when a Detections is made (ValueError naming the field).
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
    track_ids: np.ndarray | None = None

    ok = True  # a PredictionFailure has ok = False

    def __post_init__(self) -> None:
        n = len(self.scores) if hasattr(self.scores, "__len__") else -1

        def bad(name: str, got: object, want: str) -> ValueError:
            return ValueError(f"Detections: {name} is {got}, expected {want} (n = {n} items)")

        if not (isinstance(self.scores, np.ndarray) and self.scores.ndim == 1):
            raise bad("scores", _shape(self.scores), "a 1-D array [n]")
        if not (isinstance(self.boxes, np.ndarray) and self.boxes.shape == (n, 4)):
            raise bad("boxes", _shape(self.boxes), "an array [n, 4]")
        if not (isinstance(self.labels, np.ndarray) and self.labels.shape == (n,)):
            raise bad("labels", _shape(self.labels), "an array [n]")
        if len(self.image_size) != 2 or min(int(v) for v in self.image_size) <= 0:
            raise bad("image_size", self.image_size, "(h, w) with h, w > 0")
        if (self.masks is None) != (self.mask_boxes is None):
            raise bad("masks / mask_boxes", "only one of the two", "both or neither")
        if self.masks is not None and len(self.masks) != n:
            raise bad("masks", f"a list of {len(self.masks)}", "one mask per item")
        if self.mask_boxes is not None and self.mask_boxes.shape != (n, 4):
            raise bad("mask_boxes", _shape(self.mask_boxes), "an array [n, 4]")
        if self.landmarks is not None and len(self.landmarks) != n:
            raise bad("landmarks", f"a list of {len(self.landmarks)}", "one array per item")
        if self.embeddings is not None and (self.embeddings.ndim != 2 or len(self.embeddings) != n):
            raise bad("embeddings", _shape(self.embeddings), "an array [n, D]")
        if self.track_ids is not None and np.shape(self.track_ids) != (n,):
            raise bad("track_ids", _shape(self.track_ids), "an array [n]")

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, idx) -> Detections:
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
            boxes=self.boxes[sel],
            scores=self.scores[sel],
            labels=self.labels[sel],
            image_size=self.image_size,
            masks=pick(self.masks),
            mask_boxes=None if self.mask_boxes is None else self.mask_boxes[sel],
            landmarks=pick(self.landmarks),
            embeddings=None if self.embeddings is None else self.embeddings[sel],
            path=self.path,
            track_ids=None if self.track_ids is None else np.asarray(self.track_ids)[sel],
        )

    def filter(self, min_score: float) -> Detections:
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
                "category_id": int(self.labels[i]),
                "category": spec.category(int(self.labels[i])).name,
                "score": round(float(self.scores[i]), 5),
                "box": [round(float(v), 2) for v in self.boxes[i]],
            }
            if rles is not None:
                it["mask"] = rles[i]
            if landmarks and self.landmarks is not None:
                # tolist(): the same floats as float() of each numpy scalar, without a scalar object per value
                it["landmarks"] = [[round(x, 2), round(y, 2), round(s, 4)] for x, y, s in np.asarray(self.landmarks[i]).tolist()]
            if embeddings and self.embeddings is not None:
                it["embedding"] = [round(float(v), 6) for v in self.embeddings[i]]
            items.append(it)
        if self.track_ids is not None:
            for it, tid in zip(items, self.track_ids):
                it["track_id"] = int(tid)
        return {"path": self.path, "image_size": list(self.image_size), "items": items}

    def to_json(self, **kw) -> str:
        """One-line JSON of to_dict(**kw) (a JSONL line)."""
        return json.dumps(self.to_dict(**kw), separators=(",", ":"))

    def __repr__(self) -> str:
        where = f" {self.path!r}" if self.path else ""
        items = ", ".join(f"{n} {s:.2f}" for n, s in zip(self.names[:5], self.scores[:5]))
        more = ", ..." if len(self) > 5 else ""
        return f"Detections({len(self)} in {self.image_size[1]}x{self.image_size[0]}{where}: {items}{more})"


def _shape(x: object) -> object:
    return f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


@dataclass(frozen=True)
class FrameInfo:
    """The facts of one frame or image, held once and written by `record`.

    source_id     the source's number (a stream's source id; for predict()/detect, the input position)
    display_name  the source's name as every output shows it (JSONL "source", window titles, file names)
    index         the frame's number within its source (0 for a single image)
    wall_time     capture time, Unix seconds (time.time() when the reader got the frame); None for images
    pts           the frame's position in the media, seconds, where the container says (files); else None
    live          a live source (camera, network stream): its frames are timed by wall_time
    fps           the source's frame rate when known, else None
    """

    source_id: int
    display_name: str
    index: int = 0
    wall_time: float | None = None
    pts: float | None = None
    live: bool = False
    fps: float | None = None

    @classmethod
    def of_input(cls, position: int, name: str) -> FrameInfo:
        """The FrameInfo of predict()'s input number `position` named `name` (its path or "images[i]")."""
        return cls(source_id=int(position), display_name=name)


# The JSON Lines record's version (docs/video.md): 2 = "source" is the display name everywhere, "source_id"
# the number, "schema" on every line. 1 (unversioned) had "source" an int in detect/demo and a name in video.
JSONL_SCHEMA = 2


def _round(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


def record(
    info: FrameInfo, result: Detections | PredictionFailure, *, masks: bool = True, landmarks: bool = True, embeddings: bool = False
) -> dict[str, Any]:
    """The one JSONL record of a frame or image (detect, demo and video write it; docs/video.md):

    {"schema": 2, "source": display name, "source_id": int, "frame_index": int, "timestamp": capture Unix
    seconds or null, "pts": media seconds or null, "path": file path or null, then either "image_size" and
    "items" (box xyxy, score, category, and as asked RLE mask, landmarks, embedding, track_id) or "error"}."""
    head: dict[str, Any] = {
        "schema": JSONL_SCHEMA,
        "source": info.display_name,
        "source_id": info.source_id,
        "frame_index": info.index,
        "timestamp": _round(info.wall_time),
        "pts": _round(info.pts),
    }
    if not result.ok:
        return {**head, **result.to_dict()}
    return {**head, **result.to_dict(masks=masks, landmarks=landmarks, embeddings=embeddings)}


@dataclass
class PredictionFailure:
    """Stands in a prediction list where an input image could not be used.

    index: the position in the input; source: its display name (the file path or "images[i]", as
    FrameInfo.display_name and the JSONL "source"); error: the exception.
    Falsy and of length 0, with ok = False, so `[d for d in results if d.ok]` keeps the successes.
    """

    index: int
    source: str
    error: BaseException
    path: str | None = None
    ok = False

    @property
    def message(self) -> str:
        return str(self.error)

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return False

    @property
    def info(self) -> FrameInfo:
        return FrameInfo.of_input(self.index, self.source)

    def to_dict(self, **_) -> dict[str, Any]:
        return {"path": self.path, "error": self.message}

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


@dataclass
class FrameResult:
    """One frame's or image's result, what every sink's write() takes: its facts (`info`: source id,
    display name, index, capture wall time, pts, live, fps), what was found (`detections`, with track_ids
    when tracking; a PredictionFailure for an image that could not be read) and the decoded image (None
    for a failure)."""

    info: FrameInfo
    detections: Detections | PredictionFailure
    image: np.ndarray | None = None
    output_time: float = 0.0  # time.time() when handed to the caller (streams)
    annotated: np.ndarray | None = None  # the drawn image, made once by sinks.annotate.annotated for every sink

    @property
    def ok(self) -> bool:
        return bool(self.detections.ok)

    def record(self, **kw: Any) -> dict[str, Any]:
        """The JSONL record (results.record) of this result."""
        return record(self.info, self.detections, **kw)

    def video_time(self) -> float | None:
        """The frame's time for a video sink: capture (wall) time for live sources; None for files and
        images (evenly spaced at the source's frame rate; a looping file's pts restart at 0)."""
        return self.info.wall_time if self.info.live else None

    @property
    def age_s(self) -> float:
        """Seconds from capture to output."""
        return self.output_time - (self.info.wall_time or self.output_time)
