"""RTSP out (df2infer.sinks.rtsp) read by a real client (OpenCV's FFmpeg) while a real pipeline runs: the client
decodes frames of the annotated stream at the source's size, and they change over time. Under CI=true missing
GStreamer pieces fail the test; elsewhere it skips, saying what to install."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import fake_model
import numpy as np
import system_deps

from df2infer.stream import Pipeline


def _need_rtsp_out():
    try:
        from df2infer.sinks.rtsp import _gst, encoder_chain

        _, Gst, _ = _gst()
        encoder_chain(Gst, 30)
    except RuntimeError as e:
        system_deps.require(False, "GStreamer's RTSP server, x264enc and PyGObject", str(e))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rtsp_out_read_by_opencv_while_the_loop_runs(tmp_path, monkeypatch):
    _need_rtsp_out()
    from df2infer.sinks.rtsp import RtspOutSink
    from df2infer.synth.video import make_video

    clip, _ = make_video(tmp_path / "clip", frames=60, size=(320, 180))
    model = str(fake_model.build(tmp_path / "fake.onnx"))
    pipe = Pipeline([str(clip)], model, loop=True)
    sink = RtspOutSink(_free_port(), "127.0.0.1", path="df2")
    stop = threading.Event()

    def run():
        with pipe:
            for r in pipe:
                sink.write(r)
                time.sleep(0.03)
                if stop.is_set():
                    pipe.stop()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        end = time.monotonic() + 30
        while not sink._mounted and time.monotonic() < end:  # noqa: SLF001 - wait for the first frame's mount
            time.sleep(0.1)
        monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        cap = cv2.VideoCapture(sink.url(0), cv2.CAP_FFMPEG)
        assert cap.isOpened(), f"OpenCV could not open {sink.url(0)}"
        frames = []
        deadline = time.monotonic() + 30
        while len(frames) < 40 and time.monotonic() < deadline:
            ok, f = cap.read()
            if ok:
                frames.append(f)
        cap.release()
    finally:
        stop.set()
        t.join(20)
        sink.close()
    assert len(frames) >= 40
    assert frames[0].shape == (180, 320, 3)
    assert frames[0].std() > 10  # a picture, not a blank
    changed = (np.abs(frames[0].astype(int) - frames[-1].astype(int)).max(axis=2) > 30).mean()
    assert changed > 0.01  # the stream moves with the loop
    assert sink.pushed > 0 and sink.frames >= sink.pushed
