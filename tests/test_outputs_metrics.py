"""The Prometheus endpoint (df2infer.sinks.metrics), scraped over HTTP while a real pipeline runs and parsed
with prometheus_client's own text parser; the expected counts come from the clip's frame count and the
pipeline's own batch counter, not from the metrics code."""

from __future__ import annotations

import time
import urllib.request

import cv2
import fake_model
import pytest

pytest.importorskip("prometheus_client", reason="pip install prometheus-client (make setup installs it)")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from df2infer.sinks.metrics import MetricsSink  # noqa: E402
from df2infer.stream import Pipeline  # noqa: E402


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _other_address() -> str | None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet sent: picks the outgoing interface's address
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_metrics_scraped_during_and_after_a_run(tmp_path):
    from df2infer.synth.video import make_video

    clip, _ = make_video(tmp_path, frames=24, size=(160, 96))
    cap = cv2.VideoCapture(str(clip))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    model = str(fake_model.build(tmp_path / "fake.onnx"))
    pipe = Pipeline([str(clip)], model, batch=3)
    name = pipe.sources[0].name
    src = (("source", name),)
    metrics = MetricsSink(0, pipeline=pipe, skipped=lambda: {"jsonl": 3})
    mid = None
    with pipe, metrics:
        for i, r in enumerate(pipe):
            metrics.write(r)
            if i == 9:
                mid = _scrape(metrics.port)
                other = _other_address()
                if other is not None:  # bound to 127.0.0.1 only: this host's other address refuses
                    with pytest.raises(OSError):
                        urllib.request.urlopen(f"http://{other}:{metrics.port}/metrics", timeout=3)
        end = _scrape(metrics.port)
        batches = pipe.batches
    assert mid is not None
    assert mid[("df2infer_frames_total", src)] == 10
    assert mid[("df2infer_source_up", src)] == 1.0  # reading
    assert end[("df2infer_frames_total", src)] == n
    assert end[("df2infer_source_up", src)] == 0.0  # finished
    assert end[("df2infer_dropped_frames_total", src)] == 0 and end[("df2infer_reconnects_total", src)] == 0
    assert end[("df2infer_stage_seconds_count", (("stage", "decode"),))] == n  # every frame decoded once
    assert end[("df2infer_stage_seconds_count", (("stage", "inference"),))] == batches
    assert end[("df2infer_stage_seconds_count", (("stage", "sink"),))] >= n - 1  # the last one lands after the loop body
    assert end[("df2infer_frame_age_seconds_count", src)] == n
    assert end[("df2infer_output_skipped_frames_total", (("output", "jsonl"),))] == 3
    assert end[("df2infer_fps", ())] > 0


def test_a_camera_password_never_reaches_the_metrics(tmp_path):
    """A source URL with a password (a camera that is down: the source keeps reconnecting): its label is the
    redacted name and the password is in no byte of the scrape; the source is reported down."""
    import socket

    from df2infer.stream import ReconnectPolicy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    url = f"rtsp://admin:Sup3r-Secret-9@127.0.0.1:{port}/stream1"
    model = str(fake_model.build(tmp_path / "fake.onnx"))
    policy = ReconnectPolicy(open_timeout_s=0.5, read_timeout_s=0.5, max_delay_s=0.5, max_failures=1000)
    pipe = Pipeline([url], model, policy=policy)
    metrics = MetricsSink(0, pipeline=pipe)
    with pipe, metrics:
        pipe.start()
        time.sleep(1.5)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=10).read().decode()
    assert "Sup3r-Secret-9" not in text
    values = {(s.name, tuple(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    label = (("source", f"rtsp://admin:***@127.0.0.1:{port}/stream1"),)
    assert values[("df2infer_source_up", label)] == 0.0
