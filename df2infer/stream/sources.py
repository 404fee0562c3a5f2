"""Frame sources: one reader thread per source.

A source string is parsed by `df2infer.stream.parse.parse_source` into a SourceSpec:

    clip.mp4, clip.mkv ...        a video file (file mode: every frame, backpressure, never drops)
    folder/, 'imgs/*.jpg'         an image folder (sorted) or a glob (file mode)
    0                             a webcam by number (OpenCV; live)
    rtsp://..., http(s)://...     a network stream: RTSP, MJPEG, MPEG-TS, HLS .m3u8 (OpenCV's FFmpeg; live)
    csi://0                       a Jetson CSI camera (nvarguscamerasrc; live)           \
    v4l2:///dev/video0, /dev/video0  a V4L2 camera (v4l2src; live)                        | GStreamer, read by
    rtsp://... with hw_decode     nvv4l2decoder, or the software decoder the registry has | df2infer.stream.gst
    'videotestsrc ! ... ! appsink' a GStreamer pipeline (live when its source is)        /
    cams.streams                  a text file with one source per line (# comments)

Live sources keep only the newest frame: an unconsumed frame that a newer one replaces is counted
in `dropped`. Network sources open and read with bounded timeouts (OpenCV's FFmpeg backend blocks for
30 s by default); on a failure the capture is released and reopened after an exponential backoff with
jitter; a reconnect is counted and logged; after `max_failures` consecutive failed attempts the
source is reported as failed and stops, while the other sources go on.

Credentials: a source string may hold `${NAME}` references to environment variables (expanded here,
df2infer.credentials.expand_env). The expanded string reaches only the capture (`SourceSpec.target`);
everything shown, logged or written uses `SourceSpec.name`, the redacted form.

Stop (`Source.stop()`): the reader decodes no further frame; every frame it already decoded stays
available to `get()` (a file's queue, and the one frame it was trying to queue), so a graceful stop
loses nothing. A live source's newest frame is still handed out; a frame a live reader finishes
decoding after the stop is counted in `dropped`, and a live reader still waiting on the network is
not waited for (`done` is true once its newest frame is taken).
"""

from __future__ import annotations

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

from df2infer.credentials import CredentialError, check_private_file, redact
from df2infer.errors import InputError
from df2infer.images import ImageError, read_image
from df2infer.results import FrameInfo

log = logging.getLogger("df2infer.stream")

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm", ".ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv", ".y4m")
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


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
    """What a source string means. kind: file, images, webcam, network, gstreamer. `text` is the
    source as given (with `${NAME}` references unexpanded); `name` is what every output shows."""

    text: str
    kind: str
    live: bool
    target: Any = None  # the cv2.VideoCapture argument (credentials expanded), or the image list
    api: int | None = None  # cv2 backend id

    @property
    def name(self) -> str:
        """The source as shown in logs, summaries, results and file names: credentials redacted."""
        return redact(self.text)

    def __repr__(self) -> str:  # never the text or target: they may hold a password
        return f"SourceSpec({self.name!r}, kind={self.kind!r}, live={self.live})"


def read_streams_file(path: str | os.PathLike) -> list[str]:
    """Sources listed in a .streams file: one per line; blank lines and # comments skipped. A file
    holding a literal password must not be readable by other users (write ${NAME} instead)."""
    with open(path) as f:
        text = f.read()
    try:
        check_private_file(path, text)
    except CredentialError as e:
        raise SourceError(str(e)) from None
    out = []
    for line in text.splitlines():
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


class FrameGate:
    """Which frames of a source to process: every `vid_stride`-th, and at most `max_fps` per second (media time
    for files, wall time for live sources). keep(index, t) is asked before a frame is decoded, so a frame
    passed over costs no decoding (OpenCV's grab())."""

    def __init__(self, vid_stride: int = 1, max_fps: float | None = None):
        if int(vid_stride) < 1:
            raise ValueError(f"--vid-stride {vid_stride}: expected 1 or more (1 = every frame)")
        if max_fps is not None and not max_fps > 0:
            raise ValueError(f"--max-fps {max_fps}: expected a positive number of frames per second")
        self.stride = int(vid_stride)
        self.period = 1.0 / max_fps if max_fps else 0.0
        self._due: float | None = None

    def keep(self, index: int, t: float) -> bool:
        if index % self.stride:
            return False
        if not self.period:
            return True
        if self._due is not None and t < self._due - 1e-9:
            return False
        # the next slot one period on (an even cadence), restarted when the source fell more than a period behind
        self._due = self._due + self.period if self._due is not None and t - self._due < self.period else t + self.period
        return True


@dataclass
class SourceStats:
    frames: int = 0  # frames read
    delivered: int = 0  # frames handed to the pipeline
    dropped: int = 0  # live frames replaced by a newer one before being consumed
    reconnects: int = 0
    failures: int = 0  # failed open/read attempts, all told
    errors: list = field(default_factory=list)  # messages of the failures (last 20)
    decode_s: list = field(default_factory=list)  # per-frame read+decode seconds (bounded)
    skipped: int = 0  # frames passed over on purpose (FrameGate: --vid-stride, --max-fps), not decoded

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
        self.decode_listeners: list[Callable[[float], None]] = []  # fn(seconds) per decoded frame (Pipeline.on_stage)
        self.gate: FrameGate | None = None  # which frames to process (Pipeline's vid_stride / max_fps)
        self.state = "starting"  # starting, running, reconnecting, finished, failed, stopped
        self.error: str | None = None
        self._notify = notify or (lambda: None)
        self._stop = threading.Event()
        self._q: queue.Queue[Frame] = queue.Queue(maxsize=max(1, queue_size))
        self._held: list[Frame] = []  # a file frame decoded when the stop came with the queue full
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
            except queue.Empty:  # the held frame comes after every queued one (the reader has stopped)
                with self._lock:
                    f = self._held.pop(0) if self._held else None
        if f is not None:
            self.stats.delivered += 1
        return f

    def pending(self) -> int:
        if self.live:
            return int(self._latest is not None)
        return self._q.qsize() + len(self._held)

    @property
    def done(self) -> bool:
        """True once the reader has stopped (a live one: once asked to) and every frame it handed
        over has been taken."""
        return (self._done.is_set() or (self.live and self._stop.is_set())) and self.pending() == 0

    def stop(self) -> None:
        """Decode no further frame; the frames already decoded stay available to get()."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # reader side -----------------------------------------------------------------------------
    def _info(self, index: int, pts: float | None) -> FrameInfo:
        """The facts of frame `index`, captured now (wall time)."""
        return FrameInfo(self.id, self.name, index, time.time(), pts, self.live, self.fps)

    def _publish(self, f: Frame) -> bool:
        """Hand a frame on; False when stopping. Files block here while the queue is full; a file frame
        decoded when the stop comes is kept (never lost), a live one that comes after it is dropped."""
        if self.live:
            with self._lock:
                if self._stop.is_set():
                    self.stats.dropped += 1
                    return False
                if self._latest is not None:
                    self.stats.dropped += 1
                self._latest = f
            self._notify()
            return True
        while True:
            try:
                self._q.put(f, timeout=0.1)
                self._notify()
                return not self._stop.is_set()
            except queue.Full:
                if self._stop.is_set():
                    with self._lock:
                        self._held.append(f)
                    self._notify()
                    return False

    def _sleep(self, seconds: float) -> bool:
        """Wait, or return False at once when stopping."""
        return not self._stop.wait(seconds)

    def _wait_to_reconnect(self, msg: str, attempt: int) -> bool:
        """After failed attempt number `attempt` (msg says why): counted, then the backoff wait. False when the
        source is dropped (policy.max_failures reached) or stopped while waiting; the readers' one reconnect rule."""
        self.stats.note_error(msg)
        if attempt >= self.policy.max_failures:
            self._fail(f"{msg}; {attempt} failed attempts, source dropped")
            return False
        self.state = "reconnecting"
        d = self.policy.delay(attempt, self._rng)
        log.warning("%s; reconnecting in %.2f s", msg, d)
        return self._sleep(d)

    def _run(self) -> None:
        try:
            if self.spec.kind == "images":
                self._run_images()
            else:
                self._run_capture()
        except Exception as e:  # a bug or an unexpected OpenCV error: report it, never hang the pipeline
            self.error = f"{self.name}: reader crashed: {type(e).__name__}: {redact(str(e))}"
            self.stats.note_error(self.error)
            self.state = "failed"
            log.error("%s", self.error)
        finally:
            if self.state not in ("failed", "stopped"):
                self.state = "stopped" if self._stop.is_set() else "finished"
            self._done.set()
            self._notify()

    def _timed_decode(self, t0: float) -> None:
        dt = time.perf_counter() - t0
        self.stats.decode_s.append(dt)
        for fn in self.decode_listeners:
            fn(dt)
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
                if self.gate is not None and not self.gate.keep(index, index / (self.fps or 30.0)):
                    self.stats.skipped += 1
                    index += 1
                    continue
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
                    if self.gate is not None and not self.gate.keep(index, time.time() if self.live else index / (self.fps or 30.0)):
                        if not cap.grab():  # passed over: demuxed, not decoded
                            break
                        self.stats.skipped += 1
                        index += 1
                        continue
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
            if not self._wait_to_reconnect(msg, attempt):
                return

    def _fail(self, msg: str) -> None:
        self.error = msg
        self.state = "failed"
        log.error("%s", msg)
