"""Reading one H.264 file through the two readers of df2infer.stream, in one run: OpenCV's (the `clip.mp4`
source: cv2.VideoCapture, FFmpeg) and GStreamer's (`filesrc ! decodebin ! videoconvert ! appsink` through
df2infer.stream.gst, software decode here: avdec_h264). Both hand out BGR frames through the same Source
interface, every frame (file mode); the consumer only counts them.

Per run: frames per second (wall clock) and CPU per frame (this process's user + system time, all its threads:
the decoders' and GStreamer's included, divided by the frames). Runs alternate A B A B ... so a change in the
machine's load hits both alike; the median of each is reported, with the load average.

    .venv/bin/python benchmarks/gst_reader.py --out benchmarks/results/gst_reader.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def make_h264(path: Path, frames: int, width: int, height: int, fps: int = 30) -> None:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = np.roll(base, 4 * i, axis=1)  # moving content: real inter-frame prediction work
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def read_all(text: str) -> tuple[int, float, float]:
    """(frames, wall s, CPU s) to read every frame of source `text` through df2infer.stream."""
    from df2infer.stream.parse import open_sources

    (src,), errs = open_sources([text], queue_size=8)
    assert not errs, errs
    t0, c0 = time.perf_counter(), time.process_time()
    src.start()
    n = 0
    while not src.done:
        f = src.get()
        if f is None:
            time.sleep(0.0005)
        else:
            n += 1
    src.join(10)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert src.state == "finished", (src.state, src.error)
    return n, wall, cpu


def pipeline_cpu(description: str, frames: int) -> float:
    """CPU ms per frame of a bare GStreamer pipeline run to EOS (no appsink, no Python per frame)."""
    from df2infer.stream.gst import import_gst

    Gst = import_gst()
    p = Gst.parse_launch(description)
    c0 = time.process_time()
    p.set_state(Gst.State.PLAYING)
    msg = p.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    p.set_state(Gst.State.NULL)
    assert msg.type == Gst.MessageType.EOS, msg.parse_error()
    return (time.process_time() - c0) / frames * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "clip.mp4"
        make_h264(clip, a.frames, w, h)
        readers = {"opencv": str(clip), "gstreamer": f"filesrc location={clip} ! decodebin ! videoconvert ! appsink"}
        read_all(readers["opencv"]), read_all(readers["gstreamer"])  # warm-up: plugin registry, codecs, page cache
        runs: dict[str, list[dict]] = {k: [] for k in readers}
        stages: dict[str, list[float]] = {"decode_only": [], "decode_and_videoconvert_to_bgr": []}
        for _ in range(a.repeats):
            for name, text in readers.items():
                n, wall, cpu = read_all(text)
                assert n == a.frames, f"{name}: {n} frames, expected {a.frames}"
                runs[name].append({"fps": round(n / wall, 1), "cpu_ms_per_frame": round(cpu / n * 1e3, 3)})
            # where the GStreamer reader's CPU goes: the same file into a fakesink, without and with the conversion
            stages["decode_only"].append(pipeline_cpu(f"filesrc location={clip} ! decodebin ! fakesink sync=false", a.frames))
            stages["decode_and_videoconvert_to_bgr"].append(
                pipeline_cpu(f"filesrc location={clip} ! decodebin ! videoconvert ! video/x-raw,format=BGR ! fakesink sync=false", a.frames)
            )
    summary = {
        name: {
            "fps_median": float(np.median([r["fps"] for r in rs])),
            "cpu_ms_per_frame_median": float(np.median([r["cpu_ms_per_frame"] for r in rs])),
            "runs": rs,
        }
        for name, rs in runs.items()
    }
    from df2infer.stream.gst import import_gst

    Gst = import_gst()
    result = {
        "what": f"{a.frames} frames of {w}x{h} H.264 (libx264 defaults, yuv420p) read to BGR through each df2infer source",
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "gstreamer": ".".join(str(v) for v in Gst.version()[:3]),
        "gstreamer_decoder": "avdec_h264 (decodebin's choice here)" if Gst.ElementFactory.find("avdec_h264") else "?",
        "readers": readers | {"gstreamer": "filesrc location=CLIP ! decodebin ! videoconvert ! appsink", "opencv": "CLIP"},
        **summary,
        "gstreamer_pipeline_cpu_ms_per_frame_median": {k: round(float(np.median(v)), 3) for k, v in stages.items()},
        "gst_over_opencv_fps": round(summary["gstreamer"]["fps_median"] / summary["opencv"]["fps_median"], 3),
    }
    print(json.dumps(result, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
