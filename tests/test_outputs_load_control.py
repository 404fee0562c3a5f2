"""--vid-stride / --max-fps (stream.sources.FrameGate through Pipeline): which frames are processed, and that the
others are counted as skipped. Expected frame numbers are worked out by hand from the clip's 30 fps."""

from __future__ import annotations

import fake_model
import pytest

from df2infer.stream import Pipeline
from df2infer.stream.sources import FrameGate


@pytest.fixture(scope="module")
def clip_and_model(tmp_path_factory):
    from df2infer.synth.video import make_video

    d = tmp_path_factory.mktemp("lc")
    clip, _ = make_video(d, frames=45, size=(160, 96), fps=30)
    return str(clip), str(fake_model.build(d / "fake.onnx"))


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({"vid_stride": 3}, list(range(0, 45, 3))),  # frames 0, 3, ..., 42
        ({"max_fps": 10}, list(range(0, 45, 3))),  # 30 fps clip at 10 fps: every third frame's media time
        ({"max_fps": 7.5}, list(range(0, 45, 4))),  # 1/7.5 s = 4 frames
        ({"vid_stride": 2, "max_fps": 5}, list(range(0, 45, 6))),  # even frames, at most one per 0.2 s = 6 frames
    ],
)
def test_stride_and_max_fps_pick_the_frames_and_count_the_rest(clip_and_model, kw, expected):
    clip, model = clip_and_model
    with Pipeline([clip], model, **kw) as pipe:
        got = [r.info.index for r in pipe]
    s = pipe.summary()
    assert got == expected
    assert s["sources"][0]["skipped"] == 45 - len(expected) and s["skipped"] == 45 - len(expected)
    assert s["sources"][0]["frames"] == len(expected)  # decoded: only the kept ones


def test_gate_on_live_time_and_bad_values():
    g = FrameGate(max_fps=2)  # live: wall seconds; frames every 0.1 s -> one per 0.5 s
    kept = [i for i in range(30) if g.keep(i, 100.0 + i * 0.1 + 1e-6)]
    assert kept == [0, 5, 10, 15, 20, 25]
    for bad in [{"vid_stride": 0}, {"max_fps": 0}, {"max_fps": -1}]:
        with pytest.raises(ValueError, match="--vid-stride|--max-fps"):
            FrameGate(**bad)
