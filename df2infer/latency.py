"""Latency samples and their percentiles: one helper for `df2infer bench`, the stream pipeline's summary,
the Predictor's StageTimings and the benchmarks, so that "p99" means the same everywhere (numpy's
linear interpolation over the samples kept, reported in milliseconds)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np


def stats_ms(seconds: Iterable[float], qs: Iterable[int] = (50, 90, 99)) -> dict[str, float]:
    """{"p50": ms, "p90": ms, ... (one per q), "mean", "min", "max" (ms), "n"} of samples in seconds;
    {"n": 0} when there are none (no percentile of nothing)."""
    t = np.fromiter(seconds, np.float64) * 1e3
    if not len(t):
        return {"n": 0}
    qs = tuple(qs)
    out = {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(t, qs))}
    return {**out, "mean": float(t.mean()), "min": float(t.min()), "max": float(t.max()), "n": len(t)}


class LatencySamples:
    """The most recent `maxlen` latency samples (seconds) of each stage, and their percentiles."""

    def __init__(self, stages: Iterable[str], maxlen: int = 5000):
        self.stages = tuple(stages)
        self.samples: dict[str, deque[float]] = {s: deque(maxlen=maxlen) for s in self.stages}

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds)

    def clear(self) -> None:
        for d in self.samples.values():
            d.clear()

    def percentiles_ms(self, qs: Iterable[int] = (50, 99), ndigits: int = 2) -> dict[str, dict[str, float]]:
        """{stage: {"p50_ms": ..., "p99_ms": ..., "n": samples}} for the stages that have samples."""
        qs = tuple(qs)
        out = {}
        for s, d in self.samples.items():
            if d:
                st = stats_ms(d, qs)
                out[s] = {**{f"p{q:g}_ms": round(st[f"p{q:g}"], ndigits) for q in qs}, "n": len(d)}
        return out
