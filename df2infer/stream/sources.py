"""Frame sources: one reader thread per source.

A source string is parsed by `parse_source` into a SourceSpec:

    clip.mp4, clip.mkv ...        a video file (file mode: every frame, backpressure, never drops)
    folder/, 'imgs/*.jpg'         an image folder (sorted) or a glob (file mode)
    0, /dev/video0                a webcam (live)
    rtsp://..., http(s)://...     a network stream: RTSP, MJPEG, MPEG-TS, HLS .m3u8 (live)
    csi://0                       a Jetson CSI camera (nvarguscamerasrc GStreamer pipeline; live)
    'videotestsrc ! ... ! appsink' a GStreamer pipeline (live)
    cams.streams                  a text file with one source per line (# comments)

Live sources keep only the newest frame: an unconsumed frame that a newer one replaces is counted
in `dropped`. Network sources open and read with bounded timeouts (OpenCV's FFmpeg backend blocks for
30 s by default); on a failure the capture is released and reopened after an exponential backoff with
jitter; a reconnect is counted and logged; after `max_failures` consecutive failed attempts the
source is reported as failed and stops, while the other sources go on.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from df2infer.errors import InputError
from df2infer.images import IMAGE_SUFFIXES, ImageError, is_image_path, list_images, read_image
from df2infer.results import FrameInfo

log = logging.getLogger("df2infer.stream")

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm", ".ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv", ".y4m")
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")

JETPACK_OPENCV_HINT = (
    "this OpenCV was built without GStreamer (cv2.getBuildInformation() shows 'GStreamer: NO'; the pip "
    "wheels opencv-python[-headless] never have it). On a Jetson use JetPack's OpenCV: "
    "`sudo apt install python3-opencv` (nvidia-opencv) and a venv made with --system-site-packages, "
    "then `pip uninstall opencv-python-headless` in that venv so `import cv2` finds JetPack's build"
)


class SourceError(InputError, RuntimeError):
    """A source that cannot be parsed or opened; the message names it."""


@dataclass
class Frame:
    """One decoded frame: its facts (FrameInfo: source id and name, index = the frames this source
    delivered to its reader, 0, 1, ...; for a file the frame number in the file; wall_time = capture time,
    time.time(); pts = the position in the media where the container says (files); live; fps) and the image."""

    info: FrameInfo
    image: np.ndarray


@dataclass
class SourceSpec:
    """What a source string means. kind: file, images, webcam, network, gstreamer."""

    text: str
    kind: str
    live: bool
    target: Any = None  # the cv2.VideoCapture argument, or the image list
    api: int | None = None  # cv2 backend id

    @property
    def name(self) -> str:
        return self.text


def gstreamer_available() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def csi_pipeline(sensor_id: int, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0) -> str:
    """The Jetson CSI camera pipeline (Argus ISP -> NVMM NV12 -> BGRx -> BGR appsink)."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},height={height},"
        f"framerate={fps}/1,format=NV12 ! nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def jetson_rtsp_pipeline(url: str, latency_ms: int = 200, codec: str = "h264") -> str:
    """An RTSP pipeline decoding on the Jetson's hardware decoder (nvv4l2decoder)."""
    return (
        f"rtspsrc location={url} latency={latency_ms} ! rtp{codec}depay ! {codec}parse ! nvv4l2decoder ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def read_streams_file(path: str | os.PathLike) -> list[str]:
    """Sources listed in a .streams file: one per line; blank lines and # comments skipped."""
    out = []
    with open(path) as f:
        for line in f:
            s = line.strip()
            if s and not s.startswith("#"):
                out.append(s)
    if not out:
        raise SourceError(f"{path}: a .streams file with no sources (expected one source per line)")
    return out


def expand_sources(texts: list[str]) -> list[str]:
    """Source strings with .streams files replaced by their lines."""
    out: list[str] = []
    for t in texts:
        if t.endswith(".streams"):
            if not os.path.isfile(t):
                raise SourceError(f"{t}: no such .streams file")
            out.extend(read_streams_file(t))
        else:
            out.append(t)
    return out


def parse_source(text: str, hw_decode: bool = False) -> SourceSpec:
    """SourceSpec for one source string (see the module doc). Raises SourceError naming it."""
    import cv2

    t = text.strip()
    low = t.lower()
    if t.isdigit():
        return SourceSpec(t, "webcam", True, int(t), cv2.CAP_ANY)
    if low.startswith("/dev/video"):
        return SourceSpec(t, "webcam", True, t, cv2.CAP_V4L2)
    if low.startswith("csi://"):
        n = t[len("csi://") :]
        if not n.isdigit():
            raise SourceError(f"{t}: expected csi://N with N the sensor id (csi://0)")
        if not gstreamer_available():
            raise SourceError(f"{t}: a CSI camera needs OpenCV with GStreamer: {JETPACK_OPENCV_HINT}")
        return SourceSpec(t, "gstreamer", True, csi_pipeline(int(n)), cv2.CAP_GSTREAMER)
    if low.startswith(NETWORK_SCHEMES):
        if hw_decode and low.startswith("rtsp") and gstreamer_available():
            return SourceSpec(t, "gstreamer", True, jetson_rtsp_pipeline(t), cv2.CAP_GSTREAMER)
        return SourceSpec(t, "network", True, t, cv2.CAP_FFMPEG)
    if "!" in t:
        if not gstreamer_available():
            raise SourceError(f"{t!r}: a GStreamer pipeline needs OpenCV with GStreamer: {JETPACK_OPENCV_HINT}")
        return SourceSpec(t, "gstreamer", True, t, cv2.CAP_GSTREAMER)
    if os.path.isdir(t):
        files = [str(p) for p in list_images(t)]
        if not files:
            raise SourceError(f"{t}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
        return SourceSpec(t, "images", False, files)
    if any(c in t for c in "*?["):
        files = sorted(f for f in glob.glob(t, recursive=True) if is_image_path(f))
        if not files:
            raise SourceError(f"{t}: this glob matches no images")
        return SourceSpec(t, "images", False, files)
    if not os.path.exists(t):
        raise SourceError(f"{t}: no such file, folder, camera or stream URL")
    if is_image_path(t):
        return SourceSpec(t, "images", False, [t])
    return SourceSpec(t, "file", False, t, cv2.CAP_ANY)


@dataclass
class ReconnectPolicy:
    """Backoff for network/live sources: attempt k (1, 2, ...) waits
    min(max_delay, base_delay * 2**(k-1)) * (1 + jitter * U(-1, 1)) seconds before reopening."""

    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    jitter: float = 0.25
    max_failures: int = 10  # consecutive failed attempts before the source is dropped

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_delay_s, self.base_delay_s * 2 ** max(attempt - 1, 0))
        return max(0.0, d * (1 + self.jitter * rng.uniform(-1, 1)))

    @property
    def worst_delay_s(self) -> float:
        """The longest single wait: a restarted server is picked up within this + open time."""
        return self.max_delay_s * (1 + self.jitter)


@dataclass
class SourceStats:
    frames: int = 0  # frames read
    delivered: int = 0  # frames handed to the pipeline
    dropped: int = 0  # live frames replaced by a newer one before being consumed
    reconnects: int = 0
    failures: int = 0  # failed open/read attempts, all told
    errors: list = field(default_factory=list)  # messages of the failures (last 20)
    decode_s: list = field(default_factory=list)  # per-frame read+decode seconds (bounded)

    def note_error(self, msg: str) -> None:
        self.failures += 1
        self.errors.append(msg)
        del self.errors[:-20]


class Source:
    """A reader thread over one SourceSpec. `get()` hands out frames; see the module doc for the
    live (newest only) and file (bounded queue, backpressure) behaviours."""

    def __init__(
        self,
        spec: SourceSpec,
        source_id: int,
        policy: ReconnectPolicy | None = None,
        queue_size: int = 8,
        loop: bool = False,
        notify: Callable[[], None] | None = None,
        max_frames: int | None = None,
        seed: int | None = None,
    ):
        self.spec = spec
        self.id = source_id
        self.name = spec.name
        self.live = spec.live
        self.policy = policy or ReconnectPolicy()
        self.loop = loop
        self.max_frames = max_frames
        self.stats = SourceStats()
        self.state = "starting"  # starting, running, reconnecting, finished, failed, stopped
        self.error: str | None = None
        self._notify = notify or (lambda: None)
        self._stop = threading.Event()
        self._q: queue.Queue[Frame] = queue.Queue(maxsize=max(1, queue_size))
        self._latest: Frame | None = None
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._thread = threading.Thread(target=self._run, name=f"df2infer-source-{source_id}", daemon=True)
        self._done = threading.Event()
        self.fps: float | None = None

    # consumer side ---------------------------------------------------------------------------
    def start(self) -> Source:
        self._thread.start()
        return self

    def get(self) -> Frame | None:
        """The next frame if one is ready (no waiting), else None."""
        if self.live:
            with self._lock:
                f, self._latest = self._latest, None
        else:
            try:
                f = self._q.get_nowait()
            except queue.Empty:
                f = None
        if f is not None:
            self.stats.delivered += 1
        return f

    def pending(self) -> int:
        if self.live:
            return int(self._latest is not None)
        return self._q.qsize()

    @property
    def done(self) -> bool:
        """True once the reader has stopped and every frame it read has been taken."""
        return self._done.is_set() and self.pending() == 0

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # reader side -----------------------------------------------------------------------------
    def _info(self, index: int, pts: float | None) -> FrameInfo:
        """The facts of frame `index`, captured now (wall time)."""
        return FrameInfo(self.id, self.name, index, time.time(), pts, self.live, self.fps)

    def _publish(self, f: Frame) -> bool:
        """Hand a frame on; False when stopping. Files block here while the queue is full."""
        if self.live:
            with self._lock:
                if self._latest is not None:
                    self.stats.dropped += 1
                self._latest = f
            self._notify()
            return not self._stop.is_set()
        while not self._stop.is_set():
            try:
                self._q.put(f, timeout=0.1)
                self._notify()
                return True
            except queue.Full:
                continue
        return False

    def _sleep(self, seconds: float) -> bool:
        """Wait, or return False at once when stopping."""
        return not self._stop.wait(seconds)

    def _run(self) -> None:
        try:
            if self.spec.kind == "images":
                self._run_images()
            else:
                self._run_capture()
        except Exception as e:  # a bug or an unexpected OpenCV error: report it, never hang the pipeline
            self.error = f"{self.name}: reader crashed: {type(e).__name__}: {e}"
            self.stats.note_error(self.error)
            self.state = "failed"
            log.error("%s", self.error)
        finally:
            if self.state not in ("failed", "stopped"):
                self.state = "stopped" if self._stop.is_set() else "finished"
            self._done.set()
            self._notify()

    def _timed_decode(self, t0: float) -> None:
        self.stats.decode_s.append(time.perf_counter() - t0)
        if len(self.stats.decode_s) > 5000:  # bounded: the summary's percentiles use the recent ones
            del self.stats.decode_s[:2500]

    def _run_images(self) -> None:
        files = list(self.spec.target)
        self.state = "running"
        index = 0
        while True:
            for path in files:
                if self._stop.is_set() or (self.max_frames is not None and index >= self.max_frames):
                    return
                t0 = time.perf_counter()
                try:
                    img = read_image(path)
                except (ImageError, OSError) as e:
                    self.stats.note_error(f"{path}: {e}")
                    log.warning("%s: skipped: %s", self.name, e)
                    index += 1
                    continue
                self._timed_decode(t0)
                self.stats.frames += 1
                if not self._publish(Frame(self._info(index, None), img)):
                    return
                index += 1
            if not self.loop:
                return

    def _open(self):
        import cv2

        params = []
        if self.spec.kind in ("network", "file", "webcam"):
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(self.policy.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(self.policy.read_timeout_s * 1000),
            ]
        cap = cv2.VideoCapture(self.spec.target, self.spec.api or cv2.CAP_ANY, params)
        if not cap.isOpened():
            cap.release()
            return None
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        return cap

    def _run_capture(self) -> None:
        import cv2

        index = 0
        attempt = 0  # consecutive failed attempts
        connected_before = False
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                attempt += 1
                msg = f"{self.name}: cannot open (attempt {attempt})"
                self.stats.note_error(msg)
                if not self.live:
                    self._fail(f"{self.name}: cannot open (not a video this OpenCV's FFmpeg reads, or unreadable)")
                    return
                if attempt >= self.policy.max_failures:
                    self._fail(f"{self.name}: cannot open after {attempt} attempts; source dropped")
                    return
                self.state = "reconnecting"
                d = self.policy.delay(attempt, self._rng)
                log.warning("%s; retrying in %.2f s", msg, d)
                if not self._sleep(d):
                    return
                continue
            if connected_before and self.live:  # a looping file reopening is no reconnect
                self.stats.reconnects += 1
                log.warning("%s: reconnected (reconnect %d)", self.name, self.stats.reconnects)
            connected_before = True
            self.state = "running"
            got_frame = False
            try:
                while not self._stop.is_set():
                    if self.max_frames is not None and index >= self.max_frames:
                        return
                    t0 = time.perf_counter()
                    ok, img = cap.read()
                    if not ok or img is None:
                        break
                    self._timed_decode(t0)
                    if not got_frame:
                        got_frame, attempt = True, 0
                    pts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if not self.live else None
                    self.stats.frames += 1
                    if not self._publish(Frame(self._info(index, pts), img)):
                        return
                    index += 1
            finally:
                cap.release()
            if self._stop.is_set():
                return
            if not self.live:
                if index == 0:
                    self._fail(f"{self.name}: opened but no frame could be decoded (corrupt, or a codec this OpenCV lacks)")
                    return
                if self.loop:
                    continue
                return  # end of file
            attempt += 1
            msg = f"{self.name}: stream closed, or no frame within the {self.policy.read_timeout_s:g} s read timeout"
            self.stats.note_error(msg)
            if attempt >= self.policy.max_failures:
                self._fail(f"{msg}; {attempt} failed attempts, source dropped")
                return
            self.state = "reconnecting"
            d = self.policy.delay(attempt, self._rng)
            log.warning("%s; reconnecting in %.2f s", msg, d)
            if not self._sleep(d):
                return

    def _fail(self, msg: str) -> None:
        self.error = msg
        self.state = "failed"
        log.error("%s", msg)


def open_sources(
    texts: list[str],
    policy: ReconnectPolicy | None = None,
    queue_size: int = 8,
    loop: bool = False,
    notify: Callable[[], None] | None = None,
    hw_decode: bool = False,
    max_frames: int | None = None,
) -> tuple[list[Source], list[str]]:
    """Sources for the strings (not started) and the errors of those that cannot be parsed; a bad
    source never stops the others."""
    sources, errors = [], []
    for i, t in enumerate(expand_sources(texts)):
        try:
            spec = parse_source(t, hw_decode=hw_decode)
        except SourceError as e:
            errors.append(str(e))
            log.error("%s", e)
            continue
        sources.append(
            Source(
                spec,
                i,
                policy=dataclasses.replace(policy) if policy else None,
                queue_size=queue_size,
                loop=loop,
                notify=notify,
                max_frames=max_frames,
            )
        )
    return sources, errors
