"""GStreamer sources, read directly through GStreamer's own Python bindings (PyGObject, `gi`).

Used for `csi://N` (Jetson CSI cameras), `v4l2:///dev/videoN` and `/dev/videoN` (V4L2 cameras), raw
pipeline strings (`'videotestsrc ! videoconvert ! appsink'`) and `rtsp://` with `--hw-decode`. OpenCV
stays the reader for files, webcams by number and plain network streams (df2infer.stream.sources).

The pipeline runs in GStreamer's own threads and ends in an `appsink`; the source's reader thread
pulls samples from it (no GLib main loop), reads the bus between pulls, and hands frames on with the
same semantics as the OpenCV reader: newest frame only for live sources (drops counted), backpressure
for the others (a full appsink blocks the pipeline), open and read timeouts, reconnects with the same
backoff, EOS and bus errors, and a stop that sets the pipeline to NULL before the thread ends.

Elements are chosen by what the GStreamer registry holds: NVIDIA's (nvarguscamerasrc, nvv4l2decoder,
nvvidconv) when present, software ones (avdec_h264 / decodebin, videoconvert) otherwise; the chosen
pipeline is logged. Credentials never enter a pipeline description: an RTSP URL is set as the
`location` property of the element named `src`, and every logged string goes through `log_safe`.

Copies: the appsink's buffer is mapped and copied once into Python memory (PyGObject's map gives a
bytes copy), after which the sample is released at once, so the decoder's buffer pool (small on a
Jetson: NVMM buffers) is never held by a frame waiting for the model; the rows are then copied out of
their padded stride into a compact, writable numpy array (sinks draw on the frame).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from df2infer.credentials import redact
from df2infer.ops.nv12 import Nv12Image
from df2infer.stream.sources import Frame, Source, SourceError, SourceSpec

log = logging.getLogger("df2infer.stream")

# NVIDIA's GStreamer elements (JetPack; DeepStream) that `df2infer info` reports.
HARDWARE_ELEMENTS = ("nvarguscamerasrc", "nvv4l2camerasrc", "nvv4l2decoder", "nvvidconv", "nvjpegdec")

INSTALL_HINT = (
    "GStreamer's Python bindings are missing: `pip install 'df2infer[gstreamer]'` (PyGObject<3.51; building it "
    "needs `apt install libgirepository1.0-dev libcairo2-dev pkg-config`) plus `apt install gir1.2-gstreamer-1.0 "
    "gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav`; "
    "on a Jetson (JetPack 6, Python 3.10) use JetPack's `python3-gi` in a venv made with --system-site-packages "
    "(docs/video.md, 'Jetson cameras')"
)

# Source elements that are live although they are bins, not GstBaseSrc (their inner udpsrc appear later).
_LIVE_BINS = ("rtspsrc", "nvarguscamerasrc", "nvv4l2camerasrc")

_gst: Any = None


def log_safe(text: str) -> str:
    """`text` with credentials replaced, for logs and errors (the package's one redaction, df2infer.credentials)."""
    return redact(text)


def _keep_the_system_unwinder() -> None:
    """Load libgcc_s into the global symbol scope before GStreamer. Debian's libgstreamer links libunwind,
    which also defines the _Unwind_* functions C++ exceptions are thrown with; when numpy or OpenCV was
    imported first, a C++ library loaded after GStreamer (ONNX Runtime) can bind them to libunwind's and
    abort the process on its first exception (seen: a bad .onnx file after a GStreamer source, instead of
    a ModelLoadError). With libgcc_s global first, they bind to its implementation, as without GStreamer."""
    import ctypes

    try:
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError as e:  # not glibc/GCC (no libgcc_s): nothing to pin
        log.debug("libgcc_s.so.1 not loaded (%s); C++ exceptions keep whatever unwinder is loaded", e)


def import_gst() -> Any:
    """The initialized `Gst` module; SourceError with what to install when the bindings are missing."""
    global _gst
    if _gst is None:
        _keep_the_system_unwinder()
        try:
            import gi

            gi.require_version("Gst", "1.0")
            gi.require_version("GstApp", "1.0")
            gi.require_version("GstVideo", "1.0")
            gi.require_version("GstBase", "1.0")
            from gi.repository import Gst, GstApp, GstVideo  # noqa: F401 - GstApp/GstVideo register the types we use
        except (ImportError, ValueError) as e:
            raise SourceError(f"{INSTALL_HINT} ({type(e).__name__}: {e})") from e
        Gst.init(None)
        _gst = Gst
    return _gst


def gst_available() -> bool:
    try:
        import_gst()
    except SourceError:
        return False
    return True


def has_element(name: str) -> bool:
    """Does the GStreamer registry hold element `name`?"""
    return import_gst().ElementFactory.find(name) is not None


def hardware_elements() -> dict[str, bool]:
    """Which of NVIDIA's elements the registry holds ({} when the bindings are missing)."""
    if not gst_available():
        return {}
    return {name: has_element(name) for name in HARDWARE_ELEMENTS}


def gstreamer_report() -> dict[str, Any]:
    """For `df2infer info`: the GStreamer version and which of NVIDIA's elements the registry holds, or why
    the bindings cannot be used."""
    try:
        Gst = import_gst()
    except SourceError as e:
        return {"version": None, "hardware_elements": {}, "error": str(e)}
    return {"version": ".".join(str(v) for v in Gst.version()[:3]), "hardware_elements": hardware_elements(), "error": None}


# ------------------------------------------------------------------------------------------------
# pipeline descriptions (NVIDIA's element names and caps: the Jetson Linux Developer Guide,
# "Accelerated GStreamer")


@dataclass
class GstPlan:
    """A pipeline to run: `description` for Gst.parse_launch (never holds a credential), `location` set
    as the property of the element named `src` (an RTSP URL), whether it is live, what was chosen."""

    description: str
    live: bool
    location: str | None = None
    pixel_format: str = "BGR"  # what the appsink takes (when its caps are not set in the description): BGR or NV12
    choices: list[str] = field(default_factory=list)  # what the registry decided, for the log


def appsink(live: bool) -> str:
    # live: one buffer, older ones dropped inside the appsink so the decoder never waits on us;
    # otherwise a few buffers and no dropping: a full appsink blocks the pipeline (backpressure).
    return f"appsink name=df2infer_sink sync=false max-buffers={1 if live else 4} drop={'true' if live else 'false'}"


def to_system_memory(pixel_format: str = "BGR", nvidia: bool | None = None) -> str:
    """Converter into system-memory `pixel_format` (BGR or NV12): nvvidconv (NVMM in, system memory
    out; it has no BGR output, hence BGRx then videoconvert) when present, else videoconvert."""
    if nvidia is None:
        nvidia = has_element("nvvidconv")
    if nvidia:
        if pixel_format == "NV12":
            return "nvvidconv ! video/x-raw,format=NV12"
        return "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"
    return f"videoconvert ! video/x-raw,format={pixel_format}"


def csi_pipeline(sensor_id: int, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0, pixel_format: str = "BGR") -> str:
    """The Jetson CSI camera: Argus ISP -> NVMM NV12 -> nvvidconv (flip) -> system memory -> appsink."""
    conv = to_system_memory(pixel_format, nvidia=True).replace("nvvidconv", f"nvvidconv flip-method={flip}", 1)
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},height={height},"
        f"framerate={fps}/1,format=NV12 ! {conv} ! {appsink(True)}"
    )


def v4l2_pipeline(device: str, pixel_format: str = "BGR") -> str:
    """A V4L2 camera: raw (YUY2...) or MJPEG frames; decodebin passes raw through and picks a JPEG decoder."""
    return f"v4l2src device={device} ! decodebin ! {to_system_memory(pixel_format, nvidia=False)} ! {appsink(True)}"


def rtsp_plan(url: str, hardware: bool = True, codec: str = "h264", latency_ms: int = 200, pixel_format: str = "BGR") -> GstPlan:
    """rtspsrc -> depayload -> parse -> decoder -> system memory. `hardware` asks for nvv4l2decoder;
    when the registry lacks it: avdec_<codec> (gstreamer1.0-libav), else decodebin."""
    if codec not in ("h264", "h265"):
        raise SourceError(f"{log_safe(url)}: codec {codec!r}, expected h264 or h265")
    choices = []
    front = f"rtspsrc name=src latency={latency_ms} ! rtp{codec}depay ! {codec}parse"
    if hardware and has_element("nvv4l2decoder"):
        dec, conv = "nvv4l2decoder", to_system_memory(pixel_format)
        choices.append("hardware decoder nvv4l2decoder")
    else:
        soft = f"avdec_{codec}"
        dec = soft if has_element(soft) else "decodebin"
        conv = to_system_memory(pixel_format, nvidia=False)
        if hardware:
            choices.append(f"nvv4l2decoder not in the GStreamer registry: software decoder {dec}")
    return GstPlan(f"{front} ! {dec} ! {conv} ! {appsink(True)}", live=True, location=url, pixel_format=pixel_format, choices=choices)


def _is_live(pipeline: Any) -> bool:
    """A pipeline is live when one of its sources is (a camera, the network, videotestsrc is-live=true)."""
    from gi.repository import GstBase

    it = pipeline.iterate_sources()
    while True:
        ok, el = it.next()
        if ok != import_gst().IteratorResult.OK:
            break
        factory = el.get_factory()
        # el.is_live: GstBaseSrc's field that gst_base_src_set_live sets (PyGObject shows it instead of the method)
        if (factory is not None and factory.get_name() in _LIVE_BINS) or (isinstance(el, GstBase.BaseSrc) and bool(el.is_live)):
            return True
    return False


def _has_appsink(pipeline: Any) -> bool:
    return _find_appsinks(pipeline) != []


def _find_appsinks(pipeline: Any) -> list[Any]:
    Gst = import_gst()
    out = []
    it = pipeline.iterate_recurse()
    while True:
        ok, el = it.next()
        if ok != Gst.IteratorResult.OK:
            break
        f = el.get_factory()
        if f is not None and f.get_name() == "appsink":
            out.append(el)
    return out


def parse_launch(description: str, what: str) -> Any:
    """Gst.parse_launch, with a SourceError naming the element that is missing or the syntax error."""
    Gst = import_gst()
    try:
        return Gst.parse_launch(description)
    except Exception as e:  # GLib.Error: no such element, bad property, syntax
        raise SourceError(f"{log_safe(what)}: GStreamer cannot build this pipeline: {e}") from e


def pipeline_plan(description: str, pixel_format: str = "BGR") -> GstPlan:
    """A user's pipeline string: checked by building it (no state change, no device opened); an
    appsink is added when it has none; live when one of its sources is."""
    Gst = import_gst()
    p = parse_launch(description, description)
    try:
        if not isinstance(p, Gst.Pipeline):
            raise SourceError(f"{log_safe(description)}: not a pipeline (one element); expected 'source ! ... ! appsink'")
        sinks = _find_appsinks(p)
        if len(sinks) > 1:
            raise SourceError(f"{log_safe(description)}: {len(sinks)} appsinks; expected one (frames are taken from it)")
        live = _is_live(p)
    finally:
        p.set_state(Gst.State.NULL)
    if not sinks:
        description = f"{description} ! videoconvert ! {appsink(live)}"
    return GstPlan(description, live=live, pixel_format=pixel_format)


def parse_gst_source(text: str, hw_decode: bool = False, pixel_format: str = "BGR") -> SourceSpec:
    """SourceSpec (kind "gstreamer", target a GstPlan) for csi://N, v4l2:///dev/videoN, /dev/videoN,
    rtsp:// (with hw_decode) or a pipeline string. pixel_format: BGR (the CPU path), or NV12 (frames as
    Nv12Image, for the GPU letterbox kernel)."""
    if pixel_format not in ("BGR", "NV12"):
        raise SourceError(f"{log_safe(text)}: pixel format {pixel_format!r}, expected BGR or NV12")
    import_gst()
    t = text.strip()
    low = t.lower()
    if low.startswith("csi://"):
        n = t[len("csi://") :]
        if not n.isdigit():
            raise SourceError(f"{t}: expected csi://N with N the sensor id (csi://0)")
        if not has_element("nvarguscamerasrc"):
            raise SourceError(
                f"{t}: a CSI camera needs NVIDIA's nvarguscamerasrc (JetPack's nvidia-l4t-gstreamer), which this "
                "GStreamer registry lacks; a USB camera is v4l2:///dev/videoN"
            )
        plan = GstPlan(csi_pipeline(int(n), pixel_format=pixel_format), live=True, pixel_format=pixel_format)
    elif low.startswith(("v4l2://", "/dev/video")):
        dev = t[len("v4l2://") :] if low.startswith("v4l2://") else t
        if not dev.startswith("/dev/"):
            raise SourceError(f"{t}: expected v4l2:///dev/videoN")
        plan = GstPlan(v4l2_pipeline(dev, pixel_format), live=True, pixel_format=pixel_format)
    elif low.startswith(("rtsp://", "rtsps://")):
        plan = rtsp_plan(t, hardware=hw_decode, pixel_format=pixel_format)
    else:
        plan = pipeline_plan(t, pixel_format)
    return SourceSpec(t, "gstreamer", plan.live, plan)


# ------------------------------------------------------------------------------------------------
# frames out of samples


def _plane(data: bytes, offset: int, stride: int, rows: int, row_bytes: int) -> np.ndarray:
    """Rows of `row_bytes` out of a buffer whose rows are `stride` apart (a strided view, no copy)."""
    need = offset + (rows - 1) * stride + row_bytes
    if len(data) < need:
        raise SourceError(f"buffer of {len(data)} bytes; rows {rows} x stride {stride} from offset {offset} need {need}")
    flat = np.frombuffer(data, np.uint8)
    return np.lib.stride_tricks.as_strided(flat[offset:], shape=(rows, row_bytes), strides=(stride, 1), writeable=False)


def sample_to_image(sample: Any) -> np.ndarray | Nv12Image:
    """A BGR [h, w, 3] array (or an Nv12Image) from an appsink sample, reading the buffer's strides and
    offsets (its GstVideoMeta when it has one, else the caps' default layout: rows padded to 4 bytes)."""
    from gi.repository import GstVideo

    Gst = import_gst()
    caps = sample.get_caps()
    info = GstVideo.VideoInfo.new_from_caps(caps)
    if info is None:
        raise SourceError(f"appsink caps {caps.to_string()}: not raw video")
    fmt = info.finfo.format
    w, h = info.width, info.height
    buf = sample.get_buffer()
    strides, offsets = list(info.stride), list(info.offset)
    meta = GstVideo.buffer_get_video_meta(buf)
    if meta is not None:  # the producer's own layout (hardware converters pad rows to their alignment)
        strides, offsets = list(meta.stride), list(meta.offset)
    ok, mapped = buf.map(Gst.MapFlags.READ)
    if not ok:
        raise SourceError("cannot map the appsink's buffer for reading")
    try:
        data = mapped.data  # the one copy out of GStreamer's buffer (bytes)
    finally:
        buf.unmap(mapped)
    if fmt == GstVideo.VideoFormat.BGR:
        return _plane(data, offsets[0], strides[0], h, 3 * w).copy().reshape(h, w, 3)
    if fmt == GstVideo.VideoFormat.NV12:
        cw, ch = (w + 1) // 2, (h + 1) // 2
        y = _plane(data, offsets[0], strides[0], h, w).copy()
        uv = _plane(data, offsets[1], strides[1], ch, 2 * cw).copy().reshape(ch, cw, 2)
        matrix = "bt709" if info.colorimetry.matrix == GstVideo.VideoColorMatrix.BT709 else "bt601"
        return Nv12Image(y, uv, matrix, info.colorimetry.range == getattr(GstVideo.VideoColorRange, "0_255"))
    raise SourceError(
        f"appsink delivered {caps.to_string()}; expected format BGR or NV12 (end the pipeline with "
        "'videoconvert ! video/x-raw,format=BGR ! appsink')"
    )


class GstPipelineError(SourceError):
    """A bus error; `permanent` when retrying cannot help (negotiation, a missing plugin, bad caps)."""

    def __init__(self, msg: str, permanent: bool):
        super().__init__(msg)
        self.permanent = permanent


def bus_error(Gst: Any, message: Any, what: str) -> GstPipelineError:
    """The bus error as a message naming the element and GStreamer's reason."""
    err, debug = message.parse_error()
    element = message.src.get_name() if message.src is not None else "?"
    factory = message.src.get_factory() if hasattr(message.src, "get_factory") else None
    kind = f"{element} ({factory.get_name()})" if factory is not None and factory.get_name() != element else element
    reason = err.message
    dbg = debug or ""
    m = re.search(r"reason (not-negotiated|not-linked|error)", dbg)
    if m:
        reason += f" (streaming stopped: {m.group(1)})"
    # Resource errors (cannot connect, device busy, server gone) may pass; the others will not.
    permanent = not err.matches(Gst.ResourceError.quark(), err.code) or "not-negotiated" in dbg
    if "not-negotiated" in dbg or err.matches(Gst.StreamError.quark(), Gst.StreamError.FORMAT):
        reason += ": the elements could not agree on a format (caps); check the caps filters and add videoconvert"
    return GstPipelineError(f"{log_safe(what)}: GStreamer error from {kind}: {log_safe(reason)}", permanent)


class GstSource(Source):
    """A Source whose reader runs a GStreamer pipeline (spec.target, a GstPlan) and pulls its appsink."""

    POLL_S = 0.05  # pull slices: stop() and the bus are looked at this often

    def __init__(self, spec: SourceSpec, source_id: int, **kw: Any):
        super().__init__(spec, source_id, **kw)
        self.plan: GstPlan = spec.target
        self.pipeline: Any = None  # while running (tests look at its state)
        self.caps: str | None = None  # the negotiated caps of the first sample

    def describe(self) -> str:
        return log_safe(self.plan.description)

    def _build(self) -> tuple[Any, Any]:
        Gst = import_gst()
        pipe = parse_launch(self.plan.description, self.plan.description)
        if self.plan.location is not None:
            src = pipe.get_by_name("src")
            if src is None:
                raise SourceError(f"{self.describe()}: no element named src to take the location")
            src.set_property("location", self.plan.location)
            if src.get_factory().get_name() == "rtspsrc":  # bounded waits (microseconds), as OpenCV's reader
                src.set_property("tcp-timeout", int(self.policy.open_timeout_s * 1e6))
                src.set_property("timeout", int(self.policy.read_timeout_s * 1e6))
        sinks = _find_appsinks(pipe)
        if len(sinks) != 1:
            pipe.set_state(Gst.State.NULL)
            raise SourceError(f"{self.describe()}: {len(sinks)} appsinks; expected one")
        sink = sinks[0]
        sink.set_property("emit-signals", False)
        # As appsink(): frames as soon as they are decoded (a live source paces itself; a file runs as fast as
        # the consumer takes it), the newest only for live sources, backpressure otherwise. This overrides the
        # description's own appsink settings.
        sink.set_property("sync", False)
        sink.set_property("max-buffers", 1 if self.live else 4)
        sink.set_property("drop", self.live)
        if sink.get_property("caps") is None:
            sink.set_property("caps", Gst.Caps.from_string(f"video/x-raw,format={self.plan.pixel_format}"))
        return pipe, sink

    def _note_caps(self, caps: Any) -> None:
        self.caps = caps.to_string()
        ok, num, den = caps.get_structure(0).get_fraction("framerate")
        self.fps = num / den if ok and den and 0 < num / den < 1000 else None

    def _check_bus(self, Gst: Any, bus: Any) -> str | None:
        """'eos' when the stream ended; raises GstPipelineError on an error; None otherwise."""
        while True:
            msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.WARNING)
            if msg is None:
                return None
            if msg.type == Gst.MessageType.ERROR:
                raise bus_error(Gst, msg, self.name)
            if msg.type == Gst.MessageType.EOS:
                return "eos"
            w, _ = msg.parse_warning()
            log.warning("%s: GStreamer warning from %s: %s", log_safe(self.name), msg.src.get_name(), log_safe(w.message))

    def _pull(self, Gst: Any, pipe: Any, sink: Any, timeout_s: float) -> Any:
        """The next sample, or 'eos' / 'timeout' / 'stop'; raises GstPipelineError on a bus error."""
        bus = pipe.get_bus()
        end = time.monotonic() + timeout_s
        while True:
            sample = sink.try_pull_sample(int(self.POLL_S * Gst.SECOND))
            if sample is not None:
                return sample
            if self._check_bus(Gst, bus) == "eos" or sink.is_eos():
                self._check_bus(Gst, bus)  # an error posted just before EOS wins
                return "eos"
            if self._stop.is_set():
                return "stop"
            if time.monotonic() >= end:
                return "timeout"

    def _close(self, Gst: Any, pipe: Any) -> None:
        pipe.set_state(Gst.State.NULL)  # synchronous for the elements' streaming threads
        pipe.get_state(Gst.CLOCK_TIME_NONE)

    def _run_capture(self) -> None:
        Gst = import_gst()
        index, attempt, connected_before = 0, 0, False
        log.info("%s: GStreamer pipeline: %s%s", log_safe(self.name), self.describe(), "".join(f"; {c}" for c in self.plan.choices))
        while not self._stop.is_set():
            try:
                pipe, sink = self._build()
            except SourceError as e:
                self._fail(str(e))
                return
            self.pipeline = pipe
            got, outcome, error = False, "", None
            try:
                if pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                    try:
                        self._check_bus(Gst, pipe.get_bus())
                    except GstPipelineError as e:
                        error = e
                    if error is None:
                        error = GstPipelineError(f"{self.name}: the pipeline refused to start (state change to PLAYING failed)", True)
                else:
                    while not self._stop.is_set():
                        if self.max_frames is not None and index >= self.max_frames:
                            return
                        t0 = time.perf_counter()
                        timeout = self.policy.read_timeout_s if got else self.policy.open_timeout_s
                        try:
                            sample = self._pull(Gst, pipe, sink, timeout)
                        except GstPipelineError as e:
                            error = e
                            break
                        if isinstance(sample, str):
                            outcome = sample
                            break
                        if self.gate is not None and not self.gate.keep(index, time.time() if self.live else index / (self.fps or 30.0)):
                            del sample  # passed over (--vid-stride / --max-fps): decoded by the pipeline, never copied out
                            self.stats.skipped += 1
                            index += 1
                            continue
                        try:
                            img = sample_to_image(sample)
                            buf_pts = sample.get_segment().to_stream_time(Gst.Format.TIME, sample.get_buffer().pts)  # edit lists applied
                            if self.caps is None:
                                self._note_caps(sample.get_caps())
                        finally:
                            del sample  # released now: the pool's buffer goes back to the decoder
                        self._timed_decode(t0)
                        if not got:
                            got, attempt = True, 0
                            if connected_before and self.live:
                                self.stats.reconnects += 1
                                log.warning("%s: reconnected (reconnect %d)", log_safe(self.name), self.stats.reconnects)
                            connected_before = True
                            self.state = "running"
                        self.stats.frames += 1
                        pts = None  # as the OpenCV reader: the media position for files, capture time for live
                        if not self.live and buf_pts != Gst.CLOCK_TIME_NONE:
                            pts = buf_pts / Gst.SECOND
                        if not self._publish(Frame(self._info(index, pts), img)):  # type: ignore[arg-type]
                            return
                        index += 1
            finally:
                self._close(Gst, pipe)
                self.pipeline = None
            if self._stop.is_set() or outcome == "stop":
                return
            if error is not None and (error.permanent or not self.live):
                self._fail(str(error))
                return
            if not self.live:
                if outcome == "eos" and index > 0:
                    if self.loop:
                        continue
                    return  # end of stream
                why = f"no frame within {self.policy.open_timeout_s:g} s" if outcome == "timeout" else "ended before its first frame"
                self._fail(f"{log_safe(self.name)}: {why}")
                return
            attempt += 1
            limit = self.policy.read_timeout_s if got else self.policy.open_timeout_s
            what = {"eos": "the stream ended", "timeout": f"no frame within the {limit:g} s timeout"}
            msg = str(error) if error is not None else f"{log_safe(self.name)}: {what.get(outcome, outcome)}"
            if not self._wait_to_reconnect(msg, attempt):
                return
