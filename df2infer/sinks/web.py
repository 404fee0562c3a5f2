"""A live page in the browser (`df2infer video --serve [HOST:]PORT`): each source's annotated picture and the
loop's figures (fps, per-stage p50/p99, frame age, drops, reconnects, items per category, tracks), updated
without reloading (the page polls /frame/<id>.jpg and /stats.json).

Binds 127.0.0.1 unless a host is given. Bound elsewhere it needs a token (WEB_TOKEN_ENV or a file), which
the browser gives once as `?token=...` (the server answers with an HttpOnly cookie) or as an
`Authorization: Bearer` header; a wrong or missing token gets 401. The token is never printed or logged.
TLS when given a certificate and key.

Every frame written is counted per source; the picture served is the newest one (JPEG-encoded when a
browser asks for it, at most once per frame), so the loop never waits for a viewer."""

from __future__ import annotations

import hmac
import html
import json
import logging
import os
import ssl
import threading
import time
from collections import deque
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from df2infer.results import FrameResult
from df2infer.sinks.annotate import annotated
from df2infer.sinks.base import Sink

log = logging.getLogger(__name__)

WEB_TOKEN_ENV = "DF2INFER_WEB_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def load_token(token_file: str | None) -> str | None:
    """The page's token: the first line of `token_file`, else $DF2INFER_WEB_TOKEN, else None."""
    if token_file:
        try:
            with open(token_file) as f:
                token = f.readline().strip()
        except OSError as e:
            raise ValueError(f"--serve-token-file {token_file}: cannot read it ({e.strerror})") from e
        if not token:
            raise ValueError(f"--serve-token-file {token_file}: the first line is empty; expected the token")
        return token
    return os.environ.get(WEB_TOKEN_ENV) or None


class _SourceView:
    def __init__(self, name: str):
        self.name = name
        self.image: np.ndarray | None = None
        self.seq = 0
        self.jpeg: bytes = b""
        self.jpeg_seq = -1
        self.frames = 0
        self.counts: dict[str, int] = {}
        self.tracks: set[int] = set()
        self.age_s: float | None = None


class WebSink(Sink):
    """See the module doc. `port` 0 picks a free port (`self.port`); `pipeline` (optional) adds the stage
    figures, drops and reconnects."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        token: str | None = None,
        pipeline: Any = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        jpeg_quality: int = 75,
    ):
        if host not in LOOPBACK and not token:
            raise ValueError(
                f"--serve {host}:{port}: a page reachable from other machines needs a token: set ${WEB_TOKEN_ENV} "
                "or give --serve-token-file (or bind 127.0.0.1)"
            )
        self.token = token
        self.pipeline = pipeline
        self.quality = int(jpeg_quality)
        self.views: dict[int, _SourceView] = {}
        self._lock = threading.Lock()
        self._times: deque[float] = deque()
        self.refused = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:  # the default logs URLs (tokens): say nothing
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                sink._handle(self)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if certfile else "http"
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="web-page", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The page's address (without the token)."""
        return f"{self.scheme}://{self.host}:{self.port}/"

    # the loop's side ------------------------------------------------------------------------------
    def write(self, result: FrameResult) -> None:
        info = result.info
        now = time.monotonic()
        with self._lock:
            v = self.views.get(info.source_id)
            if v is None:
                v = self.views[info.source_id] = _SourceView(info.display_name)
            v.frames += 1
            if result.ok and result.image is not None:
                v.image = annotated(result)  # drawn once for all the sinks; encoded when a browser asks
                v.seq += 1
                names = result.detections.names  # type: ignore[union-attr]
                v.counts = {n: names.count(n) for n in sorted(set(names))}
                tids = getattr(result.detections, "track_ids", None)
                if tids is not None:
                    v.tracks.update(int(t) for t in tids)
            v.age_s = result.age_s if info.wall_time is not None and result.output_time else None
            self._times.append(now)
            while self._times and self._times[0] < now - 5.0:
                self._times.popleft()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None  # type: ignore[assignment]

    # the browser's side ---------------------------------------------------------------------------
    def _authorized(self, req: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, set the cookie): no token configured, or the right one as ?token=, cookie or Bearer header."""
        if not self.token:
            return True, False
        given = query.get("token", [None])[0]
        if given is not None:
            ok = hmac.compare_digest(given.encode(), self.token.encode())
            return ok, ok
        jar = cookies.SimpleCookie(req.headers.get("Cookie", ""))
        if "df2infer_token" in jar and hmac.compare_digest(jar["df2infer_token"].value.encode(), self.token.encode()):
            return True, False
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), self.token.encode()):
            return True, False
        return False, False

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        ok, set_cookie = self._authorized(req, parse_qs(parts.query))
        if not ok:
            self.refused += 1
            self._send(req, 401, "text/plain; charset=utf-8", b"401: wrong or missing token\n")
            return
        extra = {}
        if set_cookie and self.token:
            secure = "; Secure" if self.scheme == "https" else ""
            extra["Set-Cookie"] = f"df2infer_token={self.token}; HttpOnly; SameSite=Strict; Path=/{secure}"
        path = parts.path
        if path == "/":
            self._send(req, 200, "text/html; charset=utf-8", self._page().encode(), extra)
        elif path == "/stats.json":
            self._send(req, 200, "application/json", json.dumps(self.stats()).encode(), extra)
        elif path.startswith("/frame/") and path.endswith(".jpg") and path[7:-4].isdigit():
            jpeg = self._jpeg(int(path[7:-4]))
            if jpeg is None:
                self._send(req, 404, "text/plain", b"no such source, or no picture yet\n")
            else:
                self._send(req, 200, "image/jpeg", jpeg, {**extra, "Cache-Control": "no-store"})
        else:
            self._send(req, 404, "text/plain", b"not found\n")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            req.send_response(code)
            req.send_header("Content-Type", ctype)
            req.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                req.send_header(k, v)
            req.end_headers()
            req.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away mid-answer: nothing to tell it

    def _jpeg(self, source_id: int) -> bytes | None:
        with self._lock:
            v = self.views.get(source_id)
            if v is None or v.image is None:
                return None
            if v.jpeg_seq == v.seq:
                return v.jpeg
            image, seq = v.image, v.seq
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError(f"web page: JPEG encoding of source {source_id}'s frame failed")
        with self._lock:
            v.jpeg, v.jpeg_seq = buf.tobytes(), seq
        return v.jpeg

    def stats(self) -> dict[str, Any]:
        """The figures the page shows (also GET /stats.json)."""
        summary = self.pipeline.summary() if self.pipeline is not None else {}
        per_source = {s["id"]: s for s in summary.get("sources", [])}
        with self._lock:
            fps = len(self._times) / 5.0
            sources = [
                {
                    "id": sid,
                    "source": v.name,
                    "frames": v.frames,
                    "age_ms": None if v.age_s is None else round(v.age_s * 1e3, 1),
                    "items": v.counts,
                    "tracks": len(v.tracks),
                    "state": per_source.get(sid, {}).get("state"),
                    "dropped": per_source.get(sid, {}).get("dropped", 0),
                    "reconnects": per_source.get(sid, {}).get("reconnects", 0),
                }
                for sid, v in sorted(self.views.items())
            ]
        return {"fps": round(fps, 2), "stages": summary.get("stages", {}), "sources": sources}

    def _page(self) -> str:
        with self._lock:
            ids = sorted(self.views)
            names = {sid: self.views[sid].name for sid in ids}
        views = "".join(
            f'<figure><img id="img{sid}" data-src="/frame/{sid}.jpg" alt="source {sid}">'
            f"<figcaption>[{sid}] {html.escape(names[sid])}</figcaption></figure>"
            for sid in ids
        )
        return _PAGE.replace("{views}", views or "<p>waiting for the first frame...</p>")


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>df2infer live</title>
<style>
body{font-family:sans-serif;margin:1em;background:#111;color:#eee} figure{display:inline-block;margin:.5em}
img{max-width:640px;border:1px solid #444;display:block} table{border-collapse:collapse;margin-top:1em}
td,th{border:1px solid #444;padding:.2em .6em;text-align:right} th{background:#222}
</style></head><body>
<h1>df2infer live</h1>
<div id="views">{views}</div>
<p>fps <b id="fps">-</b></p>
<table id="stages"></table>
<table id="sources"></table>
<script>
function tick(){
  for (const img of document.querySelectorAll('img[data-src]')) {
    const next = new Image();
    next.onload = () => { img.src = next.src; };
    next.src = img.dataset.src + '?t=' + Date.now();
  }
}
function row(cells, tag){ return '<tr>' + cells.map(c => '<' + tag + '>' + c + '</' + tag + '>').join('') + '</tr>'; }
function esc(s){ return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'})[c]); }
async function figures(){
  const r = await fetch('/stats.json', {cache: 'no-store'});
  if (!r.ok) return;
  const s = await r.json();
  if (s.sources.length !== document.querySelectorAll('img[data-src]').length) { location.reload(); return; }
  document.getElementById('fps').textContent = s.fps.toFixed(1);
  document.body.dataset.updates = Number(document.body.dataset.updates || 0) + 1;
  document.getElementById('stages').innerHTML = row(['stage', 'p50 ms', 'p99 ms'], 'th') +
    Object.entries(s.stages).map(([k, v]) => row([k, v.p50_ms, v.p99_ms], 'td')).join('');
  document.getElementById('sources').innerHTML =
    row(['source', 'frames', 'age ms', 'dropped', 'reconnects', 'tracks', 'items'], 'th') +
    s.sources.map(x => row([esc(x.source), '<span class="frames">' + x.frames + '</span>', x.age_ms ?? '-', x.dropped,
      x.reconnects, x.tracks, esc(Object.entries(x.items).map(([k, n]) => k + ' ' + n).join(', '))], 'td')).join('');
}
setInterval(tick, 200); setInterval(figures, 1000); tick(); figures();
</script></body></html>
"""

__all__ = ["WEB_TOKEN_ENV", "WebSink", "load_token"]
