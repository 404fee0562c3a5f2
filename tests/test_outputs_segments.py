"""Files that never fill the disk (df2infer.sinks.segments): rotation by time and size, retention, and a
full disk survived on a real small file system (a 1 MB tmpfs mounted by the test; skipped where mounting
is not permitted, i.e. not root or no CAP_SYS_ADMIN)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from df2infer.results import Detections, FrameInfo, FrameResult
from df2infer.sinks.base import Tee
from df2infer.sinks.jsonl import JsonlSink
from df2infer.sinks.segments import Segmented, SegmentPolicy
from df2infer.sinks.video import VideoSink


def _result(i: int, items: int = 3, size=(72, 96)) -> FrameResult:
    h, w = size
    boxes = np.array([[4 + j, 4, 40 + j, 50] for j in range(items)], np.float32)
    det = Detections(boxes=boxes, scores=np.full(items, 0.9, np.float32), labels=np.ones(items, np.int32), image_size=(h, w))
    img = np.zeros((h, w, 3), np.uint8)  # a square moving over a gradient: compressible, like a camera's picture
    img[:] = np.linspace(0, 200, w, dtype=np.uint8)[None, :, None]
    img[10:40, (3 * i) % (w - 30) :][:, :30] = (40, 200, 90)
    return FrameResult(FrameInfo(source_id=0, display_name="cam", index=i, fps=10.0), det, img)


class Clock:
    def __init__(self):
        self.t = 0.0
        self.start = datetime(2026, 12, 3, 9, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)


def _lines(paths) -> list[dict]:
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()]


def test_policy_parsing():
    assert SegmentPolicy.parse("10m") == SegmentPolicy(max_seconds=600)
    assert SegmentPolicy.parse("1h,50MB", "24") == SegmentPolicy(max_seconds=3600, max_bytes=50_000_000, keep=24)
    assert SegmentPolicy.parse("30s", "2GB,5") == SegmentPolicy(max_seconds=30, keep=5, keep_bytes=2_000_000_000)
    for bad, retain in [("10", None), ("fast", None), ("10m", "1h"), ("10m", "0")]:
        with pytest.raises(ValueError, match="--segment|--retain"):
            SegmentPolicy.parse(bad, retain)


def test_rotates_by_time_keeps_every_line_in_order(tmp_path):
    """A segment every 10 s of a 1 s-per-frame clock: 35 frames -> segments of 10, 10, 10, 5 lines, named in
    time order; all 35 records present once, in order (retention off)."""
    clock = Clock()
    seg = Segmented(lambda p: JsonlSink(p), tmp_path / "detections.jsonl", SegmentPolicy(max_seconds=10), clock=clock, now=clock.now)
    with seg:
        for i in range(35):
            seg.write(_result(i))
            clock.t += 1.0
    names = [Path(p).name for p in seg.segments]
    assert names == [
        "detections.20261203-090000.0001.jsonl",
        "detections.20261203-090010.0002.jsonl",
        "detections.20261203-090020.0003.jsonl",
        "detections.20261203-090030.0004.jsonl",
    ]
    assert [len(Path(p).read_text().splitlines()) for p in seg.segments] == [10, 10, 10, 5]
    assert [r["frame_index"] for r in _lines(seg.segments)] == list(range(35))
    assert seg.written == 35 and seg.skipped == 0


def test_rotates_by_size_and_retention_deletes_the_oldest(tmp_path):
    """Size cut at 2000 bytes with keep=3: each line is the same length L, so a segment holds ceil(2000 / L)
    lines (the cut is checked before each write); only the newest 3 segment files remain, and they hold
    the last records."""
    line_len = len(json.dumps(_result(0).record(masks=False), separators=(",", ":"))) + 1
    per_seg = -(-2000 // line_len)
    clock = Clock()
    seg = Segmented(lambda p: JsonlSink(p), tmp_path / "d.jsonl", SegmentPolicy(max_bytes=2000, keep=3), clock=clock, now=clock.now)
    n = per_seg * 7 + 2
    with seg:
        for i in range(n):
            seg.write(_result(i))
    assert len(seg.segments) == 8
    left = sorted(tmp_path.glob("d.*.jsonl"))
    assert [str(p) for p in left] == seg.segments[-3:]
    assert [r["frame_index"] for r in _lines(left)] == list(range(n - 2 - 2 * per_seg, n))


def test_retention_by_total_size_counts_earlier_runs(tmp_path):
    """keep_bytes: segments of an earlier run (same name pattern) are deleted oldest first; unrelated
    files in the folder are never touched."""
    old = tmp_path / "d.20200101-000000.0001.jsonl"
    old.write_text("x" * 5000)
    other = tmp_path / "d.notes.jsonl"
    other.write_text("keep me")
    clock = Clock()
    seg = Segmented(lambda p: JsonlSink(p), tmp_path / "d.jsonl", SegmentPolicy(max_seconds=1, keep_bytes=3000), clock=clock, now=clock.now)
    with seg:
        for i in range(4):
            seg.write(_result(i))
            clock.t += 1
    assert not old.exists() and other.read_text() == "keep me"
    assert sum(p.stat().st_size for p in tmp_path.glob("d.2026*.jsonl")) <= 3000


def test_video_segments_each_play(tmp_path):
    """Video cut every 1 s of a 0.125 s-per-frame clock (exact in binary): each segment is a playable file
    with its 8 frames."""
    clock = Clock()
    seg = Segmented(lambda p: VideoSink(p, fps=10), tmp_path / "cam.mp4", SegmentPolicy(max_seconds=1), clock=clock, now=clock.now)
    with seg:
        for i in range(25):
            seg.write(_result(i))
            clock.t += 0.125
    counts = []
    for p in seg.segments:
        cap = cv2.VideoCapture(p)
        n = 0
        while cap.read()[0]:
            n += 1
        cap.release()
        counts.append(n)
    assert counts == [8, 8, 8, 1]


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MB tmpfs: a real file system that fills up."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system with one file until `leave` bytes are free."""
    filler = folder / "filler.bin"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_disk_full_stops_with_one_error_loop_keeps_going_and_resumes(small_fs, tmp_path, caplog):
    """On a full tmpfs the JSONL and video sinks stop with one logged error each; a sink on another disk (the
    loop's other outputs) gets every frame; the skipped frames are counted; after the filler is deleted
    (space returns) both write again into new segments, which hold valid records / playable video."""
    clock = Clock()
    policy = SegmentPolicy(max_seconds=3600, retry_s=0.5)
    jsonl = Segmented(lambda p: JsonlSink(p), small_fs / "detections.jsonl", policy, clock=clock, now=clock.now)
    video = Segmented(lambda p: VideoSink(p, fps=10), small_fs / "cam.mp4", policy, clock=clock, now=clock.now)
    elsewhere = JsonlSink(tmp_path / "all.jsonl")
    filler = _fill(small_fs, leave=60_000)
    n_full, n_after = 120, 30
    with caplog.at_level(logging.ERROR, logger="df2infer.sinks.segments"):
        with Tee([jsonl, video, elsewhere]) as sink:
            for i in range(n_full):
                sink.write(_result(i, items=12, size=(180, 320)))
                clock.t += 0.1
            assert jsonl.error is not None and video.error is not None  # both hit the full disk
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 2 and all("disk is full" in r.getMessage() for r in errors)
            filler.unlink()
            for i in range(n_full, n_full + n_after):
                sink.write(_result(i, items=12, size=(180, 320)))
                clock.t += 0.1
            assert jsonl.error is None and video.error is None
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2  # one error each, not one per frame
    assert elsewhere.lines == n_full + n_after
    for s in (jsonl, video):
        assert s.written + s.skipped == n_full + n_after and s.skipped > 0 and len(s.segments) >= 2
    # the segment written after space returned is complete and valid
    last = _lines([jsonl.segments[-1]])
    assert [r["frame_index"] for r in last] == list(range(n_full + n_after - len(last), n_full + n_after))
    assert len(last) >= n_after - 6  # at most retry_s worth of frames (5 at 0.1 s) skipped after the space returned
    cap = cv2.VideoCapture(video.segments[-1])
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames >= n_after - 6


def test_cli_segments_and_retention(tmp_path):
    """`df2infer video --segment 4KB --retain 3`: the JSONL and the video come out as segment files, at most 3
    of each name remain, and the remaining JSONL segments hold the last frames without a gap."""
    import sys

    import fake_model

    from df2infer.synth.video import make_video

    clip, _ = make_video(tmp_path / "clip", frames=40, size=(160, 96))
    model = fake_model.build(tmp_path / "fake.onnx")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "df2infer", "video", str(clip), "--model", str(model), "--out", str(out), "--no-progress"]
    r = subprocess.run(cmd + ["--segment", "4KB", "--retain", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    jsonl = sorted(out.glob("detections.*.jsonl"))
    videos = sorted(out.glob("0_*.mp4"))
    assert len(jsonl) == 3 and 1 <= len(videos) <= 3
    idx = [rec["frame_index"] for rec in _lines(jsonl)]
    assert idx == list(range(40 - len(idx), 40)) and len(idx) < 40  # older segments deleted, newest kept whole
    assert "segments" in r.stdout
    bad = subprocess.run(cmd + ["--retain", "3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--retain needs --segment" in bad.stderr
