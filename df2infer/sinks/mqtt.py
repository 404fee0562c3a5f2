"""Events to an MQTT broker (`df2infer video --mqtt [mqtts://][USER@]HOST[:PORT]/TOPIC`), at least once.

Every event (df2infer.sinks.events: a summary per frame, a track's appear and leave) goes first into a
bounded queue on disk (SQLite, `DiskQueue`), then a sender thread publishes the oldest ones with QoS 1 to
`TOPIC/<type>` (`TOPIC/frame`, `TOPIC/appear`, `TOPIC/leave`) and deletes each once the broker acknowledged
it (PUBACK). While the broker is unreachable the events wait on disk (also across a restart of the
program: what is left in the queue goes out at the next start) and go out in order when it returns; a
full queue drops its oldest events and counts them (`dropped`). After a reconnect paho resends the
unacknowledged events, so a subscriber may see an id twice (QoS 1 is at least once; never zero times
unless the queue overflowed): the ids are unique, deduplicate by them.

The password comes from the environment (MQTT_PASSWORD_ENV), never from the URL or the command line,
and is never logged; `mqtts://` connects with TLS (the system's CAs, or `ca_file`)."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from df2infer.credentials import redact, remember
from df2infer.results import FrameResult
from df2infer.sinks.base import Sink
from df2infer.sinks.events import EventBuilder

log = logging.getLogger(__name__)

MQTT_PASSWORD_ENV = "DF2INFER_MQTT_PASSWORD"


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    topic: str
    user: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, text: str) -> MqttTarget:
        """[mqtt://|mqtts://][USER@]HOST[:PORT]/TOPIC; PORT 1883 (mqtt) or 8883 (mqtts) by default. A password in
        the URL is refused (it would show in `ps` and in shell history): give it in $DF2INFER_MQTT_PASSWORD."""
        shown = redact(text if "://" in text else "mqtt://" + text)
        m = re.fullmatch(r"(?:(mqtts?)://)?(?:([^@/]*)@)?(\[[^\]]+\]|[^:/@]+)(?::(\d+))?/(.+)", text)
        if not m:
            raise ValueError(f"--mqtt {shown!r}: expected [mqtts://][USER@]HOST[:PORT]/TOPIC")
        scheme, user, host, port, topic = m.groups()
        if user is not None and ":" in user:
            raise ValueError(f"--mqtt {shown!r}: no password in the URL; set ${MQTT_PASSWORD_ENV} instead")
        if any(ch in topic for ch in "#+"):
            raise ValueError(f"--mqtt: topic {topic!r} has a wildcard (# or +); publishing needs a plain topic")
        tls = scheme == "mqtts"
        return cls(host.strip("[]"), int(port) if port else (8883 if tls else 1883), topic.rstrip("/"), user or None, tls)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.topic}"


class DiskQueue:
    """A bounded FIFO of (topic, payload) on disk (SQLite, WAL): put() drops the oldest entries beyond
    `max_items` and counts them in `dropped`; take(after, n) reads without removing; remove(ids) after
    the broker acknowledged them. Thread-safe."""

    def __init__(self, path: str | os.PathLike, max_items: int = 100_000):
        self.path = os.fspath(path)
        self.max_items = int(max_items)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, payload TEXT)")
        self.dropped = 0

    def put(self, items: list[tuple[str, str]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO q (topic, payload) VALUES (?, ?)", items)
            (n,) = self._db.execute("SELECT COUNT(*) FROM q").fetchone()
            if n > self.max_items:
                over = n - self.max_items
                self._db.execute("DELETE FROM q WHERE id IN (SELECT id FROM q ORDER BY id LIMIT ?)", (over,))
                self.dropped += over
            self._db.execute("COMMIT")

    def take(self, after: int, n: int) -> list[tuple[int, str, str]]:
        with self._lock:
            return self._db.execute("SELECT id, topic, payload FROM q WHERE id > ? ORDER BY id LIMIT ?", (after, n)).fetchall()

    def remove(self, ids: list[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM q WHERE id = ?", [(i,) for i in ids])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM q").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class MqttSink(Sink):
    """write(result) queues the result's events (EventBuilder) and returns; a thread publishes them (module
    doc). close() queues the leave events of the tracks still present and waits up to `drain_s` seconds for
    the queue to empty (what remains stays on disk for the next run). Counters: `queued`, `sent` (acknowledged),
    `dropped` (queue overflow)."""

    def __init__(
        self,
        target: MqttTarget,
        queue_path: str | os.PathLike,
        *,
        max_queue: int = 100_000,
        leave_after: int = 30,
        client_id: str | None = None,
        ca_file: str | None = None,
        inflight: int = 20,
        drain_s: float = 10.0,
        password: str | None = None,
    ):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as e:
            raise RuntimeError("--mqtt needs paho-mqtt: pip install paho-mqtt") from e
        self.target = target
        self.events = EventBuilder(leave_after=leave_after)
        self.queue = DiskQueue(queue_path, max_queue)
        self.drain_s = drain_s
        self.inflight = inflight
        self.queued = self.sent = 0
        self._acks: deque[int] = deque()
        self._cv = threading.Condition()
        self._connected = False
        self._reset = False
        self._more = True  # the queue may hold events (also from an earlier run)
        self._stop = False
        self._last_state = ""
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"df2infer-{self.events.run_id}", clean_session=True)
        if target.user:
            pw = password if password is not None else os.environ.get(MQTT_PASSWORD_ENV)
            if pw:
                remember(f"mqtt://{target.user}:{pw}@{target.host}/")  # redacted wherever it might turn up
            c.username_pw_set(target.user, pw)
        if target.tls:
            c.tls_set(ca_certs=ca_file)
        c.max_inflight_messages_set(inflight)
        c.reconnect_delay_set(min_delay=1, max_delay=8)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._client = c
        c.connect_async(target.host, target.port, keepalive=15)
        c.loop_start()
        self._thread = threading.Thread(target=self._send, name="mqtt-sender", daemon=True)
        self._thread.start()

    # the broker's side (paho's network thread): only flags and a deque, no locks held across paho calls
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        ok = not reason_code.is_failure
        self._note("connected" if ok else f"refused ({reason_code})")
        with self._cv:
            self._connected = ok
            self._reset = True
            self._cv.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._stop:
            return  # our own disconnect at close()
        self._note(f"disconnected ({reason_code}); events wait on disk in {self.queue.path}")
        with self._cv:
            self._connected = False
            self._reset = True
            self._cv.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append(mid)
        with self._cv:
            self._cv.notify_all()

    def _note(self, state: str) -> None:
        if state != self._last_state:  # one line per change of state, not per retry
            self._last_state = state
            (log.info if state == "connected" else log.warning)("mqtt %s: %s", self.target, state)

    def _can_send(self, in_flight: int) -> bool:
        return self._connected and self._more and in_flight < self.inflight

    def _send(self) -> None:
        pending: dict[int, int] = {}  # mid -> queue row id, this connection
        last = 0  # highest row id sent on this connection
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or self._acks or self._reset or self._can_send(len(pending)), 0.5)
                if self._stop:
                    return
                reset, self._reset = self._reset, False
                connected = self._connected
                self._more = False  # set again by _put, or below when the queue holds more than was taken
            if reset:  # a new connection: paho resends its unacknowledged messages itself, under the same mids
                self._more = True
            done = []
            while self._acks:
                row = pending.pop(self._acks.popleft(), None)
                if row is not None:
                    done.append(row)
            if done:
                self.queue.remove(done)
                self.sent += len(done)
            if not connected or len(pending) >= self.inflight:
                continue
            want = self.inflight - len(pending)
            rows = self.queue.take(last, want)
            if len(rows) == want:
                self._more = True
            for row, topic, payload in rows:
                info = self._client.publish(topic, payload, qos=1)
                if info.rc not in (0, 4):  # 4 = MQTT_ERR_NO_CONN: paho keeps the message and sends it on reconnect
                    raise RuntimeError(f"mqtt {self.target}: publish failed with paho error {info.rc}")
                pending[info.mid] = row
                last = row
                if info.rc:
                    break

    def write(self, result: FrameResult) -> None:
        self._put(self.events.events(result))

    def _put(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self.queue.put([(f"{self.target.topic}/{e['type']}", json.dumps(e, separators=(",", ":"))) for e in events])
        self.queued += len(events)
        with self._cv:
            self._cv.notify_all()

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued event was acknowledged (True) or timeout_s passed (False)."""
        import time

        end = time.monotonic() + timeout_s
        while len(self.queue) and time.monotonic() < end:
            time.sleep(0.05)
        return not len(self.queue)

    def close(self) -> None:
        if self._stop:
            return
        self._put(self.events.end())
        if not self.flush(self.drain_s):
            log.warning("mqtt %s: %d events not yet acknowledged stay queued in %s", self.target, len(self.queue), self.queue.path)
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join()
        self._client.disconnect()
        self._client.loop_stop()
        left = len(self.queue)
        self.queue.close()
        log.info(
            "mqtt %s: %d events queued, %d acknowledged, %d dropped (queue full), %d left queued",
            self.target,
            self.queued,
            self.sent,
            self.dropped,
            left,
        )


__all__ = ["MQTT_PASSWORD_ENV", "DiskQueue", "MqttSink", "MqttTarget"]
