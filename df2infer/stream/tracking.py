"""Stable item ids across frames, with re-identification by Match R-CNN's embeddings.

Why not a tracker library: roboflow `trackers` (2.6.1) declares `opencv-python>=4.8.0` as a hard
dependency (`pip install --dry-run trackers` would add opencv-python 5.0.0.93, plus supervision,
scipy, matplotlib, ...), a second OpenCV distribution next to `opencv-python-headless` (both own the
`cv2` package; whichever installs last wins); installing it with --no-deps leaves `pip check` broken.
`norfair` (2.3.0) pins numpy < 2 (the runtime has numpy 2). Neither installs cleanly into this runtime,
so the association (greedy, like SORT's IoU gating; Hungarian would need scipy, which the runtime does
not otherwise need) lives here:

1. active tracks (seen within `max_age` frames) are matched to detections by IoU of boxes,
   same category preferred, gated at `iou_threshold`; ties resolved by the embedding similarity;
2. detections left over are compared with lost tracks (unseen for up to `reid_max_age` frames) by the
   model's own similarity network (the probability that two embeddings are the same item, see
   df2infer.retrieval.similarity); a probability >= `reid_threshold` with the same category gives the old id back
   (an item that left the frame and came back);
3. anything else starts a new id. A track's embedding is an exponential moving average.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from df2infer.ops.boxes import box_iou


@dataclass
class Track:
    id: int
    box: np.ndarray
    label: int
    embedding: np.ndarray | None
    last_frame: int
    hits: int = 1


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a @ b.T + 1) / 2


class Tracker:
    """One tracker per source. update(detections, frame_index) -> int64 [n] ids, one per detection."""

    def __init__(
        self,
        similarity: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        iou_threshold: float = 0.3,
        max_age: int = 30,
        reid_threshold: float = 0.7,
        reid_max_age: int = 900,
        ema: float = 0.8,
    ):
        self.similarity = similarity or _cosine
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.reid_threshold = reid_threshold
        self.reid_max_age = reid_max_age
        self.ema = ema
        self.tracks: list[Track] = []
        self._next_id = 1
        self.reidentified = 0  # ids given back to items that came back

    def _greedy(self, score: np.ndarray, threshold: float) -> list[tuple[int, int]]:
        pairs: list[tuple[int, int]] = []
        if score.size == 0:
            return pairs
        order = np.argsort(-score, axis=None, kind="stable")
        used_t, used_d = set(), set()
        for flat in order:
            t, d = np.unravel_index(flat, score.shape)
            if score[t, d] < threshold:
                break
            if t in used_t or d in used_d:
                continue
            used_t.add(t)
            used_d.add(d)
            pairs.append((int(t), int(d)))
        return pairs

    def update(self, det, frame_index: int) -> np.ndarray:
        n = len(det)
        ids = np.zeros(n, np.int64)
        boxes = np.asarray(det.boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(det.labels).reshape(-1)
        emb = det.embeddings if getattr(det, "embeddings", None) is not None and len(det.embeddings) == n else None
        # forget tracks too old even for re-identification
        self.tracks = [t for t in self.tracks if frame_index - t.last_frame <= self.reid_max_age]
        active = [t for t in self.tracks if frame_index - t.last_frame <= self.max_age]
        free = set(range(n))
        if active and n:
            iou = box_iou(np.stack([t.box for t in active]), boxes)
            same = np.array([[t.label == lab for lab in labels] for t in active], bool)
            score = iou + 0.1 * same.astype(np.float32)  # same category preferred among similar overlaps
            embs = [t.embedding for t in active if t.embedding is not None]
            if emb is not None and len(embs) == len(active):
                score = score + 0.05 * self.similarity(np.stack(embs), emb)
            score = np.where(iou >= self.iou_threshold, score, -1.0)
            for ti, d in self._greedy(score, 0.0):
                self._assign(active[ti], d, boxes, labels, emb, frame_index)
                ids[d] = active[ti].id
                free.discard(d)
        lost = [
            t
            for t in self.tracks
            if t.last_frame < frame_index and frame_index - t.last_frame > 0 and t.embedding is not None and t.id not in set(ids.tolist())
        ]
        if free and lost and emb is not None:
            fd = sorted(free)
            p = self.similarity(np.stack([t.embedding for t in lost if t.embedding is not None]), emb[fd])
            same = np.array([[t.label == labels[d] for d in fd] for t in lost], bool)
            # an active track that simply was not matched by IoU (fast motion) may also come back here
            p = np.where(same, p, 0.0)
            for ti, j in self._greedy(p, self.reid_threshold):
                d = fd[j]
                t = lost[ti]
                if frame_index - t.last_frame > self.max_age:
                    self.reidentified += 1
                self._assign(t, d, boxes, labels, emb, frame_index)
                ids[d] = t.id
                free.discard(d)
        for d in sorted(free):
            t = Track(self._next_id, boxes[d].copy(), int(labels[d]), None if emb is None else np.array(emb[d], np.float32), frame_index)
            self._next_id += 1
            self.tracks.append(t)
            ids[d] = t.id
        return ids

    def _assign(self, t: Track, d: int, boxes, labels, emb, frame_index: int) -> None:
        t.box = boxes[d].copy()
        t.label = int(labels[d])
        t.last_frame = frame_index
        t.hits += 1
        if emb is not None:
            e = np.asarray(emb[d], np.float32)
            t.embedding = e if t.embedding is None else self.ema * t.embedding + (1 - self.ema) * e
