"""RTSP out (`df2infer video --rtsp-out [HOST:]PORT[/PATH]`): each source's annotated stream served by GStreamer's
RTSP server at rtsp://HOST:PORT/PATH/<source id> (H.264).

The encoder is chosen by what is installed: `nvv4l2h264enc` (Jetson hardware encoder, behind `nvvidconv`)
when present, else `x264enc` (Jetson Orin Nano has no hardware encoder; x86 machines). The bindings are
GStreamer's Python ones (PyGObject, the `gstreamer` extra, or JetPack's python3-gi), the same the
GStreamer input uses.

Every frame written is counted; it is pushed to every client's pipeline that is watching that source.
With no client watching there is nothing to encode. A client's pipeline that holds `max_buffers` frames
not yet encoded (the encoder behind the loop) gets no new one until it catches up: those frames are
counted in `skipped`, never silently lost."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from df2infer.results import FrameResult
from df2infer.sinks.annotate import annotated
from df2infer.sinks.base import Sink

log = logging.getLogger(__name__)


def _gst() -> tuple[Any, Any, Any]:
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as e:
        raise RuntimeError(
            "--rtsp-out needs GStreamer's RTSP server and its Python bindings: apt-get install gir1.2-gst-rtsp-server-1.0 "
            "gstreamer1.0-plugins-ugly (x264enc), and PyGObject in this environment (pip install 'df2infer[gstreamer]'; "
            f"on a Jetson JetPack's python3-gi): {e}"
        ) from e
    Gst.init(None)
    return GLib, Gst, GstRtspServer


def encoder_chain(Gst: Any, fps: float) -> str:
    """The encode part of the pipeline: the Jetson hardware encoder when present, else x264."""
    gop = max(1, int(round(fps)))
    if Gst.ElementFactory.find("nvv4l2h264enc") and Gst.ElementFactory.find("nvvidconv"):
        return f"nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc insert-sps-pps=true iframeinterval={gop} ! h264parse"
    if Gst.ElementFactory.find("x264enc"):
        return f"videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} threads=1"
    raise RuntimeError(
        "--rtsp-out: no H.264 encoder: neither nvv4l2h264enc (Jetson) nor x264enc (apt-get install gstreamer1.0-plugins-ugly)"
    )


class RtspOutSink(Sink):
    """See the module doc. `port` 0 is not supported by the RTSP server's API: give a free port. `url(source_id)`
    is a source's address."""

    def __init__(self, port: int, host: str = "127.0.0.1", path: str = "live", max_buffers: int = 4):
        self.GLib, self.Gst, GstRtspServer = _gst()
        self.host, self.port, self.path = host, int(port), path.strip("/")
        self.max_buffers = int(max_buffers)
        self.frames = 0
        self.pushed = 0
        self.skipped = 0
        self._srcs: dict[int, list[Any]] = {}  # source id -> the appsrc of each client pipeline
        self._mounted: dict[int, tuple[int, int]] = {}  # source id -> (w, h)
        self._lock = threading.Lock()
        self._server = GstRtspServer.RTSPServer()
        self._server.set_address(host)
        self._server.set_service(str(self.port))
        self._ctx = self.GLib.MainContext.new()
        self._loop = self.GLib.MainLoop.new(self._ctx, False)
        self._source_id = self._server.attach(self._ctx)
        if not self._source_id:
            raise OSError(f"--rtsp-out {host}:{port}: cannot listen there (port in use?)")
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-out", daemon=True)
        self._thread.start()
        self._GstRtspServer = GstRtspServer

    def url(self, source_id: int) -> str:
        return f"rtsp://{self.host}:{self.port}/{self.path}/{source_id}" if self.path else f"rtsp://{self.host}:{self.port}/{source_id}"

    def _mount(self, source_id: int, w: int, h: int, fps: float) -> None:
        launch = (
            f"( appsrc name=src is-live=true format=time do-timestamp=true "
            f"caps=video/x-raw,format=BGR,width={w},height={h},framerate={int(round(fps))}/1 "
            f"! queue max-size-buffers={self.max_buffers} leaky=no ! {encoder_chain(self.Gst, fps)} "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory = self._GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)  # one encoder per source, however many clients watch
        factory.connect("media-configure", self._on_media, source_id)
        self._server.get_mount_points().add_factory(f"/{self.path}/{source_id}" if self.path else f"/{source_id}", factory)
        self._mounted[source_id] = (w, h)
        log.info("rtsp out: %s", self.url(source_id))

    def _on_media(self, factory: Any, media: Any, source_id: int) -> None:
        src = media.get_element().get_child_by_name("src")
        with self._lock:
            self._srcs.setdefault(source_id, []).append(src)
        media.connect("unprepared", self._on_gone, source_id, src)

    def _on_gone(self, media: Any, source_id: int, src: Any) -> None:
        with self._lock:
            if src in self._srcs.get(source_id, []):
                self._srcs[source_id].remove(src)

    def write(self, result: FrameResult) -> None:
        self.frames += 1
        if not result.ok or result.image is None:
            return
        sid = result.info.source_id
        image = annotated(result)
        h, w = image.shape[:2]
        if sid not in self._mounted:
            self._mount(sid, w, h, result.info.fps or 30.0)
        elif self._mounted[sid] != (w, h):  # a camera back at another size: the stream keeps its first size
            import cv2

            image = cv2.resize(image, self._mounted[sid], interpolation=cv2.INTER_AREA)
        with self._lock:
            srcs = list(self._srcs.get(sid, []))
        if not srcs:
            return
        data = np.ascontiguousarray(image).tobytes()
        for src in srcs:
            if src.get_property("current-level-buffers") >= self.max_buffers:
                self.skipped += 1  # this client's encoder is behind: counted, not queued without bound
                continue
            src.emit("push-buffer", self.Gst.Buffer.new_wrapped(data))
            self.pushed += 1

    def close(self) -> None:
        if self._loop is None:
            return
        with self._lock:
            srcs = [s for lst in self._srcs.values() for s in lst]
        for s in srcs:
            s.emit("end-of-stream")
        src = self._ctx.find_source_by_id(self._source_id)
        if src is not None:
            src.destroy()  # stop listening
        self._loop.quit()
        self._thread.join(5)
        self._loop = None


__all__ = ["RtspOutSink", "encoder_chain"]
