#!/usr/bin/env bash
# Gated heads (the bundled default.onnx) against a static-head export of the same checkpoint (the
# form TensorRT gets) and PyTorch eager, one run side by side, batch 1 and 4, 1280x720 scene.
# Usage: benchmarks/cpu_latency_gated_vs_static.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench_out/gated_vs_static}
mkdir -p "$OUT"
$PY -m df2infer export export/checkpoints/match_rcnn_small_synth.pt --out "$OUT/static" --max-detections 20 --heads static
$PY -m df2infer bench df2infer/models/default.onnx "$OUT/static/model.fp32.onnx" \
    --torch export/checkpoints/match_rcnn_small_synth.pt --batch 1,4 --warmup 10 --runs 50 \
    --size 1280x720 --out "$OUT"
