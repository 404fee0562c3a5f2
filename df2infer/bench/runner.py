"""Measurement: per-stage latency of several artifacts, interleaved, after warm-up.

What is timed (docs/design.md, "Lessons": the alternatives time inference only, report no percentiles, or time the
last frame only):
- every call times the whole `predict` (read/check of the arrays, letterbox + pack, backend run,
  postprocess to Detections with pasted masks and decoded landmarks): `total` is the wall time of
  that call, the stages come from the Predictor's own StageTimings for that call;
- every run is kept (no "last frame"), and each stage is reported as p50 / p90 / p99 / mean / min /
  max over all runs;
- all artifacts are measured in one process, interleaved in blocks: each runs `block` consecutive
  timed calls (default 10), the blocks go round-robin and the order rotates every round, so machine
  noise (another job, thermal state) hits them all alike. Each block starts with one untimed call:
  right after another framework ran, the first call pays for that framework's lingering worker
  threads (OpenMP spin-wait) and evicted caches (measured here: ONNX Runtime 17.2 ms p50 when
  interleaved call by call with PyTorch, 15.6 ms alone), a cost a deployed runtime does not pay;
- device work is finished before a clock is read: ONNX Runtime's CPU run() is synchronous, its CUDA
  path copies outputs to the host (which waits for the device), TensorRTBackend.run() synchronizes
  its stream before returning host arrays, and the PyTorch comparison calls torch.cuda.synchronize()
  on a GPU.

The PyTorch eager comparison (`df2infer bench --torch`, built in df2infer/apps/bench.py: the runtime never
imports torch) runs the same weights at the checkpoint's input size as an ordinary df2infer Predictor over
df2infer_export.torch_backend.TorchBackend:
read, preprocess and postprocess are the runtime's own code; inference = backend.run = model forward
(which includes what the ONNX graph does in-graph: normalization, RPN, NMS, heads, gathers) plus
the device->host copies into the contract's padded arrays, like the other backends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.artifact import is_engine_path
from df2infer.images import IMAGE_SUFFIXES, list_images, read_image
from df2infer.latency import stats_ms

STAGES = ("read", "preprocess", "inference", "postprocess", "total")
STATS = ("p50", "p90", "p99", "mean", "min", "max")


# ---------------------------------------------------------------- test images


def synthetic_scene(size: tuple[int, int] = (1280, 720), seed: int = 0, min_items: int = 5) -> tuple[np.ndarray, int]:
    """A fixed (seeded) consumer-style scene of size (w, h) with three people side by side and at
    least `min_items` annotated garments. Returns (BGR uint8 image, number of garments)."""
    from df2infer.synth import generator, scene

    w, h = int(size[0]), int(size[1])
    best: tuple[np.ndarray, int] | None = None
    for attempt in range(30):
        rng = np.random.default_rng([seed, 7, attempt])
        bg = scene.user_background(w, h, rng)
        layers = []
        people = 3 if w >= h else 2
        for k in range(people):
            cid = int(rng.integers(1, 14))
            outfit = generator.fill_outfit([dict(generator.random_product(cid, rng), style=1)], rng)
            b = generator.outfit_bounds(outfit)
            cx = w * (k + 0.5) / people
            H = scene.placement(b, w, h, rng, frac=float(rng.uniform(0.7, 0.9)), center=(cx, h * 0.5))
            layers += generator.body_layers(outfit, H, generator.random_skin(rng), rng)
            layers += generator.outfit_layers(outfit, H, rng)
        img, anns = scene.render(bg, layers)
        if best is None or len(anns) > best[1]:
            best = (img, len(anns))
        if len(anns) >= min_items:
            break
    assert best is not None
    return np.ascontiguousarray(best[0]), best[1]


def folder_images(folder: str | os.PathLike, limit: int = 16) -> list[np.ndarray]:
    """Up to `limit` images of a folder (sorted by name), decoded once, BGR uint8."""
    files = list_images(folder)[:limit]
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return [read_image(p) for p in files]


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720) (width x height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"size {text!r}: width and height must be positive")
    return w, h


# ---------------------------------------------------------------- subjects


@dataclass
class Subject:
    """One thing being timed: a df2infer Predictor (ONNX Runtime / TensorRT) or the PyTorch model."""

    name: str
    kind: str  # "onnxruntime", "tensorrt", "torch"
    path: str
    precision: str
    predictor: Any  # has .stream(...), .similarity, and (runtime) .timings
    info: dict = field(default_factory=dict)
    max_batch: int = 8

    def timed(self, images: list[np.ndarray], conf: float) -> tuple[dict[str, float], int]:
        """Run one batch; returns ({stage: seconds}, number of detections)."""
        p = self.predictor
        p.timings.reset()
        t0 = time.perf_counter()
        dets = list(p.stream(images, conf=conf, batch_size=len(images)))
        total = time.perf_counter() - t0
        out = {s: float(sum(p.timings.samples[s])) for s in STAGES[:-1] if s in p.timings.samples}
        out["total"] = total
        return out, sum(len(d) for d in dets)


def runtime_subject(path: str | os.PathLike, name: str, device: str = "auto", threads: int = 0) -> Subject:
    import df2infer

    kw = {"threads": threads} if threads and not is_engine_path(path) else {}
    return subject_from_predictor(df2infer.load(path, device=device, **kw), name, path)


def subject_from_predictor(pred: Any, name: str, path: str | os.PathLike) -> Subject:
    """A Subject for an already loaded df2infer Predictor."""
    be = pred.backend
    info = {
        "backend": be.name,
        "device": be.device,
        "input": f"{pred.contract.input_width}x{pred.contract.input_height}",
        "max_batch": be.max_batch,
        "contract_model": pred.contract.model,
    }
    if hasattr(be, "providers"):
        info["providers"] = list(be.providers)
    if hasattr(be, "session"):
        so = be.session.get_session_options()
        info["intra_op_threads"] = int(so.intra_op_num_threads)
        info["sync"] = "ONNX Runtime run() returns host arrays (CPU: synchronous; CUDA: outputs copied to host)"
    else:
        info["sync"] = "TensorRTBackend.run() synchronizes its CUDA stream before returning host arrays"
    return Subject(
        name=name, kind=be.name, path=os.fspath(path), precision=pred.contract.precision, predictor=pred, info=info, max_batch=be.max_batch
    )


# ---------------------------------------------------------------- measuring


def measure(
    subjects: list[Subject],
    images: list[np.ndarray],
    batches: Iterable[int],
    *,
    warmup: int = 10,
    runs: int = 50,
    conf: float = 0.3,
    block: int = 10,
    log: Callable[[str], None] | None = print,
) -> list[dict]:
    """Time every subject at every batch size, interleaved in blocks of `block` timed calls (each
    block after one untimed call, see the module doc). Returns one row per (batch, subject):
    {name, kind, precision, batch, runs, stages: {stage: {p50, p90, p99, mean, min, max} (ms per
    call)}, per_image_ms (p50 total / batch), throughput_ips (images/s = batch / mean total),
    detections (per call, last run), speedup_p50 / throughput_ratio (vs the first subject)}."""
    rows: list[dict] = []
    n = len(subjects)
    for bs in batches:
        batch = [images[i % len(images)] for i in range(bs)]
        for s in subjects:
            if bs > s.max_batch and log:
                log(f"note: batch {bs} > {s.name}'s max_batch {s.max_batch}: it runs as several backend calls")
        t0 = time.perf_counter()
        for _ in range(warmup):
            for s in subjects:
                s.timed(batch, conf)
        samples: dict[str, dict[str, list[float]]] = {s.name: {st: [] for st in STAGES} for s in subjects}
        dets: dict[str, int] = {}
        if block < 1:
            raise ValueError(f"block = {block}: expected at least 1 timed call per block")
        done, rnd = 0, 0
        while done < runs:
            size = min(block, runs - done)
            k = rnd % n
            for s in subjects[k:] + subjects[:k]:  # round robin, rotating who goes first
                s.timed(batch, conf)  # untimed: absorbs the switch from the previous subject
                for _ in range(size):
                    t, nd = s.timed(batch, conf)
                    for st in STAGES:
                        samples[s.name][st].append(t.get(st, 0.0))
                    dets[s.name] = nd
            done += size
            rnd += 1
        if log:
            log(f"batch {bs}: {warmup} warm-up + {runs} timed runs (blocks of {block}) x {n} artifacts in {time.perf_counter() - t0:.1f} s")
        first: dict[str, Any] | None = None
        for s in subjects:
            sst = {k: stats_ms(v) for k, v in samples[s.name].items()}
            total_mean_s = sst["total"]["mean"] / 1e3
            row: dict[str, Any] = {
                "name": s.name,
                "kind": s.kind,
                "precision": s.precision,
                "path": s.path,
                "batch": bs,
                "runs": runs,
                "warmup": warmup,
                "block": block,
                "stages": sst,
                "per_image_ms": sst["total"]["p50"] / bs,
                "throughput_ips": bs / total_mean_s if total_mean_s > 0 else float("inf"),
                "detections": dets.get(s.name, 0),
            }
            if first is None:
                first = row
            row["speedup_p50"] = first["stages"]["total"]["p50"] / sst["total"]["p50"] if sst["total"]["p50"] > 0 else None
            row["throughput_ratio"] = row["throughput_ips"] / first["throughput_ips"] if first["throughput_ips"] else None
            rows.append(row)
    return rows


# ---------------------------------------------------------------- machine


def machine_info() -> dict:
    import platform

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu"] = cpu
    from df2infer.cpu_features import cpu_features

    info["cpu_features"] = cpu_features().summary()  # INT8 speed and exactness depend on them
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]

        info["onnxruntime"] = ort.__version__
        info["ort_available_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    import cv2

    info["numpy"] = np.__version__
    info["opencv"] = cv2.__version__
    info["opencv_threads"] = cv2.getNumThreads()
    return info


__all__ = [
    "STAGES",
    "STATS",
    "Subject",
    "folder_images",
    "machine_info",
    "measure",
    "parse_size",
    "runtime_subject",
    "stats_ms",
    "subject_from_predictor",
    "synthetic_scene",
]
