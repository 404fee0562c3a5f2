"""The video loop on this CPU, in one run (issue 11's numbers):

1. throughput: model only (Predictor batch calls on frames already decoded in memory) vs the loop
   on the same file (decode thread, inference, and the CLI's sinks: JSONL + annotate + H.264
   fragmented MP4), interleaved A B A B ..., same model, same batch; ratio target >= 0.90;
2. a live 30 fps source (the MJPEG-over-HTTP test server on 127.0.0.1): frame age at output
   (capture -> result handed to the caller) p50/p99, and frames dropped;
3. reconnect: the server is killed, stays down --down seconds, restarts; time from its restart to the
   first new frame out of the loop (default ReconnectPolicy), several times;
4. memory: RSS of this process over --rss-duration seconds of a looping file through the loop with
   sinks; growth = last sample vs the sample after the warm-up (first 10% of the run).

    .venv/bin/python benchmarks/video_loop.py --rss-duration 600 --out benchmarks/results/video_loop.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from df2infer.latency import stats_ms

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "stream_servers.py"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, fps: float) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, str(SERVER), "mjpeg", str(port), "--fps", str(fps), "--duration", "900"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("MJPEG server did not start")


def cli_sinks(folder: Path, fps: float = 30.0):
    """What `df2infer video` writes per frame (its sinks): the JSONL record, the annotated H.264 fragmented MP4."""
    from df2infer.sinks.base import Tee
    from df2infer.sinks.jsonl import JsonlSink
    from df2infer.sinks.video import VideoSink

    folder.mkdir(parents=True, exist_ok=True)
    return Tee([JsonlSink(folder / "detections.jsonl"), VideoSink(folder / "video.mp4", fps=fps)])


def throughput(model, clip: Path, frames: list, batch: int, reps: int, tmp: Path) -> dict:
    from df2infer.stream import Pipeline
    from df2infer.stream.model import BatchPredictor

    bp = BatchPredictor(model)  # the options Pipeline uses without tracking
    bp.predict_batch(frames[:batch])  # warm-up
    model_fps, loop_fps, model_cpu, loop_cpu = [], [], [], []
    stages: dict[str, list] = {"model_only": [], "loop": []}

    def stage_ms() -> dict:
        out = {k: round(v["per_image_ms"], 2) for k, v in model.timings.summary().items() if k != "read"}
        model.timings.reset()
        return out

    for rep in range(reps):
        model.timings.reset()
        t, c = time.perf_counter(), time.process_time()
        for i in range(0, len(frames), batch):
            bp.predict_batch(frames[i : i + batch])
        model_fps.append(len(frames) / (time.perf_counter() - t))
        model_cpu.append((time.process_time() - c) / len(frames))
        stages["model_only"].append(stage_ms())

        pipe = Pipeline([str(clip)], model, batch=batch, max_frames=len(frames))
        t, c = time.perf_counter(), time.process_time()
        n = 0
        with cli_sinks(tmp / f"loop{rep}") as sinks:
            for r in pipe:
                sinks.write(r)
                n += 1
        loop_fps.append(n / (time.perf_counter() - t))
        loop_cpu.append((time.process_time() - c) / n)
        stages["loop"].append(stage_ms())
        assert n == len(frames), f"loop delivered {n} of {len(frames)} frames"
        print(
            f"  rep {rep}: model only {model_fps[-1]:.2f} fps ({model_cpu[-1] * 1e3:.0f} ms CPU/frame), "
            f"loop with sinks {loop_fps[-1]:.2f} fps ({loop_cpu[-1] * 1e3:.0f} ms CPU/frame)",
            flush=True,
        )
    pair = [lf / mf for lf, mf in zip(loop_fps, model_fps)]
    return {
        "frames": len(frames),
        "batch": batch,
        "reps": reps,
        "model_only_fps": [round(x, 3) for x in model_fps],
        "loop_fps": [round(x, 3) for x in loop_fps],
        "model_only_fps_median": round(float(np.median(model_fps)), 3),
        "loop_fps_median": round(float(np.median(loop_fps)), 3),
        "ratio_loop_to_model": round(float(np.median(pair)), 3),
        "ratio_per_rep": [round(x, 3) for x in pair],
        "cpu_ms_per_frame_model_only_median": round(float(np.median(model_cpu)) * 1e3, 2),
        "cpu_ms_per_frame_loop_median": round(float(np.median(loop_cpu)) * 1e3, 2),
        "predictor_ms_per_image": stages,
        "loop_includes": "decode thread, batching, inference+postprocess, JSONL, annotate, H.264 fMP4 encode",
        "how": (
            "each rep runs the model alone on the decoded frames, then the loop on the file; ratio = median over reps "
            "of loop fps / model fps of the same rep; CPU = process time (all threads) per frame"
        ),
    }


def live(model, seconds: float, batch: int) -> dict:
    from df2infer.stream import Pipeline

    port = free_port()
    srv = start_server(port, 30.0)
    ages = []
    try:
        pipe = Pipeline([f"http://127.0.0.1:{port}/"], model, batch=batch)
        t0 = time.monotonic()
        for r in pipe:
            ages.append(r.age_s)
            if time.monotonic() - t0 > seconds:
                break
        pipe.close()
        st = pipe.sources[0].stats
        s = pipe.summary()
    finally:
        srv.kill()
        srv.wait()
    warm = ages[3:]  # the first results include the model's first calls
    age = stats_ms(warm, (50, 99))
    return {
        "source": "MJPEG over HTTP, 320x240 at 30 fps",
        "seconds": seconds,
        "results": len(ages),
        "frames_read": st.frames,
        "frames_dropped": st.dropped,
        "dropped_fraction": round(st.dropped / max(st.frames, 1), 3),
        "output_fps": s["fps"],
        "age_s_p50": round(age["p50"] / 1e3, 4) if warm else float("nan"),
        "age_s_p99": round(age["p99"] / 1e3, 4) if warm else float("nan"),
        "age_s_max": round(max(warm), 4) if warm else None,
    }


def reconnect(model, repeats: int, down_s: float, max_delay_s: float) -> dict:
    from df2infer.stream import Pipeline, ReconnectPolicy

    port = free_port()
    srv = start_server(port, 30.0)
    policy = ReconnectPolicy(max_delay_s=max_delay_s)
    pipe = Pipeline([f"http://127.0.0.1:{port}/"], model, batch=1, policy=policy)
    times: list[tuple[int, float]] = []
    stop = threading.Event()

    def consume():
        for r in pipe:
            times.append((r.info.index, time.monotonic()))
            if stop.is_set():
                break

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    out = []
    try:
        while not times:
            time.sleep(0.05)
        for _ in range(repeats):
            srv.kill()
            srv.wait()
            time.sleep(down_s)
            srv = start_server(port, 30.0)
            t_restart = time.monotonic()
            n0 = len(times)
            end = t_restart + 60
            while time.monotonic() < end and not any(t > t_restart for _, t in times[n0:]):
                time.sleep(0.005)
            new = [t for _, t in times[n0:] if t > t_restart]
            out.append(round(new[0] - t_restart, 3) if new else None)
            print(f"  restart -> first new frame: {out[-1]} s", flush=True)
            time.sleep(1.0)
    finally:
        stop.set()
        pipe.stop()
        th.join(10)
        srv.kill()
        srv.wait()
    ok = [x for x in out if x is not None]
    return {
        "server_down_s": down_s,
        "policy": {
            "open_timeout_s": policy.open_timeout_s,
            "read_timeout_s": policy.read_timeout_s,
            "base_delay_s": policy.base_delay_s,
            "max_delay_s": policy.max_delay_s,
            "jitter": policy.jitter,
        },
        "restart_to_first_frame_s": out,
        "median_s": round(float(np.median(ok)), 3) if ok else None,
        "reconnects": pipe.sources[0].stats.reconnects,
        "note": "t0 = the restarted server accepts connections; includes the wait left in the backoff step in progress",
    }


def rss(model, clip: Path, seconds: float, batch: int, tmp: Path) -> dict:
    from df2infer.stream import Pipeline

    sinks = cli_sinks(tmp / "rss")
    pipe = Pipeline([str(clip)], model, batch=batch, loop=True, track=True)
    samples: list[tuple[float, float, int]] = []
    t0 = time.monotonic()
    last = -1e9
    n = 0
    for r in pipe:
        sinks.write(r)
        n += 1
        now = time.monotonic()
        if now - last >= 5:
            samples.append((round(now - t0, 1), round(rss_mb(), 1), n))
            last = now
        if now - t0 >= seconds:
            break
    pipe.close()
    sinks.close()
    samples.append((round(time.monotonic() - t0, 1), round(rss_mb(), 1), n))
    warm = [s for s in samples if s[0] >= 0.1 * seconds]
    base = warm[0][1] if warm else samples[0][1]
    end = samples[-1][1]
    return {
        "seconds": round(samples[-1][0], 1),
        "frames": n,
        "rss_mb_after_warmup": base,
        "rss_mb_end": end,
        "rss_mb_max": max(s[1] for s in samples),
        "growth_fraction": round((end - base) / base, 4),
        "warmup": "first 10% of the run",
        "samples_t_rss_frames": samples,
        "includes": "looping file, tracking, JSONL, annotate, H.264 fMP4 encode",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the bundled model")
    ap.add_argument("--frames", type=int, default=96, help="frames of the throughput clip (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5, help="A/B repetitions of the throughput comparison")
    ap.add_argument("--live-seconds", type=float, default=30.0)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--down", type=float, default=3.0, help="seconds the server stays down before each restart")
    ap.add_argument("--rss-duration", type=float, default=600.0, help="seconds of the looping-source memory run")
    ap.add_argument("--sections", default="throughput,live,reconnect,rss", help="which parts to run (default: all)")
    ap.add_argument("--out", default="benchmarks/results/video_loop.json")
    a = ap.parse_args()

    import cv2

    import df2infer
    from df2infer.bench.runner import machine_info
    from df2infer.stream import ReconnectPolicy
    from df2infer.synth.video import make_video

    model = df2infer.load(a.model, device="cpu")
    report: dict = {"machine": machine_info(), "model": repr(model), "command": "python benchmarks/video_loop.py " + " ".join(sys.argv[1:])}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        clip, _ = make_video(tmp / "clip", frames=a.frames, seed=1)  # 640x360, 30 fps
        cap = cv2.VideoCapture(str(clip))
        frames = []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(f)
        print(f"{model}; clip {clip.name}: {len(frames)} frames 640x360", flush=True)
        sections = set(a.sections.split(","))
        if "throughput" in sections:
            print("1. throughput (model only vs loop with sinks)", flush=True)
            report["throughput"] = throughput(model, clip, frames, a.batch, a.reps, tmp)
            print(json.dumps({k: v for k, v in report["throughput"].items() if "median" in k or "ratio" in k}), flush=True)
        if "live" in sections:
            print("2. live 30 fps source: frame age and drops", flush=True)
            report["live"] = live(model, a.live_seconds, a.batch)
            print(json.dumps(report["live"]), flush=True)
        if "reconnect" in sections:
            print("3. server restart -> first new frame (default policy, then --backoff-max 1)", flush=True)
            report["reconnect"] = reconnect(model, a.restarts, a.down, ReconnectPolicy().max_delay_s)
            report["reconnect_backoff_max_1s"] = reconnect(model, a.restarts, a.down, 1.0)
        if "rss" in sections:
            print(f"4. RSS over {a.rss_duration:.0f} s of a looping source", flush=True)
            report["rss"] = rss(model, clip, a.rss_duration, a.batch, tmp)
            print(json.dumps({k: v for k, v in report["rss"].items() if k != "samples_t_rss_frames"}), flush=True)
    report["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
