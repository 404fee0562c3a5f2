"""Several sources batched into one inference call: up to the model's batch limit, waiting at most a
short batching timeout after the first frame for more; each frame keeps its source id, frame index
and capture timestamp (stream.sources.Frame) so its result goes back to its source."""

from __future__ import annotations

import threading
import time

from df2infer.stream.sources import Frame, Source


class Batcher:
    """Collects frames from sources round-robin (a fair share for each source: the first source in
    a pass rotates). A live source gives at most its newest frame; a file source may give several in
    order. `next_batch()` returns a list of Frames, or None once every source is done or `stop` is set."""

    def __init__(self, sources: list[Source], max_batch: int, timeout_s: float = 0.005):
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}, expected >= 1")
        self.sources = sources
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._ready = threading.Event()
        self._start = 0
        self.stop = threading.Event()

    def notify(self) -> None:
        """Called by the readers when a frame is ready or a source ended."""
        self._ready.set()

    def _collect(self, batch: list[Frame]) -> None:
        n = len(self.sources)
        while len(batch) < self.max_batch:
            got = False
            for k in range(n):
                s = self.sources[(self._start + k) % n]
                f = s.get()
                if f is not None:
                    batch.append(f)
                    got = True
                    if len(batch) == self.max_batch:
                        break
            if not got:
                return

    def next_batch(self) -> list[Frame] | None:
        batch: list[Frame] = []
        deadline = None
        while not self.stop.is_set():
            self._ready.clear()  # clear before polling, so a frame published meanwhile is not missed
            self._collect(batch)
            if len(batch) == self.max_batch:
                break
            if batch:
                now = time.perf_counter()
                if deadline is None:
                    deadline = now + self.timeout_s
                # only live sources can still add within the timeout; a file with nothing queued is decoding
                if now >= deadline or all(s.done for s in self.sources):
                    break
                self._ready.wait(deadline - now)
                continue
            if all(s.done for s in self.sources):
                return None
            self._ready.wait(0.05)
        if self.sources:
            self._start = (self._start + 1) % len(self.sources)
        return batch or None
