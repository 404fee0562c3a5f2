#!/usr/bin/env bash
# Side-by-side CPU latency, one run: bundled ONNX FP32 vs INT8 vs PyTorch eager of the same weights
# and input size, batch 1 and 4, on a 1280x720 synthetic scene with >= 5 garments. Per stage
# (preprocess / inference / postprocess / total) p50/p90/p99/mean/min/max and ratios.
# Usage: benchmarks/cpu_latency.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench_out/cpu_latency}
$PY -m df2infer bench df2infer/models/default.onnx df2infer/models/default.int8.onnx \
    --torch export/checkpoints/match_rcnn_small_synth.pt --batch 1,4 --warmup 10 --runs 50 \
    --size 1280x720 --out "$OUT"
