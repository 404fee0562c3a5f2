"""SIGINT/SIGTERM lose no decoded frame (docs/video.md, "Stopping").

`df2infer video` runs a looping file beside a live MJPEG camera; after the signal, every frame the
file's reader decoded ("N frames read" in the summary) is in the JSONL and in the video, and every
frame of the live source is either written or counted as dropped.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import cv2
import fake_model
import numpy as np
import pytest
from test_video_stream import Server, _count_frames

from df2infer.stream import Pipeline


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> str:
    return str(fake_model.build(tmp_path_factory.mktemp("model") / "fake.onnx"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    from df2infer.synth.video import make_video

    path, _ = make_video(tmp_path_factory.mktemp("clip"), frames=30, size=(320, 180))
    return str(path)


def _per_source(stderr: str) -> dict[int, dict[str, int]]:
    """The final summary's per-source lines: `  [0] name: state, N frames read, D dropped, ...`."""
    out = {}
    for m in re.finditer(r"^  \[(\d+)\] .*?: (\w+), (\d+) frames read, (\d+) dropped", stderr, re.M):
        out[int(m.group(1))] = {"read": int(m.group(3)), "dropped": int(m.group(4))}
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_runs_every_decoded_frame(sig, tmp_path, fake, clip):
    cam = Server("mjpeg", fps=30).start().wait_ready()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "df2infer", "video", clip, cam.url, "--loop", "--model", fake, "--out", str(out), "--summary-every", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    jl = out / "detections.jsonl"
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:  # both sources running, the file through at least one loop
            lines = jl.read_text().splitlines() if jl.exists() else []
            ids = [json.loads(x)["source_id"] for x in lines if x.endswith("}")]
            if ids.count(0) >= 45 and ids.count(1) >= 5:
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        cam.stop()
    assert proc.returncode == 128 + sig, err
    recs = [json.loads(x) for x in jl.read_text().splitlines()]
    stats = _per_source(err)
    assert set(stats) == {0, 1}, err
    file_idx = [r["frame_index"] for r in recs if r["source_id"] == 0]
    live_n = sum(r["source_id"] == 1 for r in recs)
    # the file: every frame read was run and written, in order, in the JSONL and in the video
    assert file_idx == list(range(stats[0]["read"])), f"file: {stats[0]['read']} frames read, {len(file_idx)} written\n{err}"
    assert stats[0]["dropped"] == 0
    videos = {int(p.name.split("_", 1)[0]): p for p in out.glob("*.mp4")}
    assert _count_frames(videos[0]) == stats[0]["read"]
    # the live source: written or counted as dropped, nothing unaccounted for
    assert live_n + stats[1]["dropped"] == stats[1]["read"], err
    assert _count_frames(videos[1]) == live_n


def test_a_second_signal_ends_the_run_with_the_files_closed(tmp_path, fake, clip):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "df2infer", "video", clip, "--loop", "--model", fake, "--out", str(out), "--summary-every", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jl = out / "detections.jsonl"
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and not (jl.exists() and len(jl.read_text().splitlines()) >= 20):
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    recs = [json.loads(x) for x in jl.read_text().splitlines()]  # every line complete
    stats = _per_source(err)
    assert [r["frame_index"] for r in recs] == list(range(len(recs))) and len(recs) <= stats[0]["read"]
    assert _count_frames(next(out.glob("*.mp4"))) == len(recs)  # the video was closed: every written frame plays


def test_pipeline_stop_hands_out_every_queued_file_frame(tmp_path, fake):
    """The Python API: stop() while the file's queue is full; the iteration still yields each frame read."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(40):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((60, 80, 3), i, np.uint8))
    p = Pipeline([str(folder)], fake, batch=1, queue_size=8, loop=True)
    got = []
    for r in p:
        got.append(r.info.index)
        if len(got) == 3:
            time.sleep(0.5)  # the reader fills its queue (8) and waits with one more decoded frame
            p.stop()
            time.sleep(0.5)  # a slow consumer: the queue stays full past the stop, the waiting frame is kept
    read = p.sources[0].stats.frames
    assert read >= 3 + 8 + 1
    assert got == list(range(read))
    assert p.summary()["sources"][0]["delivered"] == read
