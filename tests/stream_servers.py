"""Real stream servers on 127.0.0.1 for the video tests, run as subprocesses (so a test can SIGSTOP,
SIGCONT and kill them). Each stops itself after --duration seconds.

    python stream_servers.py mjpeg PORT    multipart/x-mixed-replace JPEG over HTTP (cv2 encodes)
    python stream_servers.py mpegts PORT   MPEG-TS over HTTP (H.264 by PyAV/FFmpeg), chunked live
    python3 stream_servers.py rtsp PORT    RTSP at rtsp://127.0.0.1:PORT/live via GStreamer's
                                           gst-rtsp-server (Debian: gir1.2-gst-rtsp-server-1.0,
                                           gstreamer1.0-plugins-{base,good,ugly}); needs the system
                                           python3 with python3-gi, not the venv

The HTTP servers send 320x240 frames at --fps, each showing its number. With --auth USER:PASSWORD
they answer 401 (WWW-Authenticate: Basic) to any request without exactly those credentials, as a
camera does, and count the refusals in the file named by --refusals (one line per 401). The RTSP
server with --auth requires the same (gst-rtsp-server's RTSPAuth).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

W, H = 320, 240


def _frame(n: int):
    import cv2
    import numpy as np

    img = np.full((H, W, 3), (40, 90, 160), np.uint8)
    x = (n * 4) % (W - 60)
    cv2.rectangle(img, (x, 60), (x + 60, 200), (220, 220, 220), -1)
    cv2.putText(img, str(n), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return img


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    """Basic authentication (RFC 7617) when the server was given credentials."""

    auth: str | None = None  # "user:password"
    refusals: str | None = None  # file that gets one line per refused request

    def log_message(self, *a):
        pass

    def authorized(self) -> bool:
        if self.auth is None:
            return True
        expected = "Basic " + base64.b64encode(self.auth.encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        if self.refusals:
            with open(self.refusals, "a") as f:
                f.write("401\n")
        return False


def serve_mjpeg(port: int, fps: float, handler: type[_Handler] = _Handler) -> None:
    import cv2

    class Handler(handler):
        def do_GET(self):
            if not self.authorized():
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            n = 0
            t0 = time.monotonic()
            try:
                while True:
                    ok, jpg = cv2.imencode(".jpg", _frame(n))
                    data = jpg.tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data))
                    self.wfile.write(data + b"\r\n")
                    self.wfile.flush()
                    n += 1
                    time.sleep(max(0.0, t0 + n / fps - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                return

    _Server(("127.0.0.1", port), Handler).serve_forever()


def serve_mpegts(port: int, fps: float, handler: type[_Handler] = _Handler) -> None:
    import av

    class Sock:
        def __init__(self, wfile):
            self.wfile = wfile

        def write(self, b):
            self.wfile.write(b)
            self.wfile.flush()
            return len(b)

    class Handler(handler):
        def do_GET(self):
            if not self.authorized():
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            out = av.open(Sock(self.wfile), "w", format="mpegts")
            s = out.add_stream("libx264", rate=int(fps))
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
            s.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
            s.codec_context.gop_size = int(fps) // 2
            n = 0
            t0 = time.monotonic()
            try:
                while True:
                    f = av.VideoFrame.from_ndarray(_frame(n), format="bgr24")
                    f.pts = n
                    for p in s.encode(f):
                        out.mux(p)
                    n += 1
                    time.sleep(max(0.0, t0 + n / fps - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError, OSError):
                return

    _Server(("127.0.0.1", port), Handler).serve_forever()


def serve_rtsp(port: int, fps: float, auth: str | None = None) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={W},height={H},framerate={int(fps)}/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(1, int(fps) // 2)} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    if auth is not None:  # basic authentication: only this user may see and construct the media
        user, _, password = auth.partition(":")
        a = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        a.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(a)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", "media.factory.access", True)
        perms.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"rtsp: cannot listen on 127.0.0.1:{port}")
    GLib.MainLoop().run()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("mjpeg", "mpegts", "rtsp"))
    ap.add_argument("port", type=int)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--duration", type=float, default=90.0, help="exit after this many seconds")
    ap.add_argument("--auth", default=None, help="USER:PASSWORD the HTTP servers require (basic authentication)")
    ap.add_argument("--refusals", default=None, help="file that gets a line per refused (401) request")
    ap.add_argument("--size", default=None, help="WxH of the HTTP servers' frames (default: 320x240)")
    a = ap.parse_args()
    if a.size:
        global W, H
        W, H = (int(v) for v in a.size.lower().split("x"))
    threading.Timer(a.duration, lambda: os._exit(0)).start()  # servers stop themselves
    if a.kind == "rtsp":
        serve_rtsp(a.port, a.fps, a.auth)
        return
    handler = type("Handler", (_Handler,), {"auth": a.auth, "refusals": a.refusals})
    {"mjpeg": serve_mjpeg, "mpegts": serve_mpegts}[a.kind](a.port, a.fps, handler)


if __name__ == "__main__":
    sys.exit(main())
