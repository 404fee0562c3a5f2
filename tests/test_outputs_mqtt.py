"""Events to a real MQTT broker (Debian's mosquitto, started here on a free loopback port with persistence in
a temporary folder): the broker is SIGKILLed mid-run and restarted, and a persistent-session subscriber
gets every event id (duplicates counted, none missing). Under CI=true a missing mosquitto fails; elsewhere
the test skips, saying what to install (`make setup` installs it as root with apt)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import system_deps

from df2infer.results import Detections, FrameInfo, FrameResult
from df2infer.sinks.events import EventBuilder
from df2infer.sinks.mqtt import MqttSink, MqttTarget

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def _need_mosquitto() -> str:
    system_deps.require(MOSQUITTO is not None, "Debian's mosquitto broker", "sudo apt-get install mosquitto (make setup installs it)")
    pytest.importorskip("paho.mqtt", reason="pip install paho-mqtt (make setup installs it)")
    assert MOSQUITTO is not None
    return MOSQUITTO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.conf = folder / "mosquitto.conf"
        (folder / "data").mkdir(exist_ok=True)
        # autosave after every change: a SIGKILL loses no session or queued message
        self.conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {folder / 'data'}/\n"
            f"autosave_interval 1\nautosave_on_changes true\nuser {getpass.getuser()}\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([_need_mosquitto(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


class Subscriber:
    """A persistent session (clean_session=False, QoS 1) that records every event id it receives."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as mqtt

        self.ids: list[str] = []
        self.events: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=False)
        c.reconnect_delay_set(min_delay=1, max_delay=1)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        e = json.loads(msg.payload)
        with self.lock:
            self.ids.append(e["id"])
            self.events[e["id"]] = {**e, "topic": msg.topic}

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _frame(i: int, tracks: list[tuple[int, int]], fps: float = 10.0) -> FrameResult:
    """Frame i of a file source at `fps` with the given (track id, category id) items."""
    n = len(tracks)
    det = Detections(
        boxes=np.tile(np.array([[1, 2, 30, 40]], np.float32), (n, 1)),
        scores=np.full(n, 0.9, np.float32),
        labels=np.array([c for _, c in tracks], np.int32),
        image_size=(48, 64),
        track_ids=np.array([t for t, _ in tracks], np.int64),
    )
    return FrameResult(FrameInfo(source_id=0, display_name="cam", index=i, fps=fps), det, None)


def _script(i: int) -> list[tuple[int, int]]:
    """Track 1 (short sleeve top, category 1) in frames 0..59, track 2 (trousers, 8) in 30..149, track 3 (skirt, 9) in 100..149."""
    return [(t, c) for t, c, a, b in [(1, 1, 0, 59), (2, 8, 30, 149), (3, 9, 100, 149)] if a <= i <= b]


def test_event_builder_appear_leave_dwell():
    """Appear on the first frame of each track; track 1 leaves 30 frames after its last one (frame 89) with a
    dwell of (59 - 0) / 10 fps = 5.9 s; the others leave at the end. Ids run 1..N without gaps."""
    b = EventBuilder(leave_after=30, run_id="r")
    events = [e for i in range(150) for e in b.events(_frame(i, _script(i)))] + b.end()
    kinds = [(e["type"], e.get("track_id"), e["frame_index"]) for e in events if e["type"] != "frame"]
    assert kinds == [("appear", 1, 0), ("appear", 2, 30), ("leave", 1, 89), ("appear", 3, 100), ("leave", 2, 149), ("leave", 3, 149)]
    leave1 = next(e for e in events if e["type"] == "leave" and e["track_id"] == 1)
    assert leave1["category"] == "short_sleeved_shirt" and leave1["dwell_s"] == pytest.approx(5.9) and leave1["reason"] == "unseen"
    leave2 = next(e for e in events if e["type"] == "leave" and e["track_id"] == 2)
    assert leave2["category"] == "trousers" and leave2["dwell_s"] == pytest.approx(11.9) and leave2["reason"] == "end"
    assert [e["id"] for e in events] == [f"r-{k}" for k in range(1, 150 + 6 + 1)]
    f40 = events[[e["frame_index"] for e in events].index(40)]
    assert f40["counts"] == {"short_sleeved_shirt": 1, "trousers": 1} and f40["tracks"] == [1, 2]


def test_target_parsing_never_shows_a_password():
    t = MqttTarget.parse("mqtts://shop@broker.local/df2/events")
    assert (t.host, t.port, t.topic, t.user, t.tls) == ("broker.local", 8883, "df2/events", "shop", True)
    assert MqttTarget.parse("10.0.0.5:1999/x") == MqttTarget("10.0.0.5", 1999, "x")
    with pytest.raises(ValueError) as e:
        MqttTarget.parse("mqtt://shop:hunter2@broker/x")
    assert "hunter2" not in str(e.value) and "DF2INFER_MQTT_PASSWORD" in str(e.value)
    with pytest.raises(ValueError, match="wildcard"):
        MqttTarget.parse("broker/a/#")


def test_broker_killed_and_restarted_every_event_arrives(tmp_path):
    port = _free_port()
    broker = Broker(tmp_path, port)
    broker.start()
    sub = None
    sink = None
    try:
        sub = Subscriber(port, "df2/#")
        assert sub.subscribed.wait(10)
        time.sleep(1.5)  # the broker's autosave has stored the subscriber's session
        sink = MqttSink(MqttTarget("127.0.0.1", port, "df2"), tmp_path / "queue.sqlite", leave_after=30)
        for i in range(150):
            sink.write(_frame(i, _script(i)))
            if i == 50:
                broker.kill()  # mid-run: events wait in the queue on disk
            if i == 90:
                waiting = len(sink.queue)  # the events of the outage, on disk
                broker.start()
            time.sleep(0.02)
        sink.close()  # waits until the queue is drained
        expected = {f"{sink.events.run_id}-{k}" for k in range(1, 156 + 1)}  # 150 frames + 3 appear + 3 leave
        end = time.monotonic() + 20
        while time.monotonic() < end and not expected <= set(sub.ids):
            time.sleep(0.1)
        with sub.lock:
            got = list(sub.ids)
        missing = expected - set(got)
        duplicates = len(got) - len(set(got))
        print(f"received {len(got)} messages, {len(set(got))} distinct ids, {duplicates} duplicates")
        assert not missing, f"{len(missing)} event ids never arrived: {sorted(missing)[:10]}"
        assert set(got) == expected  # nothing else arrived
        assert waiting >= 30  # the outage really held events back (frames 51..90 at least)
        assert sink.dropped == 0 and sink.sent >= 156
        leave = [e for e in sub.events.values() if e["type"] == "leave"]
        assert sorted((e["track_id"], e["category"]) for e in leave) == [(1, "short_sleeved_shirt"), (2, "trousers"), (3, "skirt")]
        assert all(e["topic"] == f"df2/{e['type']}" for e in sub.events.values())
    finally:
        if sink is not None:
            sink.close()
        if sub is not None:
            sub.stop()
        broker.kill()


def test_full_queue_drops_oldest_and_counts(tmp_path):
    """Broker down, a queue of 10: 40 frame events queue, the oldest 30 are dropped and counted; when the
    broker comes back the persistent subscriber gets exactly the newest 10."""
    port = _free_port()
    broker = Broker(tmp_path, port)
    broker.start()
    sub = Subscriber(port, "df2/#")
    sink = None
    try:
        assert sub.subscribed.wait(10)
        time.sleep(1.5)  # the session is saved
        broker.kill()
        sink = MqttSink(MqttTarget("127.0.0.1", port, "df2"), tmp_path / "queue.sqlite", max_queue=10, drain_s=15)
        for i in range(40):
            sink.write(_frame(i, []))
        assert sink.dropped == 30 and len(sink.queue) == 10
        broker.start()
        sink.close()
        end = time.monotonic() + 10
        want = {f"{sink.events.run_id}-{k}" for k in range(31, 41)}
        while time.monotonic() < end and set(sub.ids) != want:
            time.sleep(0.1)
        assert set(sub.ids) == want
    finally:
        if sink is not None:
            sink.close()
        sub.stop()
        broker.kill()


def test_password_from_the_environment_is_never_shown(tmp_path, monkeypatch, caplog):
    """The password given in $DF2INFER_MQTT_PASSWORD reaches no log line, and is remembered by the one
    redaction (df2infer.credentials) so any later text quoting it is masked."""
    import logging

    from df2infer.credentials import redact

    pytest.importorskip("paho.mqtt", reason="pip install paho-mqtt (make setup installs it)")
    monkeypatch.setenv("DF2INFER_MQTT_PASSWORD", "Zq7-secret-pw")
    with caplog.at_level(logging.DEBUG):
        sink = MqttSink(MqttTarget("127.0.0.1", _free_port(), "df2", user="shop"), tmp_path / "q.sqlite", drain_s=0.5)
        sink.write(_frame(0, []))
        time.sleep(1.5)  # a refused connection attempt gets logged
        sink.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "shop" in text and "Zq7-secret-pw" not in text
    assert redact("broker said: bad password Zq7-secret-pw") == "broker said: bad password ***"


def test_cli_every_output_on(tmp_path):
    """`df2infer video --track` with the JSONL/video segments, the page, the metrics and MQTT on: the run ends
    cleanly, the subscriber gets one frame event per JSONL line, appear events for tracks, and no output
    prints the MQTT password."""
    import sys

    import fake_model

    from df2infer.synth.video import make_video

    port = _free_port()
    broker = Broker(tmp_path, port)
    broker.start()
    sub = Subscriber(port, "df2/#")
    try:
        assert sub.subscribed.wait(10)
        clip, _ = make_video(tmp_path / "clip", frames=20, size=(160, 96))
        model = fake_model.build(tmp_path / "fake.onnx")
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "df2infer", "video", str(clip), "--model", str(model), "--out", str(out), "--no-progress", "--track"]
        cmd += ["--segment", "1MB", "--serve", "0", "--metrics", "0", "--mqtt", f"shop@127.0.0.1:{port}/df2"]
        env = {**os.environ, "DF2INFER_MQTT_PASSWORD": "Pw-not-shown-77"}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        assert "Pw-not-shown-77" not in r.stdout + r.stderr
        lines = [json.loads(x) for p in sorted(out.glob("detections.*.jsonl")) for x in p.read_text().splitlines()]
        assert len(lines) == 20
        end = time.monotonic() + 10
        while time.monotonic() < end and sum(1 for e in list(sub.events.values()) if e["type"] == "frame") < 20:
            time.sleep(0.1)
        frames = sorted(e["frame_index"] for e in sub.events.values() if e["type"] == "frame")
        assert frames == [rec["frame_index"] for rec in lines]
        assert any(e["type"] == "appear" for e in sub.events.values())
    finally:
        sub.stop()
        broker.kill()


def test_mqtts_to_a_tls_listener(tmp_path):
    """mqtts:// with --mqtt-ca: events reach a mosquitto listening with TLS only (self-signed certificate)."""
    from tls_cert import self_signed

    cert, key = self_signed(tmp_path)
    port, plain = _free_port(), _free_port()
    broker = Broker(tmp_path, plain)  # the subscriber uses the plain loopback listener; the sink only the TLS one
    broker.conf.write_text(broker.conf.read_text() + f"listener {port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\n")
    broker.start()
    sub = Subscriber(plain, "df2/#")
    sink = None
    try:
        assert sub.subscribed.wait(10)
        sink = MqttSink(MqttTarget.parse(f"mqtts://127.0.0.1:{port}/df2"), tmp_path / "q.sqlite", ca_file=str(cert))
        for i in range(5):
            sink.write(_frame(i, []))
        sink.close()
        end = time.monotonic() + 10
        want = {f"{sink.events.run_id}-{k}" for k in range(1, 6)}
        while time.monotonic() < end and not want <= set(sub.ids):
            time.sleep(0.1)
        assert want <= set(sub.ids)
    finally:
        if sink is not None:
            sink.close()
        sub.stop()
        broker.kill()
