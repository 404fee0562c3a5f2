"""The video loop: sources, batching, reconnects against real servers on 127.0.0.1, sinks, the CLI.

Servers (tests/stream_servers.py) run as subprocesses so they can be stalled (SIGSTOP) and killed;
each stops itself after a bounded time. Inference uses the tiny fake model except in the one
end-to-end test of the bundled model."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import fake_model
import numpy as np
import pytest

from df2infer.ops.options import DecodeOptions
from df2infer.results import Detections
from df2infer.stream import Pipeline, ReconnectPolicy, SourceError, parse_source
from df2infer.stream.sources import expand_sources, gstreamer_available
from df2infer.stream.tracking import Tracker

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "stream_servers.py"
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> str:
    return str(fake_model.build(tmp_path_factory.mktemp("model") / "fake.onnx"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[str, int]:
    from df2infer.synth.video import make_video

    path, _ = make_video(tmp_path_factory.mktemp("clip"), frames=45, size=(320, 180))
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return str(path), n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rtsp_available() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    r = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); "
            "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
            "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')",
        ],
        capture_output=True,
    )
    return r.returncode == 0


class Server:
    """A stream server subprocess on a fixed port (so it can be restarted at the same URL)."""

    def __init__(self, kind: str, fps: float = 30.0):
        self.kind = kind
        self.fps = fps
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.url = f"rtsp://127.0.0.1:{self.port}/live" if kind == "rtsp" else f"http://127.0.0.1:{self.port}/"

    def start(self) -> Server:
        py = SYSTEM_PYTHON if self.kind == "rtsp" else sys.executable
        self.proc = subprocess.Popen(
            [py, str(SERVERS), self.kind, str(self.port), "--fps", str(self.fps), "--duration", "60"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def wait_ready(self, timeout: float = 10.0) -> Server:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.kind} server on port {self.port} not up after {timeout} s")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.kill()


class Collector:
    """Iterates a pipeline in a thread, recording (source_id, frame index, monotonic time)."""

    def __init__(self, pipe: Pipeline):
        self.pipe = pipe
        self.records: list[tuple[int, int, float]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            for r in self.pipe:
                self.records.append((r.info.source_id, r.info.index, time.monotonic()))
        except BaseException as e:  # reported by the test
            self.error = e

    def count(self, sid: int, after: float = 0.0) -> int:
        return sum(1 for s, _, t in list(self.records) if s == sid and t > after)

    def wait_for(self, sid: int, after: float, timeout: float, n: int = 1) -> float | None:
        """Monotonic time of the n-th frame of source sid output after `after`, or None on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ts = [t for s, _, t in list(self.records) if s == sid and t > after]
            if len(ts) >= n:
                return ts[n - 1]
            time.sleep(0.02)
        return None


# ------------------------------------------------------------------------------------------------
# parsing and policy


def test_parse_sources_and_errors(tmp_path):
    assert parse_source("0").kind == "webcam" and parse_source("0").live
    assert parse_source("/dev/video3").kind == "webcam"
    for url in ("rtsp://cam/1", "http://h/x.mjpg", "https://h/live.m3u8"):
        s = parse_source(url)
        assert s.kind == "network" and s.live
    with pytest.raises(SourceError, match="missing.mp4"):
        parse_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        parse_source(str(tmp_path / "empty"))
    lst = tmp_path / "cams.streams"
    lst.write_text("# cameras\nrtsp://a/1\n\nhttp://b/2\n")
    assert expand_sources([str(lst), "x.mp4"]) == ["rtsp://a/1", "http://b/2", "x.mp4"]


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
def test_gstreamer_and_csi_fail_at_once_without_gstreamer():
    for src in ("csi://0", "videotestsrc ! videoconvert ! appsink"):
        t = time.monotonic()
        with pytest.raises(SourceError, match="GStreamer") as e:
            parse_source(src)
        assert "JetPack" in str(e.value) and "getBuildInformation" in str(e.value)
        assert time.monotonic() - t < 1.0


def test_backoff_is_exponential_capped_and_jittered():
    import random

    p = ReconnectPolicy(base_delay_s=0.1, max_delay_s=1.0, jitter=0.25)
    rng = random.Random(0)
    for k, nominal in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        ds = [p.delay(k, rng) for _ in range(200)]
        assert min(ds) >= nominal * 0.75 - 1e-9 and max(ds) <= nominal * 1.25 + 1e-9
        assert max(ds) - min(ds) > nominal * 0.2  # jittered
    assert p.worst_delay_s == pytest.approx(1.25)


# ------------------------------------------------------------------------------------------------
# files: nothing lost, batching across sources, routing


def _solid_folder(folder: Path, value: int, n: int) -> str:
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((60, 80, 3), value, np.uint8))
    return str(folder)


def test_batches_across_sources_and_routes_results_back(tmp_path, fake):
    dark = _solid_folder(tmp_path / "dark", 20, 9)
    bright = _solid_folder(tmp_path / "bright", 230, 9)
    p = Pipeline([dark, bright], fake, options=DecodeOptions(embeddings=True), batch=4, queue_size=16)
    seen: dict[int, list] = {0: [], 1: []}
    emb: dict[int, set] = {0: set(), 1: set()}
    for r in p:
        seen[r.info.source_id].append(r.info.index)
        emb[r.info.source_id].add(round(float(r.detections.embeddings[0, 0]), 5))
    assert seen == {0: list(range(9)), 1: list(range(9))}
    # the fake model's embeddings scale with the image's mean: each source keeps its own value
    assert len(emb[0]) == 1 and len(emb[1]) == 1 and emb[0] != emb[1]
    assert p.batches < 18  # frames of both sources shared inference calls


def test_cli_file_mode_loses_no_frame_and_names_a_bad_source(tmp_path, fake, clip):
    path, n = clip
    folder = _solid_folder(tmp_path / "imgs", 100, 5)
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "df2infer",
            "video",
            path,
            folder,
            str(tmp_path / "nope.mp4"),
            "--model",
            fake,
            "--out",
            str(out),
            "--batch",
            "3",
            "--no-progress",
            "--track",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr  # one source failed, the others ran
    assert "nope.mp4" in r.stderr
    lines = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    by_src: dict[int, list[int]] = {}
    for rec in lines:
        by_src.setdefault(rec["source_id"], []).append(rec["frame_index"])
        assert {"schema", "source", "source_id", "timestamp", "items"} <= set(rec) and rec["schema"] == 2
        for it in rec["items"]:
            assert {"box", "score", "category", "landmarks", "track_id"} <= set(it)
    assert sorted(by_src[0]) == list(range(n)) and sorted(by_src[1]) == list(range(5))
    assert "summary:" in r.stderr and "dropped 0" in r.stderr
    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == 2
    assert _count_frames(videos[0]) == n


def _count_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_detect_points_to_video_for_a_video_file(clip, tmp_path, fake):
    r = subprocess.run(
        [sys.executable, "-m", "df2infer", "detect", clip[0], "--model", fake, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "df2infer video" in r.stderr


# ------------------------------------------------------------------------------------------------
# live servers: stall, kill, restart


SERVER_KINDS = [
    "mjpeg",
    "mpegts",
    pytest.param(
        "rtsp",
        marks=pytest.mark.skipif(
            not _rtsp_available(),
            reason="no GStreamer RTSP server: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
            "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly (make setup does)",
        ),
    ),
]


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_live_stream_stall_kill_restart(kind, fake):
    target = Server(kind).start()
    other = Server("mjpeg", fps=15).start()
    policy = ReconnectPolicy(open_timeout_s=1.5, read_timeout_s=1.0, base_delay_s=0.1, max_delay_s=0.5, jitter=0.2, max_failures=100)
    pipe = Pipeline([target.url, other.url], fake, batch=2, policy=policy)
    col = Collector(pipe)
    try:
        col.thread.start()
        assert col.wait_for(0, 0, timeout=20, n=5) is not None, f"no frames from {target.url}"
        assert col.wait_for(1, 0, timeout=10, n=5) is not None
        # stall: the read times out, the source reconnects; the other source keeps producing
        target.signal(signal.SIGSTOP)
        t_stall = time.monotonic()
        time.sleep(2.5)
        assert col.count(1, after=t_stall + 0.3) >= 10
        assert pipe.sources[0].state == "reconnecting" or pipe.sources[0].stats.failures >= 1
        target.signal(signal.SIGCONT)
        t_back = time.monotonic()
        bound = policy.open_timeout_s + policy.read_timeout_s + policy.worst_delay_s + 2.0
        t_new = col.wait_for(0, t_back, timeout=bound + 5)
        assert t_new is not None and t_new - t_back <= bound, f"{kind}: no frame within {bound:.1f} s of SIGCONT"
        # kill and restart at the same URL
        target.kill()
        t_kill = time.monotonic()
        time.sleep(1.5)
        assert col.count(1, after=t_kill + 0.3) >= 10
        reconnects_before = pipe.sources[0].stats.reconnects
        target.start()
        t_restart = time.monotonic()
        bound = policy.worst_delay_s + policy.open_timeout_s + 2.5  # + server start-up
        t_new = col.wait_for(0, t_restart, timeout=bound + 5)
        assert t_new is not None, f"{kind}: no frame after the server restarted"
        assert t_new - t_restart <= bound, f"{kind}: first frame {t_new - t_restart:.2f} s after restart > {bound:.2f} s"
        assert pipe.sources[0].stats.reconnects > reconnects_before >= 1
        assert pipe.sources[1].state == "running"
    finally:
        pipe.stop()
        col.thread.join(15)
        target.stop()
        other.stop()
    assert col.error is None
    s = pipe.summary()
    assert s["reconnects"] >= 2 and s["sources"][0]["reconnects"] >= 2


def test_dead_source_is_dropped_after_max_failures_others_continue(fake):
    other = Server("mjpeg", fps=15).start().wait_ready()
    policy = ReconnectPolicy(open_timeout_s=0.5, read_timeout_s=0.5, base_delay_s=0.05, max_delay_s=0.1, max_failures=3)
    pipe = Pipeline([f"http://127.0.0.1:{_free_port()}/", other.url], fake, policy=policy)
    col = Collector(pipe)
    try:
        col.thread.start()
        t0 = time.monotonic()
        while pipe.sources[0].state != "failed" and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        assert pipe.sources[0].state == "failed" and "3 attempts" in (pipe.sources[0].error or "")
        assert col.wait_for(1, time.monotonic(), timeout=5, n=5) is not None
    finally:
        pipe.stop()
        col.thread.join(10)
        other.stop()
    assert pipe.summary()["failed_sources"] == [pipe.sources[0].name]


def test_live_source_keeps_only_the_newest_frame(fake):
    """A consumer slower than the camera: frames are dropped and counted, the age stays bounded."""
    srv = Server("mjpeg", fps=30).start().wait_ready()
    pipe = Pipeline([srv.url], fake, batch=1)
    ages = []
    try:
        for r in pipe:
            r.output_time = time.time()
            ages.append(r.age_s)
            time.sleep(0.1)  # a 10 fps consumer
            if len(ages) >= 25:
                break
    finally:
        pipe.close()
        srv.stop()
    st = pipe.sources[0].stats
    assert st.dropped >= 20  # ~2 of every 3 frames
    assert st.frames == st.delivered + st.dropped + pipe.sources[0].pending()
    # without dropping, the age would grow by ~67 ms per frame (1.3 s over these 20); it stays flat
    assert np.median(ages[-5:]) < np.median(ages[2:7]) + 0.3 and max(ages) < 1.5, ages


# ------------------------------------------------------------------------------------------------
# the CLI under signals: the video plays, the JSONL is complete to the last processed frame


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_cli_signal_leaves_a_playable_video(sig, tmp_path, fake, clip):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "df2infer",
            "video",
            clip[0],
            "--loop",
            "--model",
            fake,
            "--out",
            str(out),
            "--summary-every",
            "0",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    jl = out / "detections.jsonl"
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 60:
            if jl.exists() and len(jl.read_text().splitlines()) >= 100:
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = jl.read_text().splitlines()
    recs = [json.loads(x) for x in lines if x.endswith("}")]
    video = next(out.glob("*.mp4"))
    frames = _count_frames(video)
    if sig == signal.SIGKILL:
        # fragmented MP4: everything up to the last complete fragment (1 s = 30 frames) plays
        assert frames >= 30, f"{video}: {frames} frames after SIGKILL"
        return
    assert proc.returncode == 128 + sig, err
    assert len(recs) == len(lines) >= 100
    assert [r["frame_index"] for r in recs] == list(range(len(recs)))
    assert frames == len(recs), f"{video}: {frames} frames, JSONL {len(recs)} lines"
    assert "summary:" in err


# ------------------------------------------------------------------------------------------------
# tracking, and the bundled model end to end


def _det(boxes, labels, emb):
    n = len(boxes)
    return Detections(
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.full(n, 0.9, np.float32),
        labels=np.asarray(labels, np.int32),
        image_size=(480, 640),
        embeddings=np.asarray(emb, np.float32).reshape(n, -1),
    )


def test_tracker_keeps_ids_and_reidentifies_an_item_that_comes_back():
    rng = np.random.default_rng(0)
    ea, eb, ec = (rng.normal(size=16) for _ in range(3))
    t = Tracker(max_age=5)
    ids = []
    for f in range(10):  # two items moving right
        ids.append(t.update(_det([[10 + 5 * f, 10, 110 + 5 * f, 200], [300 + 5 * f, 20, 400 + 5 * f, 220]], [1, 8], [ea, eb]), f))
    assert all(list(i) == [1, 2] for i in ids)
    for f in range(10, 40):  # item A leaves; B stays
        assert list(t.update(_det([[350, 20, 450, 220]], [8], [eb + 0.01 * rng.normal(size=16)]), f)) == [2]
    # A comes back elsewhere, next to a new item C of the same category
    back = t.update(_det([[500, 250, 600, 450], [50, 250, 150, 450]], [1, 1], [ea + 0.05 * rng.normal(size=16), ec]), 40)
    assert back[0] == 1 and back[1] == 3 and t.reidentified == 1


def test_bundled_model_end_to_end_with_tracking(tmp_path):
    from df2infer.synth.video import make_video

    path, _ = make_video(tmp_path / "clip", frames=10, seed=1)  # garments in frames 1-8
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "df2infer",
            "video",
            str(path),
            "--max-frames",
            "6",
            "--track",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert [x["frame_index"] for x in recs] == list(range(6))
    items = [it for x in recs for it in x["items"]]
    assert items and all(isinstance(it["track_id"], int) for it in items)
    assert _count_frames(next(out.glob("*.mp4"))) == 6


def test_mask_blend_matches_the_float_formula():
    from df2infer.sinks.annotate import color, draw_masks

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    m = rng.random((10, 12)) > 0.5
    det = Detections(
        boxes=np.array([[5, 4, 17, 14]], np.float32),
        scores=np.ones(1, np.float32),
        labels=np.array([3], np.int32),
        image_size=(30, 40),
        masks=[m],
        mask_boxes=np.array([[5, 4, 17, 14]], np.int32),
    )
    out = draw_masks(img, det, alpha=0.45)
    ref = img.copy()
    reg = ref[4:14, 5:17]
    reg[m] = np.round(reg[m] * 0.55 + np.array(color(3), np.float32) * 0.45).astype(np.uint8)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert (out[4:14, 5:17][~m] == img[4:14, 5:17][~m]).all() and (out[:4] == img[:4]).all()


def test_hls_over_http(tmp_path, fake, clip):
    """An HLS playlist (PyAV's hls muxer) served by http.server: read as a network source."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import av

    hls = tmp_path / "hls"
    hls.mkdir()
    cap = cv2.VideoCapture(clip[0])
    out = av.open(str(hls / "index.m3u8"), "w", format="hls", options={"hls_time": "1", "hls_playlist_type": "vod"})
    s = out.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
    n = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        vf = av.VideoFrame.from_ndarray(f, format="bgr24")
        vf.pts = n
        n += 1
        for p in s.encode(vf):
            out.mux(p)
    for p in s.encode(None):
        out.mux(p)
    out.close()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(hls)))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/index.m3u8"
        assert parse_source(url).kind == "network"
        pipe = Pipeline([url], fake, policy=ReconnectPolicy(max_failures=1, open_timeout_s=5, read_timeout_s=5))
        got = [r.image.shape for r in pipe]
    finally:
        srv.shutdown()
        srv.server_close()
    st = pipe.sources[0].stats
    assert st.frames == n and got and got[0] == (180, 320, 3)  # every frame decoded; the newest ones processed


@pytest.mark.parametrize("threads", [1, 0])
def test_video_sink_encoder_threads(tmp_path, threads):
    """threads=1 (the default: the encoder runs in the caller's thread) and 0 (x264's own frame
    threads) both write every frame."""
    from df2infer.sinks.video import VideoSink

    rng = np.random.default_rng(threads)
    with VideoSink(tmp_path / "v.mp4", threads=threads) as v:
        for i in range(12):
            v.write_frame(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), i / 30)
    assert v.frames == 12 and _count_frames(tmp_path / "v.mp4") == 12


def test_video_sink_keeps_colours_and_odd_sizes(tmp_path):
    """Frames go to the encoder as I420 converted by OpenCV: the decoded file shows the written
    colours (BGR order kept, BT.601 as FFmpeg reads it back), odd sizes cropped to even."""
    from df2infer.sinks.video import VideoSink

    img = np.zeros((65, 81, 3), np.uint8)
    img[:, :40] = (200, 60, 30)  # blue-ish in BGR
    img[:, 40:] = (20, 180, 220)  # orange-ish
    with VideoSink(tmp_path / "c.mp4", crf=10) as v:
        for i in range(3):
            v.write_frame(img, i / 30)
    cap = cv2.VideoCapture(str(tmp_path / "c.mp4"))
    ok, back = cap.read()
    cap.release()
    assert ok and back.shape == (64, 80, 3)
    assert np.abs(back[8:56, 4:34].astype(int) - (200, 60, 30)).max() <= 6
    assert np.abs(back[8:56, 46:76].astype(int) - (20, 180, 220)).max() <= 6
