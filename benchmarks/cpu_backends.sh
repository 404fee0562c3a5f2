#!/usr/bin/env bash
# The CPU table, one run: the bundled default.onnx (FP32) and default.int8.onnx (INT8) on ONNX Runtime and on
# OpenVINO, and PyTorch eager on the same checkpoint (FP32, torch.inference_mode, the runtime's own pre- and
# postprocessing), at batch 1 and 4 on the 1280x720 synthetic scene, interleaved in blocks (df2infer bench).
# Every subject gets the same thread count (--threads, default 2 = this machine's cores). The header records the
# CPU's features, the thread settings, the load average at start and end, and the CPU backend rule.
# Usage: benchmarks/cpu_backends.sh [OUT_DIR]      (results: benchmarks/results/cpu_backends.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench_out/cpu_backends}
THREADS=${THREADS:-2}
uptime
$PY -m df2infer bench df2infer/models/default.onnx df2infer/models/default.int8.onnx --backends onnxruntime,openvino \
    --torch export/checkpoints/match_rcnn_small_synth.pt --threads "$THREADS" \
    --batch 1,4 --warmup ${WARMUP:-10} --runs ${RUNS:-50} --size 1280x720 --out "$OUT"
uptime
