"""`df2infer video` on a TensorRT engine, end to end on the strict stand-ins (tests/strict_gpu.py).

The engine is built by the real builder (df2infer.engine.builder.build_engine, on the fake TensorRT)
from a static-head export of the bundled checkpoint at a small input size; the fake engine computes that ONNX
graph with ONNX Runtime on the CPU, so the detections are the model's. The CLI runs as a subprocess with its
reader, inference and sink threads, on the GPU path (letterbox and decode kernels through the CPU shim, device
buffers, streams), and its JSONL must equal the CPU path's (`--device cpu`, ONNX Runtime, the same ONNX file).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed (make setup installs it)")

import strict_gpu as sg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine(static_onnx, shim_dir, tmp_path_factory) -> Path:
    from df2infer.engine.builder import build_engine

    with pytest.MonkeyPatch.context() as mp:
        gpu = sg.install(mp, sg.SimGpu(shim_dir=shim_dir, devices=[sg.Device(0, name="Orin")]))
        path = build_engine(static_onnx, tmp_path_factory.mktemp("engine") / "model.engine", max_batch=4)
        del gpu
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from df2infer.synth.video import make_video

    path, _ = make_video(tmp_path_factory.mktemp("clip"), frames=12, size=(320, 180))
    return path


def gpu_env(tmp_path: Path, shim_dir: Path, seed: int = 11) -> tuple[dict, Path]:
    report = tmp_path / "report.json"
    config = {"devices": [{"index": 0, "name": "Orin"}], "report": str(report), "shim_dir": str(shim_dir), "seed": seed}
    env = sg.subprocess_env(config)
    env["DF2INFER_KERNEL_CACHE"] = str(tmp_path / "kernels")
    return env, report


def video_cmd(source: Path, model: Path, out: Path, device: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "df2infer", "video", str(source), "--model", str(model), "--device", device, "--track"]
    return cmd + ["--out", str(out), "--summary-every", "0", "--no-progress", "--batch", "2", *extra]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]


def assert_same_records(got: list[dict], ref: list[dict]) -> int:
    """Frame by frame: the same items (labels, track ids) at the same boxes; scores within 1e-4. The letterbox and
    decode kernels are exact against the CPU path (tests/test_gpu_pipeline.py), so the graph sees the same input."""
    assert [r["frame_index"] for r in got] == [r["frame_index"] for r in ref]
    n = 0
    for g, r in zip(got, ref):
        gi, ri = g["items"], r["items"]
        assert len(gi) == len(ri), (g["frame_index"], len(gi), len(ri))
        for a, b in zip(gi, ri):
            assert a["category_id"] == b["category_id"] and a.get("track_id") == b.get("track_id"), (a, b)
            assert np.allclose(a["box"], b["box"], atol=0.011), (a["box"], b["box"])  # JSONL rounds to 0.01 px
            assert abs(a["score"] - b["score"]) <= 1e-4, (a["score"], b["score"])
        n += len(ri)
    return n


def test_video_on_an_engine_equals_the_cpu_path(tmp_path, engine, static_onnx, clip, shim_dir):
    env, report = gpu_env(tmp_path, shim_dir)
    cmd = video_cmd(clip, engine, tmp_path / "gpu", "cuda:0")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cpu = subprocess.run(video_cmd(clip, static_onnx, tmp_path / "cpu", "cpu"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert cpu.returncode == 0, cpu.stderr[-3000:]
    got, ref = records(tmp_path / "gpu"), records(tmp_path / "cpu")
    assert len(ref) == 12
    n = assert_same_records(got, ref)
    assert n >= 12, f"only {n} detections over 12 frames: the comparison would be vacuous"
    rep = json.loads(report.read_text())
    assert rep["live"] == {} and not rep["errors"] and not rep["trt_errors"], rep
    assert rep["engine_runs"] == 6  # 12 frames in batches of 2: the engine ran, not the CPU
    assert "letterbox_kernel" in rep["launches"], rep["launches"]
    videos = sorted((tmp_path / "gpu").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_sigint_mid_run_leaks_nothing_and_does_not_hang(tmp_path, engine, clip, shim_dir):
    env, report = gpu_env(tmp_path, shim_dir, seed=5)
    out = tmp_path / "gpu"
    cmd = video_cmd(clip, engine, out, "cuda:0", "--loop")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jl = out / "detections.jsonl"
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:  # running: past the first loop of the clip
            if jl.exists() and sum(1 for x in jl.read_text().splitlines() if x.endswith("}")) >= 16:
                break
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)  # no hang: it stops on its own
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    rep = json.loads(report.read_text())
    assert rep["live"] == {}, rep  # every device/pinned allocation, stream, event, module freed
    assert not rep["trt_errors"], rep
    n = len(records(out))
    assert rep["engine_runs"] * 2 >= n >= 16


def test_predict_from_two_threads_on_one_predictor_is_safe(strict_gpu, engine, clip):
    """One Predictor (one engine, one set of staging buffers, one stream) called from two threads: the calls are
    serialized, so each thread gets exactly what it gets alone."""
    import cv2

    import df2infer

    strict_gpu(devices=[sg.Device(0, name="Orin")], seed=3)
    cap = cv2.VideoCapture(str(clip))
    frames = [cap.read()[1] for _ in range(6)]
    cap.release()
    with df2infer.load(engine, device="cuda:0") as p:
        alone = [p.predict(f, conf=0.3)[0] for f in frames]
        results: dict[int, list] = {0: [], 1: []}
        errors: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                for _ in range(3):
                    for i in range(k, len(frames), 2):
                        results[k].append((i, p.predict(frames[i], conf=0.3)[0]))
            except BaseException as e:  # noqa: BLE001 - reported by the test below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        assert sum(len(v) for v in results.values()) == 18
        for k in (0, 1):
            for i, got in results[k]:
                assert np.array_equal(got.boxes, alone[i].boxes) and np.array_equal(got.scores, alone[i].scores), i
        assert sum(len(a.boxes) for a in alone) > 0
