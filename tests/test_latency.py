"""df2infer.latency: the one percentile helper, against hand-computed numbers."""

from __future__ import annotations

import pytest

from df2infer.latency import LatencySamples, stats_ms


def test_stats_ms_hand_computed():
    # 1, 2, 3, 4 ms: linear interpolation puts p50 at rank 1.5 (2.5 ms) and p90 at rank 2.7 (3.7 ms)
    st = stats_ms([0.004, 0.001, 0.003, 0.002], (50, 90))
    assert st == pytest.approx({"p50": 2.5, "p90": 3.7, "mean": 2.5, "min": 1.0, "max": 4.0, "n": 4})
    assert stats_ms([]) == {"n": 0}


def test_latency_samples_keep_the_most_recent_and_skip_empty_stages():
    s = LatencySamples(("decode", "inference"), maxlen=3)
    for ms in (100, 1, 2, 3):  # the first (100 ms) falls out of the window of 3
        s.add("inference", ms / 1e3)
    assert s.percentiles_ms((50, 99)) == {"inference": {"p50_ms": 2.0, "p99_ms": 2.98, "n": 3}}
    s.clear()
    assert s.percentiles_ms() == {}
