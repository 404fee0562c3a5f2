"""Prometheus metrics of the loop (`df2infer video --metrics [HOST:]PORT`), served over HTTP at /metrics by
prometheus_client on a registry of its own.

Metrics (every `source` label is the source's display name, FrameInfo.display_name: credentials redacted):

    df2infer_frames_total{source}                 counter   frames the loop processed (every sink got them)
    df2infer_fps                                  gauge     frames per second over the last `window_s` seconds
    df2infer_stage_seconds{stage}                 histogram decode, batch_wait, inference (per batch), tracking,
                                                            sink (the outputs' time per frame), age
    df2infer_frame_age_seconds{source}            histogram capture to output
    df2infer_dropped_frames_total{source}         counter   live frames replaced by newer ones before inference
    df2infer_reconnects_total{source}             counter
    df2infer_source_up{source}                    gauge     1 while the source is reading (running), else 0
    df2infer_output_skipped_frames_total{output}  counter   frames an output did not write (e.g. a full disk)

The per-source counts and the source states are read from the pipeline at scrape time (no second bookkeeping)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from df2infer.results import FrameResult
from df2infer.sinks.base import Sink

# seconds: 1 ms .. 10 s (inference on a CPU takes 0.1-2 s per batch; age on a live source a few frames)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsSink(Sink):
    """Counts and times every result written to it and serves them; `pipeline` (a stream.Pipeline, optional)
    adds the stage histograms and the per-source drops, reconnects and states; `skipped()` (optional)
    returns {output name: frames not written} for the outputs that can skip. `port` 0 picks a free port
    (`self.port` tells which). Binds `host` (127.0.0.1 by default: metrics stay on the device unless asked)."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        pipeline: Any = None,
        skipped: Callable[[], dict[str, int]] | None = None,
        window_s: float = 5.0,
    ):
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
        except ImportError as e:
            raise RuntimeError("--metrics needs prometheus_client: pip install prometheus-client") from e
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames = Counter("df2infer_frames", "frames the loop processed", ["source"], registry=r)
        self.fps = Gauge("df2infer_fps", f"frames per second over the last {window_s:g} s", registry=r)
        self.stage = Histogram("df2infer_stage_seconds", "time per stage", ["stage"], buckets=BUCKETS, registry=r)
        self.age = Histogram("df2infer_frame_age_seconds", "capture to output", ["source"], buckets=BUCKETS, registry=r)
        self.pipeline = pipeline
        self.skipped = skipped
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        r.register(_PipelineCollector(self))
        if pipeline is not None:
            pipeline.on_stage(lambda stage, seconds: self.stage.labels(stage).observe(seconds))
        server, self._thread = start_http_server(port, addr=host, registry=r)
        self._server: Any = server
        self.host, self.port = host, int(server.server_port)

    def write(self, result: FrameResult) -> None:
        name = result.info.display_name
        self.frames.labels(name).inc()
        if result.info.wall_time is not None and result.output_time:
            self.age.labels(name).observe(max(0.0, result.age_s))
        now = time.monotonic()
        with self._lock:
            self._times.append(now)
            while self._times and self._times[0] < now - self.window_s:
                self._times.popleft()
            self.fps.set(len(self._times) / self.window_s)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _PipelineCollector:
    """The pipeline's per-source counters and states, read when scraped."""

    def __init__(self, sink: MetricsSink):
        self.sink = sink

    def describe(self) -> Iterable[Any]:
        return []  # unknown until scraped (sources may be added); prometheus_client then calls collect lazily

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from df2infer.credentials import redact

        dropped = CounterMetricFamily("df2infer_dropped_frames", "live frames replaced by newer ones before inference", labels=["source"])
        reconnects = CounterMetricFamily("df2infer_reconnects", "reconnects", labels=["source"])
        up = GaugeMetricFamily("df2infer_source_up", "1 while the source is reading", labels=["source"])
        for s in getattr(self.sink.pipeline, "sources", []):
            name = redact(s.name)  # the same text as FrameInfo.display_name
            dropped.add_metric([name], s.stats.dropped)
            reconnects.add_metric([name], s.stats.reconnects)
            up.add_metric([name], 1.0 if s.state == "running" else 0.0)
        skipped = CounterMetricFamily("df2infer_output_skipped_frames", "frames an output did not write", labels=["output"])
        for name, n in (self.sink.skipped() if self.sink.skipped else {}).items():
            skipped.add_metric([name], n)
        return [dropped, reconnects, up, skipped]


__all__ = ["BUCKETS", "MetricsSink"]
