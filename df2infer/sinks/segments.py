"""Files that never fill the disk: a file sink cut into segments by time or size, old segments deleted
past a retention limit, and a full disk survived.

`Segmented(make, path, policy)` wraps a file sink factory (`make(segment_path)` -> a sink with
write/close, e.g. a JsonlSink or a VideoSink). Segments are named `<stem>.<UTC start time>.<seq><suffix>`
next to `path` (e.g. `detections.20261203-091700.0001.jsonl`), so they sort by time; a new one starts when
the current one is `policy.max_seconds` old or `policy.max_bytes` large. After each cut the oldest
segments of that name are deleted while there are more than `policy.keep` or they total more than
`policy.keep_bytes` (the current segment is never deleted).

When the disk is full (ENOSPC / EDQUOT from a write, a flush or an open) the sink logs one error naming the
folder, closes the broken segment and stops writing; the frames it could not write are counted
(`skipped`). Every `retry_s` seconds it tries a new segment, so writing resumes by itself when space returns.
The caller's loop never sees the error: the other outputs keep running. Any other OSError is raised."""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from df2infer.results import FrameResult
from df2infer.sinks.base import Sink, SinkProtocol

log = logging.getLogger(__name__)

_FULL = (errno.ENOSPC, errno.EDQUOT)
_SIZES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_TIMES = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class SegmentPolicy:
    """When to cut (max_seconds, max_bytes: whichever comes first; None = never by that measure) and what
    to keep (keep: segments per file name, keep_bytes: their total size; None = no limit)."""

    max_seconds: float | None = None
    max_bytes: int | None = None
    keep: int | None = None
    keep_bytes: int | None = None
    retry_s: float = 5.0

    @classmethod
    def parse(cls, segment: str, retain: str | None = None) -> SegmentPolicy:
        """`segment`: a duration (`30s`, `10m`, `1h`, `1d`) or a size (`50MB`, `1G`); several joined by
        commas cut at whichever comes first. `retain`: a count (`24`) or a total size (`2GB`), or both
        joined by a comma. Sizes are decimal (1 MB = 10^6 bytes)."""
        max_s: float | None = None
        max_b: int | None = None
        for part in filter(None, (p.strip() for p in segment.split(","))):
            kind, value = _parse_amount(part, "--segment")
            if kind == "time":
                max_s = value
            else:
                max_b = int(value)
        if max_s is None and max_b is None:
            raise ValueError(f"--segment {segment!r}: expected a duration (30s, 10m, 1h) or a size (50MB, 1G)")
        keep: int | None = None
        keep_b: int | None = None
        for part in filter(None, (p.strip() for p in (retain or "").split(","))):
            if part.isdigit():
                keep = int(part)
                if keep < 1:
                    raise ValueError(f"--retain {retain!r}: a count must be at least 1")
                continue
            kind, value = _parse_amount(part, "--retain")
            if kind != "size":
                raise ValueError(f"--retain {retain!r}: expected a count of segments (24) or a total size (2GB), got the duration {part!r}")
            keep_b = int(value)
        return cls(max_seconds=max_s, max_bytes=max_b, keep=keep, keep_bytes=keep_b)


def _parse_amount(text: str, option: str) -> tuple[str, float]:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]+)", text)
    unit = m.group(2).lower() if m else ""
    if m and unit in _TIMES:
        return "time", float(m.group(1)) * _TIMES[unit]
    if m and unit in _SIZES:
        return "size", float(m.group(1)) * _SIZES[unit]
    raise ValueError(f"{option} {text!r}: expected a number with a unit: s, m, h, d (time) or B, KB, MB, GB, TB (size)")


def disk_full(e: BaseException) -> bool:
    """Is this the file system running out of space (ENOSPC, EDQUOT), however the library wrapped it?"""
    while e is not None:
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


class Segmented(Sink):
    """One file sink at a time, cut by `policy`; see the module doc. `segments` lists the paths this sink
    made (deleted ones included); `skipped` counts the results not written because the disk was full;
    `written` those written; `error` is the last disk-full message (None while writing)."""

    def __init__(
        self,
        make: Callable[[str], SinkProtocol],
        path: str | os.PathLike,
        policy: SegmentPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.make = make
        p = Path(path)
        self.folder, self.stem, self.suffix = p.parent, p.stem, p.suffix
        self.policy = policy
        self.clock, self.now = clock, now
        self.current: SinkProtocol | None = None
        self.current_path: str | None = None
        self.opened_at = 0.0
        self.segments: list[str] = []
        self.seq = 0
        self.written = 0
        self.skipped = 0
        self.error: str | None = None
        self._retry_at = 0.0
        self._pattern = re.compile(re.escape(self.stem) + r"\.\d{8}-\d{6}\.\d{4,}" + re.escape(self.suffix) + r"\Z")

    def write(self, result: FrameResult) -> None:
        t = self.clock()
        if self.error is not None and t < self._retry_at:
            self.skipped += 1
            return
        try:
            if self.current is not None and self._due(t):
                self._close_current()
            if self.current is None:
                self._open(t)
                self._prune()  # the new segment counts towards the limit
            assert self.current is not None
            self.current.write(result)
        except Exception as e:
            if not disk_full(e):
                raise
            self._on_full(e, t)
            self.skipped += 1
            return
        self.written += 1
        if self.error is not None:
            log.warning("%s: writing again to %s after %d results were skipped", self.stem + self.suffix, self.current_path, self.skipped)
            self.error = None

    def _due(self, t: float) -> bool:
        p = self.policy
        if p.max_seconds is not None and t - self.opened_at >= p.max_seconds:
            return True
        if p.max_bytes is not None and self.current_path is not None:
            try:
                return os.path.getsize(self.current_path) >= p.max_bytes
            except FileNotFoundError:
                return True  # deleted under us: start a new one
        return False

    def _open(self, t: float) -> None:
        self.seq += 1
        name = f"{self.stem}.{self.now():%Y%m%d-%H%M%S}.{self.seq:04d}{self.suffix}"
        path = str(self.folder / name)
        self.current_path = path
        self.segments.append(path)
        self.opened_at = t
        self.current = self.make(path)

    def _close_current(self) -> None:
        cur, self.current = self.current, None
        if cur is not None:
            cur.close()

    def _on_full(self, e: BaseException, t: float) -> None:
        """Drop the broken segment (its close may fail again for the same reason) and wait retry_s."""
        cur, self.current = self.current, None
        close_error = ""
        if cur is not None:
            try:
                cur.close()
            except Exception as ce:  # noqa: BLE001 - a second disk-full on close: reported in the one message below
                if not disk_full(ce):
                    raise
                close_error = " (closing the segment failed the same way)"
        self._retry_at = t + self.policy.retry_s
        if self.error is None:
            self.error = f"{self.folder}: the disk is full ({e}); {self.current_path} stops here{close_error}"
            log.error(
                "%s; not writing %s until space returns (retrying every %g s; the other outputs keep running)",
                self.error,
                self.stem + "*" + self.suffix,
                self.policy.retry_s,
            )
        self._prune()  # retention may free space for the next try

    def existing(self) -> list[Path]:
        """This name's segments in the folder, oldest first (from earlier runs too)."""
        return sorted(p for p in self.folder.glob(f"{self.stem}.*{self.suffix}") if self._pattern.match(p.name))

    def _prune(self) -> None:
        keep, keep_bytes = self.policy.keep, self.policy.keep_bytes
        if keep is None and keep_bytes is None:
            return
        files = [p for p in self.existing() if str(p) != self.current_path]
        sizes = {p: p.stat().st_size for p in files}
        current = os.path.getsize(self.current_path) if self.current_path and self.current and os.path.exists(self.current_path) else 0
        n_current = 1 if self.current is not None else 0

        def over() -> bool:
            too_many = keep is not None and len(files) + n_current > keep
            return too_many or (keep_bytes is not None and sum(sizes[p] for p in files) + current > keep_bytes)

        while files and over():
            oldest = files.pop(0)
            oldest.unlink(missing_ok=True)
            log.info("retention: deleted %s", oldest)

    def close(self) -> None:
        try:
            self._close_current()
        except Exception as e:
            if not disk_full(e):
                raise
            log.error("%s: the disk is full; %s could not be closed cleanly (%s)", self.folder, self.current_path, e)
        self._prune()


__all__ = ["SegmentPolicy", "Segmented", "disk_full"]
