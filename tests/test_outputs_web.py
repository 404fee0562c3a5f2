"""The live page (df2infer.sinks.web) in a real headless browser (Debian's chromium, run as root with the
flags that needs), while a real pipeline runs: the page loads with the right token, the picture changes
between two screenshots, the figures update without a reload, a wrong token is refused. Under CI=true a
missing chromium fails; elsewhere the test skips, saying what to install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import cv2
import fake_model
import numpy as np
import pytest
import system_deps

from df2infer.sinks.web import WebSink
from df2infer.stream import Pipeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "t0k-" + os.urandom(6).hex()


def _chromium(tmp_path, name: str, url: str, *args: str) -> subprocess.CompletedProcess:
    system_deps.require(CHROMIUM is not None, "Debian's chromium (headless)", "sudo apt-get install chromium (make setup installs it)")
    assert CHROMIUM is not None
    profile = tmp_path / f"profile-{name}"  # a fresh profile each time: no cookie carried over
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=900,700", "--virtual-time-budget=4000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.fixture
def live_page(tmp_path):
    """A pipeline looping over a synthetic clip (garments moving), its results written to a WebSink with a token."""
    from df2infer.synth.video import make_video

    clip, _ = make_video(tmp_path / "clip", frames=60, size=(320, 180))
    model = str(fake_model.build(tmp_path / "fake.onnx"))
    pipe = Pipeline([str(clip)], model, loop=True)
    web = WebSink(0, "127.0.0.1", token=TOKEN, pipeline=pipe)
    stop = threading.Event()

    def run():
        with pipe:
            for r in pipe:
                web.write(r)
                time.sleep(0.02)  # about real time: the picture keeps changing for the whole test
                if stop.is_set():
                    pipe.stop()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    end = time.monotonic() + 30
    while not web.views and time.monotonic() < end:
        time.sleep(0.1)
    try:
        yield web
    finally:
        stop.set()
        t.join(20)
        web.close()


def test_page_in_headless_chromium(tmp_path, live_page):
    web = live_page
    base = f"http://127.0.0.1:{web.port}/"
    # a wrong token is refused (the browser shows the 401 text, no picture)
    wrong = _chromium(tmp_path, "wrong", base + "?token=nope", "--dump-dom")
    assert "401: wrong or missing token" in wrong.stdout and "<img" not in wrong.stdout
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "frame/0.jpg", timeout=10)
    assert e.value.code == 401
    # the page loads with the token; its figures were filled in by several updates of one page load
    dom = _chromium(tmp_path, "dom", base + f"?token={TOKEN}", "--dump-dom").stdout
    assert "df2infer live" in dom
    updates = int(re.search(r'data-updates="(\d+)"', dom).group(1))
    assert updates >= 2  # the figures updated without a reload
    frames_1 = int(re.search(r'class="frames">(\d+)<', dom).group(1))
    assert re.search(r"<td>inference</td><td>[\d.]+</td>", dom)
    # two screenshots a second apart: the picture differs
    shots = []
    for k in range(2):
        out = tmp_path / f"shot{k}.png"
        _chromium(tmp_path, f"shot{k}", base + f"?token={TOKEN}", f"--screenshot={out}")
        shots.append(cv2.imread(str(out)))
        time.sleep(1.0)
    assert all(s is not None for s in shots)
    # the picture sits under the title: 320x180 at (16+, 70+); compare that region
    a, b = (s[70:270, 16:360].astype(int) for s in shots)
    assert a.std() > 10  # a picture is there, not the page's plain background
    changed = (np.abs(a - b).max(axis=2) > 30).mean()
    assert changed > 0.01, f"only {changed:.2%} of the picture's pixels changed"  # the garments moved
    dom2 = _chromium(tmp_path, "dom2", base + f"?token={TOKEN}", "--dump-dom").stdout
    frames_2 = int(re.search(r'class="frames">(\d+)<', dom2).group(1))
    assert frames_2 > frames_1  # the figures move with the loop
    if os.environ.get("DF2INFER_DOCS_SCREENSHOT"):  # refresh the picture in docs/ (see docs/video.md)
        shutil.copy(tmp_path / "shot1.png", os.environ["DF2INFER_DOCS_SCREENSHOT"])


def test_binding_elsewhere_needs_a_token():
    with pytest.raises(ValueError, match="needs a token"):
        WebSink(0, "0.0.0.0")


def test_page_over_https_with_a_token(tmp_path):
    """--serve-cert: the page answers over TLS (verified against the test's own CA), with the token only."""
    import ssl

    from tls_cert import self_signed

    cert, key = self_signed(tmp_path)
    web = WebSink(0, "127.0.0.1", token=TOKEN, certfile=str(cert), keyfile=str(key))
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        body = urllib.request.urlopen(f"https://127.0.0.1:{web.port}/stats.json?token={TOKEN}", context=ctx, timeout=10).read()
        assert b'"sources"' in body
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"https://127.0.0.1:{web.port}/stats.json", context=ctx, timeout=10)
        assert e.value.code == 401
        with pytest.raises(OSError):  # plain HTTP to the TLS port gets no page (refused handshake)
            urllib.request.urlopen(f"http://127.0.0.1:{web.port}/stats.json?token={TOKEN}", timeout=10)
    finally:
        web.close()
