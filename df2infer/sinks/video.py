"""Annotated video that survives a kill: fragmented MP4 (H.264 via PyAV/FFmpeg; movflags
frag_keyframe+empty_moov, a keyframe every `keyframe_s` seconds), so a file cut short by SIGKILL or a
power loss still plays up to its last complete fragment; close() (on SIGINT/SIGTERM too) flushes the
encoder and writes the last fragment.

Timestamps are in milliseconds: a file's frames at index / fps, a live source's at their capture
time, so dropped frames show as the real time gap."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from df2infer.results import FrameResult
from df2infer.sinks.annotate import annotated
from df2infer.sinks.base import Sink

# flush_packets: each finished fragment goes to the file at once (not held in FFmpeg's 32 KB IO buffer)
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


class VideoSink(Sink):
    """write(result) appends the result's annotated frame at its video time (results.FrameResult.video_time);
    write_frame(image, timestamp_s) a BGR uint8 frame. The writer opens on the first frame.

    preset: x264's speed/size trade-off. "ultrafast" by default: on a CPU the encoder shares the cores
    with inference (640x360 annotated frames: 9 ms ultrafast, 15 superfast, 29 veryfast; the files
    are ~1.7x larger than veryfast's).

    threads: x264's encoder threads. 1 by default: the encoder then runs in the caller's thread; x264's
    own frame threads (its default: about 1.5 per core) cost more CPU per frame (640x360 ultrafast,
    measured on a 2-core CPU: 3.0 ms with x264's default, 2.3 ms with 1) and compete with inference
    for the cores. 0 = x264's default."""

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = 30.0,
        codec: str = "libx264",
        keyframe_s: float = 1.0,
        crf: int = 23,
        preset: str = "ultrafast",
        threads: int = 1,
    ):
        self.path = os.fspath(path)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.codec = codec
        self.keyframe_s = keyframe_s
        self.crf, self.preset = crf, preset
        self.threads = int(threads)
        self._c: Any = None  # av OutputContainer, opened on the first frame
        self._s: Any = None  # its video stream
        self._last_pts = -1
        self._t0: float | None = None
        self.frames = 0
        self.size: tuple[int, int] = (0, 0)  # (w, h) of the file, set by the first frame

    def _open(self, w: int, h: int) -> None:
        try:
            import av
        except ImportError as e:
            raise RuntimeError("writing video needs PyAV: pip install av") from e
        from fractions import Fraction

        fmt = "mp4" if self.path.lower().endswith((".mp4", ".m4v", ".mov")) else None
        self._c = av.open(self.path, "w", format=fmt, options=FRAGMENTED_MP4 if fmt == "mp4" else {})
        codec = self.codec if self.codec in av.codecs_available else "mpeg4"
        s = self._c.add_stream(codec, rate=int(round(self.fps)))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)  # frames carry ms; the muxer picks the stream's own
        s.codec_context.gop_size = max(1, int(round(self.fps * self.keyframe_s)))
        if codec == "libx264":
            s.codec_context.options = {"crf": str(self.crf), "preset": self.preset, "threads": str(self.threads)}
        self._s = s

    def write(self, result: FrameResult) -> None:
        if result.ok:
            self.write_frame(annotated(result), result.video_time())

    def write_frame(self, image: np.ndarray, timestamp_s: float | None = None) -> None:
        import av
        import cv2

        h, w = image.shape[:2]
        h2, w2 = h - h % 2, w - w % 2  # yuv420p needs even sizes
        if self._c is None:
            self._open(w2, h2)
            self.size = (w2, h2)
        elif (w2, h2) != self.size:  # a camera that came back at another resolution: fit it to the file's
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            h2, w2 = self.size[1], self.size[0]
        if timestamp_s is None:
            pts = self._last_pts + max(1, int(round(1000 / self.fps)))
        else:
            if self._t0 is None:
                self._t0 = timestamp_s
            pts = int(round((timestamp_s - self._t0) * 1000))
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        # OpenCV's BGR -> I420 (BT.601 limited range, as FFmpeg's swscale does for bgr24 -> yuv420p;
        # pixels within a few levels of it): 0.55 ms instead of swscale's 1.75 ms for a 640x360 frame
        yuv = np.asarray(cv2.cvtColor(np.ascontiguousarray(image[:h2, :w2]), cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = pts
        frame.time_base = self._s.codec_context.time_base
        for packet in self._s.encode(frame):
            self._c.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._c is None:
            return
        try:
            for packet in self._s.encode(None):
                self._c.mux(packet)
        finally:
            self._c.close()
            self._c = None
