"""The GStreamer source (df2infer/stream/gst.py) against Debian's GStreamer: strides of odd widths, a file
through filesrc ! decodebin, EOS, a pipeline that fails to negotiate, the Jetson pipeline strings with
videotestsrc standing in for the camera, RTSP through the hardware-decode path (the software fallback
this registry gives), a clean stop, redaction. The RTSP stall/kill/restart is in test_video_stream.py.

Needs PyGObject in the venv (`make setup` installs the `gstreamer` extra) and Debian's gir1.2-gstreamer-1.0,
gir1.2-gst-plugins-base-1.0, gstreamer1.0-plugins-{base,good} and gstreamer1.0-libav (`make system-deps`).
Under CI=true their absence fails these tests; elsewhere they are skipped, naming what to install."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import fake_model
import numpy as np
import pytest
from system_deps import require

from df2infer.stream import ReconnectPolicy, SourceError, parse_source
from df2infer.stream.parse import open_sources

HERE = Path(__file__).resolve().parent
SYSTEM_PACKAGES = "gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav"


def _need(ok: bool, what: str) -> None:
    """Skip naming what to install; under CI (make setup installs it all) fail (tests/system_deps.py)."""
    require(ok, what, f"pip install '.[gstreamer]' and apt-get install {SYSTEM_PACKAGES} (make setup does)")


@pytest.fixture(scope="module")
def gst():
    from df2infer.stream import gst as g

    _need(g.gst_available(), "GStreamer's Python bindings (PyGObject) are not importable")
    for el in ("appsink", "videotestsrc", "videoconvert", "decodebin", "pngdec", "imagefreeze", "avdec_h264", "rtspsrc"):
        _need(g.has_element(el), f"the GStreamer element {el} is missing")
    return g


def _read_all(src, timeout: float = 20.0, consumer_delay: float = 0.0, limit: int | None = None) -> list:
    """Start a source and take its frames until it is done (or `limit` frames)."""
    src.start()
    frames = []
    end = time.monotonic() + timeout
    while not src.done and time.monotonic() < end and (limit is None or len(frames) < limit):
        f = src.get()
        if f is None:
            time.sleep(0.005)
            continue
        frames.append(f)
        time.sleep(consumer_delay)
    src.stop()
    src.join(10)
    assert not src._thread.is_alive(), "the reader thread is still running"
    return frames


def _source(text: str, **kw):
    srcs, errs = open_sources([text], **kw)
    assert not errs, errs
    return srcs[0]


# ------------------------------------------------------------------------------------------------
# strides, formats


@pytest.mark.parametrize("size", [(241, 321), (17, 33), (8, 16)])  # odd widths: BGR rows of 3w bytes padded to 4
def test_bgr_frames_equal_a_lossless_png_whatever_the_stride(gst, tmp_path, size):
    h, w = size
    want = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    png = tmp_path / "x.png"
    assert cv2.imwrite(str(png), want)
    src = _source(f"filesrc location={png} ! pngdec ! imagefreeze num-buffers=3 ! videoconvert ! appsink")
    frames = _read_all(src)
    assert src.state == "finished" and len(frames) == 3, (src.state, src.error)
    assert src.caps is not None and "format=(string)BGR" in src.caps
    for f in frames:
        assert f.image.shape == (h, w, 3) and f.image.flags.c_contiguous and f.image.flags.writeable
        assert np.array_equal(f.image, want)


def test_nv12_planes_of_an_odd_sized_frame(gst):
    """Solid red (R=255, G=B=0) as BT.601 limited-range NV12: Y = 16 + 219 * 0.299 = 81.5, Cb = 128 - 112 *
    0.299 / 0.886 = 90.2, Cr = 128 + 112 = 240, the same in every pixel, the last column and row included."""
    text = (
        "videotestsrc num-buffers=2 pattern=solid-color foreground-color=0xffff0000 ! "
        "video/x-raw,format=NV12,width=33,height=17,colorimetry=bt601 ! appsink"
    )
    src = gst.GstSource(gst.parse_gst_source(text, pixel_format="NV12"), 0)
    frames = _read_all(src)
    assert len(frames) == 2, src.error
    img = frames[0].image
    assert isinstance(img, gst.Nv12Image) and img.y.shape == (17, 33) and img.uv.shape == (9, 17, 2)
    assert img.matrix == "bt601" and not img.full_range
    assert abs(int(img.y.min()) - 81.5) <= 1.5 and img.y.min() == img.y.max()
    assert abs(int(img.uv[..., 0].min()) - 90.2) <= 1.5 and img.uv[..., 0].min() == img.uv[..., 0].max()
    assert abs(int(img.uv[..., 1].min()) - 240) <= 1 and img.uv[..., 1].min() == img.uv[..., 1].max()


def test_buffer_shorter_than_its_layout_is_refused(gst):
    with pytest.raises(SourceError, match="need"):
        gst._plane(b"\0" * 100, 0, 12, 10, 9)  # 10 rows 12 apart need 117 bytes


# ------------------------------------------------------------------------------------------------
# files, EOS, negotiation


def _h264_file(path: Path, n: int, size=(160, 96)) -> Path:
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n):
            img = np.full((size[1], size[0], 3), (i * 9) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def test_file_through_decodebin_every_frame_with_backpressure(gst, tmp_path):
    n = 40
    path = _h264_file(tmp_path / "clip.mp4", n)
    cap = cv2.VideoCapture(str(path))  # the reference decoder: OpenCV's FFmpeg
    cv_means = []
    while (r := cap.read())[0]:
        cv_means.append(float(r[1].mean()))
    cap.release()
    assert len(cv_means) == n
    src = _source(f"filesrc location={path} ! decodebin ! videoconvert ! appsink", queue_size=2)
    assert not src.live
    frames = _read_all(src, consumer_delay=0.01)  # a slow consumer: the reader waits, nothing is lost
    assert src.state == "finished" and [f.info.index for f in frames] == list(range(n))
    assert src.stats.dropped == 0 and src.stats.frames == n
    pts = [f.info.pts for f in frames]
    assert pts[0] == pytest.approx(0.0) and pts[-1] == pytest.approx((n - 1) / 25, abs=1e-3)
    assert frames[0].info.fps == pytest.approx(25.0)
    # frame i is OpenCV's frame i (neighbouring frames differ by 9 grey levels; the decoders' YUV->BGR by ~1)
    assert max(abs(float(f.image.mean()) - m) for f, m in zip(frames, cv_means)) < 2.5


def test_vid_stride_applies_to_a_gstreamer_source(gst):
    from df2infer.stream.sources import FrameGate

    src = _source("videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! videoconvert ! appsink")
    src.gate = FrameGate(vid_stride=3)  # as Pipeline(vid_stride=3) sets it
    frames = _read_all(src)
    # 10 buffers, every third kept: indexes 0, 3, 6, 9 by hand; the other 6 counted as skipped
    assert [f.info.index for f in frames] == [0, 3, 6, 9]
    assert src.stats.skipped == 6


def test_eos_ends_a_pipeline_after_its_last_buffer(gst):
    src = _source("videotestsrc num-buffers=7 ! video/x-raw,width=64,height=48 ! videoconvert ! appsink")
    frames = _read_all(src)
    assert len(frames) == 7 and src.state == "finished" and src.error is None


def test_a_pipeline_that_cannot_negotiate_fails_at_start_naming_element_and_reason(gst):
    # I420 into an appsink that takes BGR, with no converter between them; live, so a retry would show
    src = _source("videotestsrc is-live=true ! video/x-raw,format=I420,width=32,height=24 ! appsink")
    assert src.live
    frames = _read_all(src)
    assert frames == [] and src.state == "failed"
    assert "videotestsrc" in src.error and "not-negotiated" in src.error and "caps" in src.error, src.error
    assert src.pipeline is None  # set to NULL and dropped
    assert src.stats.reconnects == 0 and src.stats.failures == 0  # no retry: negotiation cannot succeed later


def test_a_file_pipeline_is_not_paced_by_its_clock(gst):
    """Frames of a non-live pipeline come as fast as they are taken: 5 frames at 0.5 fps would take 8 s at the
    clock's pace (an appsink's default sync=true), here a fraction of a second (bound: half the paced time)."""
    src = _source("videotestsrc num-buffers=5 ! video/x-raw,width=32,height=24,framerate=1/2 ! videoconvert ! appsink")
    t0 = time.monotonic()
    frames = _read_all(src)
    assert len(frames) == 5 and time.monotonic() - t0 < 4.0


def test_unknown_element_and_bad_syntax_fail_at_parse(gst):
    with pytest.raises(SourceError, match="nosuchelement"):
        parse_source("videotestsrc ! nosuchelement ! appsink")
    with pytest.raises(SourceError, match="2 appsinks"):
        parse_source("videotestsrc ! tee name=t ! queue ! appsink t. ! queue ! appsink")


def test_non_bgr_caps_on_the_users_appsink_are_named(gst):
    src = _source("videotestsrc num-buffers=2 ! video/x-raw,width=32,height=24 ! videoconvert ! appsink caps=video/x-raw,format=RGB")
    _read_all(src)
    assert src.state == "failed" and "format=(string)RGB" in src.error and "expected format BGR or NV12" in src.error


# ------------------------------------------------------------------------------------------------
# live: newest frame, clean stop


def test_live_pipeline_keeps_the_newest_frame_and_stops_cleanly(gst):
    src = _source("videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=60/1 ! videoconvert ! appsink")
    assert src.live
    Gst = gst.import_gst()
    src.start()
    t0 = time.monotonic()
    while src.pipeline is None and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    pipe = src.pipeline
    got = []
    while len(got) < 8 and time.monotonic() - t0 < 10:
        f = src.get()
        if f is not None:
            got.append(f)
            time.sleep(0.1)  # 10 fps consumer of a 60 fps source
        else:
            time.sleep(0.005)
    t_stop = time.monotonic()
    src.stop()
    src.join(5)
    assert not src._thread.is_alive() and time.monotonic() - t_stop < 3.0 and src.state == "stopped"  # polls every 50 ms
    assert pipe.get_state(0)[1] == Gst.State.NULL
    st = src.stats
    assert len(got) == 8 and st.dropped >= 20  # ~5 of every 6
    assert st.frames == st.delivered + st.dropped + src.pending()
    assert [f.info.live for f in got] == [True] * 8 and all(f.info.pts is None for f in got)
    assert not [t for t in threading.enumerate() if t.name.startswith("df2infer-source")]


# ------------------------------------------------------------------------------------------------
# the Jetson pipelines: NVIDIA's element names and caps, run with software stand-ins


def test_csi_pipeline_names_nvidias_elements_and_runs_with_a_stand_in(gst):
    # Jetson Linux Developer Guide, "Accelerated GStreamer": nvarguscamerasrc sensor-id=N !
    # 'video/x-raw(memory:NVMM),width=...,height=...,framerate=30/1,format=NV12' ! nvvidconv flip-method=M !
    # 'video/x-raw,format=BGRx' (nvvidconv has no BGR output; videoconvert makes BGR).
    p = gst.csi_pipeline(1, 1280, 720, 60, flip=2)
    parts = [x.strip() for x in p.split("!")]
    assert parts[:4] == [
        "nvarguscamerasrc sensor-id=1",
        "video/x-raw(memory:NVMM),width=1280,height=720,framerate=60/1,format=NV12",
        "nvvidconv flip-method=2",
        "video/x-raw,format=BGRx",
    ]
    assert parts[4:6] == ["videoconvert", "video/x-raw,format=BGR"] and parts[6].startswith("appsink")
    assert gst.csi_pipeline(0, pixel_format="NV12").split(" ! ")[3] == "video/x-raw,format=NV12"
    # stand-ins: videotestsrc for the camera, system memory for NVMM, videoconvert for nvvidconv
    stand_in = (
        gst.csi_pipeline(0, 96, 64, 30)
        .replace("nvarguscamerasrc sensor-id=0", "videotestsrc is-live=true")
        .replace("(memory:NVMM)", "")
        .replace("nvvidconv flip-method=0", "videoconvert")
    )
    src = _source(stand_in)
    frames = _read_all(src, limit=5)
    assert len(frames) == 5 and frames[0].image.shape == (64, 96, 3) and src.live
    if not gst.has_element("nvarguscamerasrc"):
        with pytest.raises(SourceError, match="nvarguscamerasrc"):
            parse_source("csi://0")


def test_v4l2_pipeline_and_sources(gst):
    p = gst.v4l2_pipeline("/dev/video2")
    assert p.startswith("v4l2src device=/dev/video2 ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink")
    for text in ("v4l2:///dev/video2", "/dev/video2"):
        spec = parse_source(text)
        assert spec.kind == "gstreamer" and spec.live and spec.target.description == p
    src = _source(p.replace("v4l2src device=/dev/video2", "videotestsrc is-live=true ! video/x-raw,width=40,height=30,format=YUY2"))
    frames = _read_all(src, limit=3)
    assert len(frames) == 3 and frames[0].image.shape == (30, 40, 3)


def test_hardware_elements_chosen_when_the_registry_has_them(gst, monkeypatch):
    real = gst.has_element
    monkeypatch.setattr(gst, "has_element", lambda name: name in ("nvv4l2decoder", "nvvidconv") or real(name))
    plan = gst.rtsp_plan("rtsp://cam/1", hardware=True)
    want = " ! h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
    assert want in plan.description
    assert plan.choices == ["hardware decoder nvv4l2decoder"]
    nv12 = gst.rtsp_plan("rtsp://cam/1", hardware=True, pixel_format="NV12").description
    assert "nvv4l2decoder ! nvvidconv ! video/x-raw,format=NV12 ! appsink" in nv12
    soft = gst.rtsp_plan("rtsp://cam/1", hardware=False).description
    assert "nvv4l2decoder" not in soft and "avdec_h264 ! videoconvert" in soft


# ------------------------------------------------------------------------------------------------
# RTSP through the hardware-decode path


def _rtsp_server(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["/usr/bin/python3", str(HERE / "stream_servers.py"), "rtsp", str(port), "--duration", "40"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_rtsp_hw_decode_falls_back_to_the_software_decoder_the_registry_has(gst, caplog):
    import socket

    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    py = "/usr/bin/python3"
    server_ok = os.path.exists(py) and subprocess.run([py, "-c", check], capture_output=True).returncode == 0
    _need(server_ok, "the RTSP test server needs the system python3 with python3-gi and gir1.2-gst-rtsp-server-1.0")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"rtsp://viewer:s3cret-pw@127.0.0.1:{port}/live"  # the test server ignores the credentials
    hw = gst.has_element("nvv4l2decoder")
    spec = parse_source(url, hw_decode=True)
    assert spec.kind == "gstreamer" and spec.live
    assert ("nvv4l2decoder" in spec.target.description) == hw
    if not hw:  # this registry: the software decoder, and the log says so
        assert " ! avdec_h264 ! " in spec.target.description
        assert spec.target.choices == ["nvv4l2decoder not in the GStreamer registry: software decoder avdec_h264"]
    assert "s3cret" not in spec.target.description  # the URL is a property, not part of the description
    assert parse_source(url).kind == "network"  # without --hw-decode OpenCV reads it
    srv = _rtsp_server(port)
    try:
        caplog.set_level(logging.INFO, logger="df2infer.stream")
        src = _source(url, hw_decode=True, policy=ReconnectPolicy(open_timeout_s=5, read_timeout_s=2, base_delay_s=0.2, max_failures=30))
        frames = _read_all(src, timeout=30, limit=10)
    finally:
        srv.kill()
        srv.wait(5)
    assert len(frames) == 10 and frames[0].image.shape == (240, 320, 3), (src.state, src.error)
    assert "rtph264depay ! h264parse" in caplog.text and "s3cret" not in caplog.text


def test_log_safe_hides_credentials(gst):
    """The source logs through the package's redaction (df2infer.credentials.redact)."""
    assert gst.log_safe("rtsp://admin:pa55word@10.0.0.2:554/s1") == "rtsp://admin:***@10.0.0.2:554/s1"
    assert gst.log_safe("videotestsrc ! appsink") == "videotestsrc ! appsink"


# ------------------------------------------------------------------------------------------------
# the CLI with the package's own dependencies (pip OpenCV, no GStreamer in it)


def test_cli_video_reads_a_gstreamer_pipeline(gst, tmp_path):
    fake = str(fake_model.build(tmp_path / "fake.onnx"))
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "df2infer", "video", "videotestsrc num-buffers=90 ! videoconvert ! appsink", "--model", fake]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert [rec["frame_index"] for rec in lines] == list(range(90))  # not live: every frame, none dropped


def test_info_lists_the_hardware_elements_the_registry_holds(gst, tmp_path):
    fake = str(fake_model.build(tmp_path / "fake.onnx"))
    r = subprocess.run([sys.executable, "-m", "df2infer", "info", fake, "--json"], capture_output=True, text=True, timeout=120)
    g = json.loads(r.stdout)["gstreamer"]
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    assert g["version"] == ".".join(str(v) for v in Gst.version()[:3])
    names = ("nvarguscamerasrc", "nvv4l2camerasrc", "nvv4l2decoder", "nvvidconv")
    want = {name: Gst.ElementFactory.find(name) is not None for name in names}
    assert {k: g["hardware_elements"][k] for k in want} == want
    text = subprocess.run([sys.executable, "-m", "df2infer", "info", fake], capture_output=True, text=True, timeout=120).stdout
    assert f"GStreamer {g['version']}: NVIDIA elements found: " in text


def test_a_cpp_exception_after_gstreamer_is_still_an_exception(gst, tmp_path):
    """numpy, then GStreamer (which links libunwind), then ONNX Runtime refusing a bad file: the error must be
    a Python exception, not an abort of the process (it was, before import_gst pinned libgcc_s's unwinder)."""
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    code = (
        "import numpy\n"
        "from df2infer.stream.gst import import_gst\n"
        "import_gst()\n"
        "import onnxruntime as ort\n"
        "try:\n"
        f"    ort.InferenceSession({str(bad)!r}, providers=['CPUExecutionProvider'])\n"
        "except Exception as e:\n"
        "    print('caught', type(e).__name__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("caught "), (r.returncode, r.stdout, r.stderr[-2000:])
