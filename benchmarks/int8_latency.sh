#!/usr/bin/env bash
# INT8 against FP32 end to end, one run, side by side: the bundled default.onnx and default.int8.onnx
# at batch 1 and 4 on the 1280x720 synthetic scene (same settings as cpu_latency.sh, without PyTorch).
# The header names the CPU's INT8-relevant features (AVX2 / AVX-512 / VNNI; ARM dotprod / i8mm).
# Usage: benchmarks/int8_latency.sh [OUT_DIR]     (results of one run: benchmarks/results/int8_latency.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench_out/int8_latency}
$PY -m df2infer bench df2infer/models/default.onnx df2infer/models/default.int8.onnx \
    --batch 1,4 --warmup 10 --runs 50 --size 1280x720 --out "$OUT"
