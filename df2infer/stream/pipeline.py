"""The video loop: decode, inference (+ postprocess), and the consumer's sinks overlap.

reader thread per source --(newest frame | bounded queue)--> worker thread: batch across
sources, Predictor batch call, tracking --(bounded queue)--> the caller: a generator of
FrameResult (sinks, drawing, encoding run there, overlapping the next batch's inference)

from df2infer.stream import Pipeline
with Pipeline(["clip.mp4", "rtsp://cam/1"], model="model.onnx") as p:
    for r in p:                      # FrameResult: info (FrameInfo), detections, image
        print(r.info.display_name, r.info.index, r.detections.names, r.detections.track_ids)
Pipeline(...).run(callback)          # the callback form; returns the summary

Stopping: `stop()` (safe from a signal handler) is graceful: the readers decode no further frame,
and every frame already decoded is still run and handed to the caller before the iteration ends (a
file source loses nothing; a live source's newest frame is run). `abort()` ends at once, dropping
the frames in flight; leaving the iteration early (break, close()) aborts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from df2infer.latency import LatencySamples, stats_ms
from df2infer.ops.options import DecodeOptions
from df2infer.results import FrameResult
from df2infer.stream.batching import Batcher
from df2infer.stream.model import BatchPredictor, stream_options
from df2infer.stream.parse import open_sources
from df2infer.stream.sources import FrameGate, ReconnectPolicy, Source, SourceError
from df2infer.stream.tracking import Tracker

log = logging.getLogger("df2infer.stream")

STAGES = ("decode", "batch_wait", "inference", "tracking", "sink", "age")


class _ObservedSamples(LatencySamples):
    """The pipeline's stage samples, also handed to listeners (Pipeline.on_stage: e.g. metrics histograms)."""

    def __init__(self, stages, maxlen: int = 5000):
        super().__init__(stages, maxlen)
        self.listeners: list[Callable[[str, float], None]] = []

    def add(self, stage: str, seconds: float) -> None:
        super().add(stage, seconds)
        for fn in self.listeners:
            fn(stage, seconds)


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
    vid_stride       process every n-th frame of each source (1: all); the others are not decoded
    max_fps          process at most this many frames per second of each source (files: media time)
                     (both counted per source as `skipped`, apart from the live sources' `dropped`)
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
        vid_stride: int = 1,
        max_fps: float | None = None,
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
        if vid_stride != 1 or max_fps is not None:
            for s in self.sources:
                s.gate = FrameGate(vid_stride, max_fps)
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
        self._abort = threading.Event()
        self._worker: threading.Thread | None = None
        self.samples = _ObservedSamples(STAGES)
        self.results = 0
        self.batches = 0
        self.t_start: float | None = None
        self.t_end: float | None = None
        self.worker_error: BaseException | None = None

    def on_stage(self, fn: Callable[[str, float], None]) -> None:
        """Call fn(stage, seconds) for every timing sample (stages: STAGES; decode from the reader threads,
        the others from the inference thread and the caller's), e.g. to fill metrics histograms."""
        self.samples.listeners.append(fn)
        for s in self.sources:
            s.decode_listeners.append(lambda seconds: fn("decode", seconds))

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
        """Stop reading (safe from a signal handler): the readers decode no further frame; the
        iteration ends once every frame already decoded has been run and handed out."""
        for s in self.sources:
            s.stop()

    def abort(self) -> None:
        """Stop at once (safe from a signal handler): frames not yet run are dropped."""
        self.stop()
        self._abort.set()
        self.batcher.stop.set()

    def close(self, timeout: float = 10.0) -> None:
        self.abort()
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
                if self._abort.is_set() and item is not _END:
                    return False

    def _work(self) -> None:
        try:
            while not self._abort.is_set():  # after stop(): until the readers' decoded frames are all run
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
        stages = self.samples.percentiles_ms()
        decode = [x for s in self.sources for x in s.stats.decode_s[-5000:]]  # kept per source by the readers
        if decode:
            st = stats_ms(decode, (50, 99))
            stages = {"decode": {"p50_ms": round(st["p50"], 2), "p99_ms": round(st["p99"], 2), "n": len(decode)}, **stages}
        per_source = [
            {
                "id": s.id,
                "source": s.name,
                "state": s.state,
                "frames": s.stats.frames,
                "delivered": s.stats.delivered,
                "dropped": s.stats.dropped,
                "skipped": s.stats.skipped,
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
            "skipped": sum(s.stats.skipped for s in self.sources),
            "reconnects": sum(s.stats.reconnects for s in self.sources),
            "failed_sources": [s.name for s in self.sources if s.state == "failed"] + self.errors,
            "sources": per_source,
        }


def format_summary(s: dict) -> str:
    st = ", ".join(f"{k} {v['p50_ms']:.1f}/{v['p99_ms']:.1f}" for k, v in s["stages"].items())
    failed = f", failed: {'; '.join(s['failed_sources'])}" if s["failed_sources"] else ""
    skipped = f"skipped {s['skipped']} (stride/max fps), " if s.get("skipped") else ""
    return (
        f"{s['frames']} frames in {s['elapsed_s']:.1f} s ({s['fps']:.1f} fps); ms p50/p99: {st}; "
        f"dropped {s['dropped']}, {skipped}reconnects {s['reconnects']}{failed}"
    )


def stream(sources: list[str], model: Any = None, callback: Callable[[FrameResult], Any] | None = None, **kw):
    """The Python API: a generator of FrameResults, or with `callback`, run to the end and return the summary."""
    p = Pipeline(sources, model, **kw)
    if callback is not None:
        return p.run(callback)
    return iter(p)
