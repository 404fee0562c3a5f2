"""JSON Lines: one record per frame or image (results.record, schema in docs/video.md), flushed as
written (a killed run keeps every line up to the last processed frame)."""

from __future__ import annotations

import json
import os
from typing import Any

from df2infer.results import FrameResult
from df2infer.sinks.base import Sink


class JsonlSink(Sink):
    """write(result) appends the result's record (masks/landmarks/embeddings as asked) and flushes it to the OS."""

    def __init__(
        self, path: str | os.PathLike, *, masks: bool = False, landmarks: bool = True, embeddings: bool = False, fsync: bool = False
    ):
        self.path = os.fspath(path)
        self.fsync = fsync
        self.parts = {"masks": masks, "landmarks": landmarks, "embeddings": embeddings}
        self._f = open(self.path, "w")
        self.lines = 0

    def write(self, result: FrameResult) -> None:
        self.write_record(result.record(**self.parts))

    def write_record(self, record: dict[str, Any]) -> None:
        """Append one JSON object as a line."""
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.lines += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
