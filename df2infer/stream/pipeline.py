"""The video loop: decode, inference (+ postprocess), and the consumer's sinks overlap.

reader thread per source --(newest frame | bounded queue)--> worker thread: batch across
sources, Predictor batch call, tracking --(bounded queue)--> the caller: a generator of
FrameResult (sinks, drawing, encoding run there, overlapping the next batch's inference)

from df2infer.stream import Pipeline
with Pipeline(["clip.mp4", "rtsp://cam/1"], model="model.onnx") as p:
    for r in p:                      # FrameResult: info (FrameInfo), detections, image
        print(r.info.display_name, r.info.index, r.detections.names, r.detections.track_ids)
Pipeline(...).run(callback)          # the callback form; returns the summary
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from df2infer.ops.options import DecodeOptions
from df2infer.results import FrameResult
from df2infer.stream.batching import Batcher
from df2infer.stream.model import BatchPredictor, stream_options
from df2infer.stream.sources import ReconnectPolicy, Source, SourceError, open_sources
from df2infer.stream.tracking import Tracker

log = logging.getLogger("df2infer.stream")

STAGES = ("decode", "batch_wait", "inference", "tracking", "sink", "age")


class _Samples:
    def __init__(self, maxlen: int = 5000):
        self.d: dict[str, deque] = {s: deque(maxlen=maxlen) for s in STAGES}

    def add(self, stage: str, seconds: float) -> None:
        self.d[stage].append(seconds)

    def percentiles(self) -> dict[str, dict[str, float]]:
        out = {}
        for s, v in self.d.items():
            if v:
                p50, p99 = np.percentile(np.fromiter(v, float), [50, 99])
                out[s] = {"p50_ms": round(float(p50) * 1e3, 2), "p99_ms": round(float(p99) * 1e3, 2), "n": len(v)}
        return out


_END = object()


class Pipeline:
    """Run a model over one or many sources; iterate for FrameResults or call run(callback).

    sources          source strings (see df2infer.stream.sources) or Source objects
    model            a Predictor, a model path, or None for the bundled model
    options          DecodeOptions (default: stream.model.stream_options(): duplicates suppressed at
                     IoU > 0.85); embeddings are computed when options.embeddings or track
    batch            frames per inference call (default and maximum: the model's max_batch)
    track            stable ids (Detections.track_ids) with re-identification by embeddings
    loop             restart files at their end (for soak tests)
    policy           ReconnectPolicy: timeouts, backoff, failures before a source is dropped
    output_queue     results waiting for the caller (default 1 with a live source, else 4)
    """

    def __init__(
        self,
        sources: list[str] | list[Source],
        model: Any = None,
        *,
        options: DecodeOptions | None = None,
        batch: int | None = None,
        track: bool = False,
        loop: bool = False,
        policy: ReconnectPolicy | None = None,
        batch_timeout_s: float = 0.005,
        queue_size: int = 8,
        output_queue: int | None = None,
        device: str = "auto",
        max_frames: int | None = None,
        hw_decode: bool = False,
    ):
        import df2infer

        self.predictor = model if hasattr(model, "backend") else df2infer.load(model, device=device)
        opts = options if options is not None else stream_options(embeddings=False)
        self.model = BatchPredictor(self.predictor, opts.replace(embeddings=opts.embeddings or track))
        max_batch = self.model.max_batch if batch is None else max(1, min(int(batch), self.model.max_batch))
        self.errors: list[str] = []
        if all(isinstance(s, Source) for s in sources):
            self.sources: list[Source] = [s for s in sources if isinstance(s, Source)]
        else:
            self.sources, self.errors = open_sources(
                [str(s) for s in sources], policy=policy, queue_size=queue_size, loop=loop, hw_decode=hw_decode, max_frames=max_frames
            )
        if not self.sources:
            raise SourceError("no usable source: " + "; ".join(self.errors or ["none given"]))
        self.batcher = Batcher(self.sources, max_batch, batch_timeout_s)
        for s in self.sources:
            s._notify = self.batcher.notify
        self.track = track
        self.trackers: dict[int, Tracker] = {}
        if track:
            # without similarity weights in this artifact the tracker compares embeddings by cosine
            sim = self.predictor.similarity if self.predictor.has_similarity else None
            for s in self.sources:
                self.trackers[s.id] = Tracker(similarity=sim)
        if output_queue is None:  # live: one result waiting at most (frame age); files: some slack
            output_queue = 1 if any(s.live for s in self.sources) else 4
        self._out: queue.Queue = queue.Queue(maxsize=max(1, output_queue))
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.samples = _Samples()
        self.results = 0
        self.batches = 0
        self.t_start: float | None = None
        self.t_end: float | None = None
        self.worker_error: BaseException | None = None

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> Pipeline:
        if self._worker is not None:
            return self
        self.t_start = time.perf_counter()
        for s in self.sources:
            s.start()
        self._worker = threading.Thread(target=self._work, name="df2infer-inference", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        """Ask everything to stop (safe from a signal handler); iteration ends after the frames in flight."""
        self._stop.set()
        self.batcher.stop.set()
        for s in self.sources:
            s.stop()

    def close(self, timeout: float = 10.0) -> None:
        self.stop()
        # unblock a worker waiting on a full output queue
        while self._worker is not None and self._worker.is_alive():
            try:
                self._out.get_nowait()
            except queue.Empty:
                self._worker.join(0.05)
        for s in self.sources:
            s.join(timeout)
        if self.t_end is None:
            self.t_end = time.perf_counter()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # worker ----------------------------------------------------------------------------------
    def _put(self, item) -> bool:
        while True:
            try:
                self._out.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._stop.is_set() and item is not _END:
                    return False

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                frames = self.batcher.next_batch()
                t1 = time.perf_counter()
                if frames is None:
                    break
                self.samples.add("batch_wait", t1 - t0)
                dets = self.model.predict_batch([f.image for f in frames])
                t2 = time.perf_counter()
                self.samples.add("inference", t2 - t1)
                self.batches += 1
                for f, d in zip(frames, dets):
                    if self.track:
                        t3 = time.perf_counter()
                        d.track_ids = self.trackers[f.info.source_id].update(d, f.info.index)
                        self.samples.add("tracking", time.perf_counter() - t3)
                    if not self._put(FrameResult(f.info, d, f.image)):
                        return
        except BaseException as e:  # reported to the caller by __iter__, never swallowed
            self.worker_error = e
            log.error("inference worker failed: %s: %s", type(e).__name__, e)
        finally:
            self._put(_END)

    # consumer --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[FrameResult]:
        self.start()
        try:
            while True:
                item = self._out.get()
                if item is _END:
                    break
                item.output_time = time.time()
                self.samples.add("age", item.age_s)
                self.results += 1
                t = time.perf_counter()
                yield item
                self.samples.add("sink", time.perf_counter() - t)
        finally:
            self.t_end = time.perf_counter()
            self.close()
        if self.worker_error is not None:
            # the worker's own exception (its type, cause and traceback), so callers catch what was raised
            raise self.worker_error

    def run(self, callback: Callable[[FrameResult], Any]) -> dict:
        """Call callback(result) for every frame; returns summary()."""
        for r in self:
            callback(r)
        return self.summary()

    # reporting -------------------------------------------------------------------------------
    def summary(self) -> dict:
        """fps, per-stage p50/p99 (ms; decode per frame, inference per batch incl. pre/postprocess,
        sink = the caller's time per frame, age = capture to output), per-source counts."""
        end = self.t_end if self.t_end is not None else time.perf_counter()
        elapsed = max(end - (self.t_start or end), 1e-9)
        stages = self.samples.percentiles()
        decode = [x for s in self.sources for x in s.stats.decode_s[-5000:]]  # kept per source by the readers
        if decode:
            p50, p99 = np.percentile(decode, [50, 99])
            stages = {"decode": {"p50_ms": round(float(p50) * 1e3, 2), "p99_ms": round(float(p99) * 1e3, 2), "n": len(decode)}, **stages}
        per_source = [
            {
                "id": s.id,
                "source": s.name,
                "state": s.state,
                "frames": s.stats.frames,
                "delivered": s.stats.delivered,
                "dropped": s.stats.dropped,
                "reconnects": s.stats.reconnects,
                "failures": s.stats.failures,
                "error": s.error,
            }
            for s in self.sources
        ]
        return {
            "elapsed_s": round(elapsed, 3),
            "frames": self.results,
            "batches": self.batches,
            "fps": round(self.results / elapsed, 2),
            "stages": stages,
            "dropped": sum(s.stats.dropped for s in self.sources),
            "reconnects": sum(s.stats.reconnects for s in self.sources),
            "failed_sources": [s.name for s in self.sources if s.state == "failed"] + self.errors,
            "sources": per_source,
        }


def format_summary(s: dict) -> str:
    st = ", ".join(f"{k} {v['p50_ms']:.1f}/{v['p99_ms']:.1f}" for k, v in s["stages"].items())
    failed = f", failed: {'; '.join(s['failed_sources'])}" if s["failed_sources"] else ""
    return (
        f"{s['frames']} frames in {s['elapsed_s']:.1f} s ({s['fps']:.1f} fps); ms p50/p99: {st}; "
        f"dropped {s['dropped']}, reconnects {s['reconnects']}{failed}"
    )


def stream(sources: list[str], model: Any = None, callback: Callable[[FrameResult], Any] | None = None, **kw):
    """The Python API: a generator of FrameResults, or with `callback`, run to the end and return the summary."""
    p = Pipeline(sources, model, **kw)
    if callback is not None:
        return p.run(callback)
    return iter(p)
