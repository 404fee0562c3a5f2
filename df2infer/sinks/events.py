"""Events from the results: one summary per frame and the tracks' comings and goings, as JSON-ready dicts
(schema EVENT_SCHEMA, docs/video.md "Events"). Made by the MQTT sink (df2infer.sinks.mqtt); no I/O here.

A track *appears* on the first frame that carries its id; it *leaves* when its source has gone
`leave_after` frames without it (the tracker may still re-identify it later: that is a new appearance
with the same id), or when the run ends. Dwell is the time between its first and its last frame: capture
times for live sources, frame index / fps for files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from df2infer.data import spec
from df2infer.results import FrameInfo, FrameResult

EVENT_SCHEMA = 1


@dataclass
class _Track:
    category: str
    first_index: int
    first_t: float
    last_index: int
    last_t: float


class EventBuilder:
    """events(result) -> the events of one frame, each with a unique `id` ("<run>-<seq>", seq from 1 without
    gaps in the order made); end() -> the leave events of the tracks still present."""

    def __init__(self, leave_after: int = 30, run_id: str | None = None):
        self.leave_after = int(leave_after)
        self.run_id = run_id or os.urandom(4).hex()
        self.seq = 0
        self.tracks: dict[int, dict[int, _Track]] = {}  # source id -> track id -> state
        self.last: dict[int, tuple[FrameInfo, float]] = {}  # source id -> its last frame and its time

    def _event(self, kind: str, info: FrameInfo, t: float, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {
            "schema": EVENT_SCHEMA,
            "id": f"{self.run_id}-{self.seq}",
            "type": kind,
            "source": info.display_name,
            "source_id": info.source_id,
            "frame_index": info.index,
            "time": round(t, 3),
            **fields,
        }

    @staticmethod
    def _time(info: FrameInfo) -> float:
        if info.live and info.wall_time is not None:
            return info.wall_time
        return info.index / (info.fps or 30.0)

    def events(self, result: FrameResult) -> list[dict[str, Any]]:
        info, det = result.info, result.detections
        t = self._time(info)
        self.last[info.source_id] = (info, t)
        out: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        ids: list[int] = []
        if det.ok:
            for c in det.labels:  # type: ignore[union-attr]
                name = spec.category(int(c)).name
                counts[name] = counts.get(name, 0) + 1
            track_ids = getattr(det, "track_ids", None)
            if track_ids is not None:
                ids = [int(x) for x in track_ids]
        summary: dict[str, Any] = {"counts": counts, "items": sum(counts.values()), "tracks": ids}
        if not det.ok:
            summary["error"] = det.to_dict().get("error")
        out.append(self._event("frame", info, t, **summary))
        tracks = self.tracks.setdefault(info.source_id, {})
        if det.ok and ids:
            for tid, c in zip(ids, det.labels):  # type: ignore[union-attr]
                tr = tracks.get(tid)
                if tr is None:
                    tr = tracks[tid] = _Track(spec.category(int(c)).name, info.index, t, info.index, t)
                    out.append(self._event("appear", info, t, track_id=tid, category=tr.category))
                tr.last_index, tr.last_t = info.index, t
        for tid, tr in list(tracks.items()):
            if info.index - tr.last_index >= self.leave_after:
                out.append(self._leave(info, tid, tr, "unseen"))
        return out

    def _leave(self, info: FrameInfo, tid: int, tr: _Track, reason: str) -> dict[str, Any]:
        del self.tracks[info.source_id][tid]
        return self._event(
            "leave",
            info,
            tr.last_t,
            track_id=tid,
            category=tr.category,
            first_frame=tr.first_index,
            last_frame=tr.last_index,
            dwell_s=round(tr.last_t - tr.first_t, 3),
            reason=reason,
        )

    def end(self) -> list[dict[str, Any]]:
        out = []
        for sid, tracks in self.tracks.items():
            info, _ = self.last[sid]
            for tid, tr in list(tracks.items()):
                out.append(self._leave(info, tid, tr, "end"))
        return out


__all__ = ["EVENT_SCHEMA", "EventBuilder"]
