"""Where ONNX Runtime's CPU time goes, per op type, for the bundled FP32 and INT8 graphs at batch 1 (the bench's
1280x720 synthetic scene letterboxed, min_head_score 0.3 as the Predictor feeds at conf 0.3), 2 intra-op threads,
ORT_ENABLE_ALL, spinning off (the runtime's settings). Graph only: no pre- or postprocessing. Every run after
session creation is profiled (5 warm-up + RUNS), and the kernel times are averaged over all of them.

    .venv/bin/python benchmarks/cpu_profile_ops.py [RUNS]     (writes benchmarks/results/cpu_profile_ops.json)
"""

import collections
import json
import os
import sys
import tempfile
import time

import onnxruntime as ort

from df2infer.artifact import read_onnx_contract
from df2infer.backends.onnxruntime_backend import OnnxRuntimeBackend
from df2infer.bench.runner import synthetic_scene
from df2infer.cpu_features import cpu_features
from df2infer.ops.letterbox import to_input_batch

WARMUP = 5
MIN_HEAD_SCORE = 0.3  # what the Predictor feeds at conf 0.3


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    img, _ = synthetic_scene()
    out: dict = {"machine": {"cpu": cpu_features().summary(), "onnxruntime": ort.__version__, "loadavg_1m_start": os.getloadavg()[0]}}
    for name in ("default.onnx", "default.int8.onnx"):
        path = f"df2infer/models/{name}"
        x, _ = to_input_batch([img], read_onnx_contract(path))
        so = ort.SessionOptions()  # the backend sets the optimization level and threads on it
        so.enable_profiling = True
        so.profile_file_prefix = tempfile.mkdtemp() + "/profile"
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # the backend's default, off with our options
        backend = OnnxRuntimeBackend(path, "cpu", threads=2, session_options=so)
        for _ in range(WARMUP):
            backend.run(x, MIN_HEAD_SCORE)
        t0 = time.perf_counter()
        for _ in range(runs):
            backend.run(x, MIN_HEAD_SCORE)
        wall = (time.perf_counter() - t0) / runs * 1e3
        events = json.load(open(backend.session.end_profiling()))
        by_op: collections.Counter = collections.Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                by_op[e["args"]["op_name"]] += e["dur"] / (WARMUP + runs) / 1e3
        kernels = sum(by_op.values())
        out[name] = {"wall_ms_per_run_profiled": wall, "kernel_ms_per_run": kernels, "by_op_ms": dict(by_op.most_common())}
        print(f"{name}: wall {wall:.1f} ms/run (profiling on), kernels {kernels:.1f} ms")
        for op, ms in by_op.most_common(14):
            print(f"   {op:28s} {ms:7.2f} ms  {100 * ms / kernels:5.1f}%")
    out["machine"]["loadavg_1m_end"] = os.getloadavg()[0]
    out["machine"]["runs"] = runs
    with open("benchmarks/results/cpu_profile_ops.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
