"""Camera credentials never reach an output (df2infer.credentials, docs/video.md "Credentials").

The redaction itself is checked against hand-written expected strings; the CLI is run against a
source that cannot connect (rtsp://, http://), one that refuses the password (a local HTTP camera
that checks basic authentication) and one that accepts it, with the password written in the URL and
through ${NAME}, with FFmpeg at its default level and at debug level (where it prints the URL and the
Authorization header itself): no byte of stdout, stderr, the JSONL, the output file names or the
files written holds the password, in any of its forms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import fake_model
import pytest
from test_video_stream import SYSTEM_PYTHON, Server, _free_port, _rtsp_available

from df2infer.credentials import (
    CredentialError,
    check_private_file,
    expand_env,
    has_literal_secret,
    redact,
    remember,
    secrets_in,
)
from df2infer.results import FrameInfo, PredictionFailure, record
from df2infer.stream import Pipeline, ReconnectPolicy, SourceError, parse_source
from df2infer.stream.sources import expand_sources

ROOT = Path(__file__).resolve().parent.parent

# A password with the characters that break naive URL parsing; its alphanumeric cores are searched
# for too, so a partial leak (a library splitting the URL at ':' '/' or '@') is caught as well.
PASSWORD = "Xylo9:Quartz/Melon@Rind%42"
CORES = ("Xylo9", "Quartz", "Melon", "Rind")
ENCODED = quote(PASSWORD, safe="")  # Xylo9%3AQuartz%2FMelon%40Rind%2542
BASIC_B64 = "Ym9iOlh5bG85OlF1YXJ0ei9NZWxvbkBSaW5kJTQy"  # `printf 'bob:Xylo9:Quartz/Melon@Rind%42' | base64`
FORMS = (PASSWORD, ENCODED, BASIC_B64, *CORES)


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> str:
    return str(fake_model.build(tmp_path_factory.mktemp("model") / "fake.onnx"))


# ------------------------------------------------------------------------------------------------
# redaction, by hand-written expectations


@pytest.mark.parametrize(
    "text, shown",
    [
        ("rtsp://admin:S3cretPw@cam/1", "rtsp://admin:***@cam/1"),
        ("http://bob:HunterTwo@cam:8080/mjpg", "http://bob:***@cam:8080/mjpg"),
        # unencoded @ : / ? # in the password: the userinfo runs to the last @
        ("rtsp://admin:p@ss@cam/1", "rtsp://admin:***@cam/1"),
        ("rtsp://admin:pa:ss/wo?rd#x@cam/1", "rtsp://admin:***@cam/1"),
        (f"rtsp://admin:{PASSWORD}@10.0.0.7:554/s", "rtsp://admin:***@10.0.0.7:554/s"),
        (f"rtsp://admin:{ENCODED}@10.0.0.7/s", "rtsp://admin:***@10.0.0.7/s"),
        # a userinfo without a password is usually a token: all of it
        ("https://ghp_tok3n@host/live.m3u8", "https://***@host/live.m3u8"),
        # secret-looking query values (and fragments), other values kept
        ("http://cam/v?user=me&password=hunter2&PWD=x1&res=720", "http://cam/v?user=me&password=***&PWD=***&res=720"),
        ("https://s3/x.ts?X-Amz-Credential=AKIA1&X-Amz-Signature=abcd&n=1", "https://s3/x.ts?X-Amz-Credential=***&X-Amz-Signature=***&n=1"),
        ("http://cam/live#access_token=abc123", "http://cam/live#access_token=***"),
        ("http://cam/v?api_key=k1&token=t2", "http://cam/v?api_key=***&token=***"),
        # GStreamer pipelines: URLs inside and rtspsrc's password property; x264enc's key-int-max is no key
        (
            "rtspsrc location=rtsp://u:pw12@h/s user-pw=secret1 ! x264enc key-int-max=15 ! appsink",
            "rtspsrc location=rtsp://u:***@h/s user-pw=*** ! x264enc key-int-max=15 ! appsink",
        ),
        # nothing to hide
        ("http://cam/path@x", "http://cam/path@x"),
        ("http://cam:8080/a?res=720", "http://cam:8080/a?res=720"),
        ("clips/a@b.mp4", "clips/a@b.mp4"),
        ("rtsp://admin:${CAM_PW}@cam/1", "rtsp://admin:***@cam/1"),
    ],
)
def test_redact(text, shown):
    assert redact(text) == shown


def test_secrets_in_lists_every_form_a_library_might_print():
    assert secrets_in(f"http://bob:{ENCODED}@cam/") == {ENCODED, PASSWORD, BASIC_B64}
    assert secrets_in("http://bob:HunterTwo@cam/") == {"HunterTwo", "Ym9iOkh1bnRlclR3bw=="}  # printf 'bob:HunterTwo' | base64
    assert secrets_in("rtsp://cam/1") == set()


def test_remembered_secret_is_redacted_anywhere():
    remember("rtsp://admin:Wombat4711@cam/1")
    assert redact("[rtsp @ 0x1] DESCRIBE failed for user admin with Wombat4711 (Basic YWRtaW46V29tYmF0NDcxMQ==)") == (
        "[rtsp @ 0x1] DESCRIBE failed for user admin with *** (Basic ***)"  # printf 'admin:Wombat4711' | base64
    )


def test_has_literal_secret():
    assert has_literal_secret("rtsp://admin:pw99@cam")
    assert not has_literal_secret("rtsp://admin:${CAM_PW}@cam")
    assert not has_literal_secret("rtsp://cam/1")


def test_expand_env(monkeypatch):
    monkeypatch.setenv("CAM_PW", "Zebra:77")
    monkeypatch.delenv("CAM_NOPE", raising=False)
    assert expand_env("rtsp://admin:${CAM_PW}@cam/1") == "rtsp://admin:Zebra:77@cam/1"
    assert expand_env("a $${CAM_PW} b") == "a ${CAM_PW} b"
    assert expand_env("no refs $HOME") == "no refs $HOME"
    with pytest.raises(CredentialError, match=r"CAM_NOPE is not set") as e:
        expand_env("rtsp://admin:${CAM_NOPE}@cam/${CAM_PW}")
    assert "Zebra" not in str(e.value)
    with pytest.raises(CredentialError, match="not a"):
        expand_env("rtsp://${CAM PW}@cam")


def test_streams_file_with_a_password_others_can_read_is_refused(tmp_path, monkeypatch):
    f = tmp_path / "cams.streams"
    f.write_text("# cameras\nrtsp://admin:Wombat4711@cam/1\n")
    f.chmod(0o644)
    with pytest.raises(SourceError, match="chmod 600") as e:
        expand_sources([str(f)])
    assert "Wombat4711" not in str(e.value) and "cams.streams" in str(e.value)
    f.chmod(0o600)
    assert expand_sources([str(f)]) == ["rtsp://admin:Wombat4711@cam/1"]
    # ${NAME} references only: nothing secret in the file, any mode
    f.write_text("rtsp://admin:${CAM_PW}@cam/1\n")
    f.chmod(0o644)
    check_private_file(f, f.read_text())
    monkeypatch.setenv("CAM_PW", "Wombat4711")
    spec = parse_source(expand_sources([str(f)])[0])
    assert spec.target == "rtsp://admin:Wombat4711@cam/1"  # only the capture gets the password
    assert spec.name == "rtsp://admin:***@cam/1"
    assert "Wombat4711" not in repr(spec)


def test_unset_variable_names_the_variable_not_the_rest(monkeypatch):
    monkeypatch.delenv("CAM_NOPE", raising=False)
    with pytest.raises(SourceError, match="CAM_NOPE") as e:
        parse_source("rtsp://admin:Wombat4711@cam/${CAM_NOPE}")
    assert "Wombat4711" not in str(e.value)


def test_frame_info_and_records_redact_whatever_name_they_are_given():
    info = FrameInfo(3, "rtsp://admin:Wombat4711@cam/1", index=7)
    assert info.display_name == "rtsp://admin:***@cam/1"
    fail = PredictionFailure(0, "rtsp://admin:Wombat4711@cam/1", OSError("cannot read rtsp://admin:Wombat4711@cam/1"))
    line = json.dumps(record(info, fail))
    assert "Wombat4711" not in line and json.loads(line)["source"] == "rtsp://admin:***@cam/1"
    assert json.loads(line)["error"] == "cannot read rtsp://admin:***@cam/1"


# ------------------------------------------------------------------------------------------------
# the CLI against real sources


def _assert_no_secret(forms, *texts: str, out: Path) -> None:
    for form in forms:
        for t in texts:
            assert form not in t, f"{form!r} printed:\n{t[-3000:]}"
        for p in out.rglob("*"):
            assert form not in p.name, f"{form!r} in the file name {p}"
            if p.is_file():
                assert form.encode() not in p.read_bytes(), f"{form!r} written in {p}"


def _video(args: list[str], out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "df2infer", "video", *args, "--out", str(out), "--no-progress", "--summary-every", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
        # the CLI's own FFmpeg level unless a test sets one (parse_source in this process quiets FFmpeg in os.environ)
        env={**{k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}, **(env or {})},
    )


FFMPEG_LEVELS = {"ffmpeg-default": {}, "ffmpeg-debug": {"OPENCV_FFMPEG_LOGLEVEL": "48"}}  # 48: AV_LOG_DEBUG, prints URLs


@pytest.mark.parametrize("level", sorted(FFMPEG_LEVELS))
@pytest.mark.parametrize("via_env", [False, True], ids=["in-url", "via-env"])
def test_failing_rtsp_and_http_sources_print_no_password(tmp_path, fake, via_env, level):
    """Nothing listens for the rtsp:// sources; the http:// camera refuses the password."""
    cam = Server("mjpeg", fps=15, args=("--auth", "bob:TheRightOne", "--refusals", str(tmp_path / "refusals"))).start().wait_ready()
    dead = _free_port()
    pw_raw, pw_enc = ("${CAM_RAW}", "${CAM_ENC}") if via_env else (PASSWORD, ENCODED)
    sources = [
        f"rtsp://admin:{pw_enc}@127.0.0.1:{dead}/live",
        f"rtsp://admin:{pw_raw}@127.0.0.1:{dead}/raw",  # as typed, unencoded
        f"http://bob:{pw_enc}@127.0.0.1:{cam.port}/",
    ]
    env = {"CAM_RAW": PASSWORD, "CAM_ENC": ENCODED, **FFMPEG_LEVELS[level]}
    out = tmp_path / "out"
    try:
        r = _video([*sources, "--model", fake, "--max-failures", "2", "--open-timeout", "1", "--backoff-max", "0.2"], out, env)
    finally:
        cam.stop()
    assert r.returncode == 1, r.stderr  # every source failed; none crashed the run
    assert (tmp_path / "refusals").read_text().count("401") >= 2  # the camera was reached and refused it
    _assert_no_secret(FORMS, r.stdout, r.stderr, out=out)
    # the sources are still named, redacted, in the errors and the summary
    assert r.stderr.count(f"rtsp://admin:***@127.0.0.1:{dead}/live: cannot open after 2 attempts") >= 2
    assert f"http://bob:***@127.0.0.1:{cam.port}/: cannot open" in r.stderr
    assert ("warning: a password on the command line" in r.stderr) != via_env


RTSP_MISSING = not _rtsp_available() and os.environ.get("CI") != "true"  # under CI a missing package fails the test
RTSP_HINT = "no GStreamer RTSP server: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,ugly}"
KINDS = ["http", pytest.param("rtsp", marks=pytest.mark.skipif(RTSP_MISSING, reason=RTSP_HINT))]


def _camera(kind: str, password: str) -> tuple[Server, str, str]:
    """A camera that requires `password`: the server, its URL with {pw} for the password, the output video's name."""
    if kind == "http":
        cam = Server("mjpeg", fps=15, args=("--auth", f"bob:{password}")).start().wait_ready()
        return cam, f"http://bob:{{pw}}@127.0.0.1:{cam.port}/", f"0_bob_127.0.0.1_{cam.port}.mp4"
    cam = Server("rtsp", fps=15, args=("--auth", f"admin:{password}")).start().wait_ready()
    return cam, f"rtsp://admin:{{pw}}@127.0.0.1:{cam.port}/live", "0_live.mp4"


@pytest.mark.parametrize("level", sorted(FFMPEG_LEVELS))
@pytest.mark.parametrize("via_env", [False, True], ids=["in-url", "via-env"])
@pytest.mark.parametrize("kind", KINDS)
def test_credentialed_camera_runs_and_prints_no_password(tmp_path, fake, kind, via_env, level):
    cam, url, video = _camera(kind, PASSWORD)
    out = tmp_path / "out"
    try:
        r = _video(
            [url.format(pw="${CAM_PW}" if via_env else ENCODED), "--model", fake, "--max-frames", "8"],
            out,
            {"CAM_PW": ENCODED, **FFMPEG_LEVELS[level]},
        )
    finally:
        cam.stop()
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert recs and {x["source"] for x in recs} == {url.format(pw="***")}  # the camera let it in
    assert sorted(p.name for p in out.iterdir()) == [video, "detections.jsonl"]
    _assert_no_secret(FORMS, r.stdout, r.stderr, out=out)
    if kind == "http" and level == "ffmpeg-debug":  # FFmpeg did print the request with its Authorization header: redacted
        assert "Authorization: Basic ***" in r.stdout + r.stderr


@pytest.mark.skipif(RTSP_MISSING, reason=RTSP_HINT)
def test_rtsp_camera_refusing_the_password_prints_none(tmp_path, fake):
    cam, url, _ = _camera("rtsp", "TheRightOne")
    out = tmp_path / "out"
    try:
        r = _video(
            [url.format(pw=ENCODED), "--model", fake, "--max-failures", "2", "--open-timeout", "2", "--backoff-max", "0.2"],
            out,
            FFMPEG_LEVELS["ffmpeg-default"],
        )
    finally:
        cam.stop()
    assert r.returncode == 1, r.stderr
    assert "method DESCRIBE failed: 401 (Unauthorized)" in r.stdout + r.stderr  # FFmpeg's error: the camera refused it
    assert f"{url.format(pw='***')}: cannot open after 2 attempts" in r.stderr
    _assert_no_secret(FORMS, r.stdout, r.stderr, out=out)


def test_python_api_shows_only_the_redacted_source(fake):
    cam = Server("mjpeg", fps=15, args=("--auth", f"bob:{PASSWORD}")).start().wait_ready()
    shown = f"http://bob:***@127.0.0.1:{cam.port}/"
    try:
        with Pipeline([f"http://bob:{ENCODED}@127.0.0.1:{cam.port}/"], fake, max_frames=3) as p:
            names = {r.info.display_name for r in p}
        summary = json.dumps(p.summary())
    finally:
        cam.stop()
    assert names == {shown} and shown in summary
    for form in FORMS:
        assert form not in summary


def test_python_api_failing_sources_log_and_report_no_password(fake, caplog, tmp_path):
    """No CLI filter here: the logs, errors and summary are redacted where they are made."""
    cam = Server("mjpeg", fps=15, args=("--auth", "bob:TheRightOne")).start().wait_ready()
    dead = _free_port()
    policy = ReconnectPolicy(open_timeout_s=1, base_delay_s=0.05, max_delay_s=0.1, max_failures=2)
    sources = [f"rtsp://admin:{PASSWORD}@127.0.0.1:{dead}/raw", f"http://bob:{ENCODED}@127.0.0.1:{cam.port}/", str(tmp_path / "gone.mp4")]
    try:
        with caplog.at_level("INFO"):
            p = Pipeline(sources, fake, policy=policy)
            assert list(p) == []
    finally:
        cam.stop()
    summary = json.dumps(p.summary())
    assert p.summary()["failed_sources"][:2] == [f"rtsp://admin:***@127.0.0.1:{dead}/raw", f"http://bob:***@127.0.0.1:{cam.port}/"]
    assert "cannot open after 2 attempts" in caplog.text
    for form in FORMS:
        assert form not in caplog.text and form not in summary


# ------------------------------------------------------------------------------------------------
# native output that names the URL on its own: the CLI's filter on stdout and stderr


def _gstreamer_ok() -> bool:
    return (
        os.path.exists(SYSTEM_PYTHON)
        and subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('Gst', '1.0')"], capture_output=True).returncode == 0
    )


# GStreamer runs in Debian's python3 (python3-gi); its stdout and stderr are the descriptors of the
# process that runs it, so a filter there covers it as it covers a library loaded in-process.
GST_SCRIPT = """
import sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
p = Gst.parse_launch(f"rtspsrc location={sys.argv[1]} timeout=500000 ! fakesink")
p.set_state(Gst.State.PLAYING)
p.get_bus().timed_pop_filtered(3 * Gst.SECOND, Gst.MessageType.ERROR)
p.set_state(Gst.State.NULL)
"""

FILTERED = """
import subprocess, sys
from df2infer.credentials import RedactingOutput, remember
remember(sys.argv[2])
with RedactingOutput():
    subprocess.run([sys.argv[1], "-c", sys.argv[3], sys.argv[2]])
"""


@pytest.mark.skipif(not _gstreamer_ok() and os.environ.get("CI") != "true", reason="needs Debian's python3-gi (make setup installs it)")
def test_gstreamer_debug_output_is_redacted():
    """GStreamer with GST_DEBUG prints rtspsrc's URL itself (checked unfiltered, so the test is not vacuous)."""
    url = f"rtsp://admin:{ENCODED}@127.0.0.1:{_free_port()}/live"
    env = {**os.environ, "GST_DEBUG": "rtspsrc:5"}
    raw = subprocess.run([SYSTEM_PYTHON, "-c", GST_SCRIPT, url], capture_output=True, text=True, timeout=60, env=env)
    assert ENCODED in raw.stdout + raw.stderr
    cmd = [sys.executable, "-c", FILTERED, SYSTEM_PYTHON, url, GST_SCRIPT]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert "rtsp://admin:***@127.0.0.1" in r.stdout + r.stderr
    for form in FORMS:
        assert form not in r.stdout + r.stderr


def test_redacting_output_covers_writes_below_python(tmp_path):
    """A write(2) from C (libc through ctypes, as a native library does) passes the filter too."""
    code = (
        "import ctypes, os, sys\n"
        "from df2infer.credentials import RedactingOutput, remember\n"
        "remember('rtsp://admin:Wombat4711@cam')\n"
        "libc = ctypes.CDLL(None)\n"
        "with RedactingOutput():\n"
        "    msg = b'native: rtsp://admin:Wombat4711@cam failed (Wombat4711)\\n'\n"
        "    libc.write(2, msg, len(msg)); libc.write(1, msg, len(msg))\n"
        "    print('python: Wombat4711', file=sys.stderr); print('tail without newline Wombat4711', end='')\n"
        "print('after')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "Wombat4711" not in r.stdout + r.stderr
    assert r.stderr.count("native: rtsp://admin:***@cam failed (***)") == 1 and "python: ***" in r.stderr
    assert r.stdout == "native: rtsp://admin:***@cam failed (***)\ntail without newline ***after\n"


def test_library_quiets_ffmpeg_for_network_sources(monkeypatch):
    monkeypatch.delenv("OPENCV_FFMPEG_LOGLEVEL", raising=False)
    parse_source("rtsp://cam/1")
    assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "-8"  # AV_LOG_QUIET: read at the first FFmpeg capture
