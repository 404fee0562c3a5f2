"""JSON Lines: one line per frame or image, flushed as written (a killed run keeps every line up to
the last processed frame)."""

from __future__ import annotations

import json
import os
from typing import Any


def frame_record(result, masks: bool = False, landmarks: bool = True, embeddings: bool = False) -> dict[str, Any]:
    """The JSON record of a stream FrameResult: source (its name), source_id, frame_index, timestamp
    (capture, Unix seconds), pts (media seconds, files), image_size and items (box xyxy, score, category,
    landmarks [[x, y, score], ...], track_id; optionally the RLE mask and the embedding). The ids, index,
    time and track ids are the Detections' own fields (source, frame_index, timestamp, track_ids)."""
    det = result.detections
    d = det.to_dict(masks=masks, landmarks=landmarks, embeddings=embeddings)
    if det.track_ids is not None:
        for it, tid in zip(d["items"], det.track_ids):
            it["track_id"] = int(tid)
    pts = result.frame.pts
    return {
        "source": result.frame.source,
        "source_id": det.source,
        "frame_index": det.frame_index,
        "timestamp": None if det.timestamp is None else round(det.timestamp, 6),
        "pts": None if pts is None else round(pts, 6),
        "image_size": d["image_size"],
        "items": d["items"],
    }


class JsonlSink:
    """write(record) appends one JSON line and flushes it to the OS."""

    def __init__(self, path: str | os.PathLike, fsync: bool = False):
        self.path = os.fspath(path)
        self.fsync = fsync
        self._f = open(self.path, "w")
        self.lines = 0

    def write(self, record: dict[str, Any] | str) -> None:
        line = record if isinstance(record, str) else json.dumps(record, separators=(",", ":"))
        self._f.write(line + "\n")
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.lines += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
