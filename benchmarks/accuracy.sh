#!/usr/bin/env bash
# Accuracy of every path of the same weights on the held-out synthetic split (seed 777, never
# used in training): PyTorch eager, the deploy module, ONNX Runtime FP32 / FP16 / INT8 (through
# export/ result code), then the runtime itself (df2infer eval --model, its own postprocessing) on ONNX Runtime;
# the same files on OpenVINO: benchmarks/cpu_backends_accuracy.py.
# Usage: benchmarks/accuracy.sh [OUT_DIR]      (about 10-20 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench_out/accuracy}
VAL=${VAL:-data/synth_val}
mkdir -p "$OUT"
[ -d "$VAL/annos" ] || $PY -m df2infer synth --out "$VAL" --images 600 --seed 777 --video-frames 0
$PY -m df2infer_export.parity_eval --checkpoint export/checkpoints/match_rcnn_small_synth.pt --data "$VAL" --max-detections 20 \
    --json "$OUT/parity.json" | tee "$OUT/parity.txt"
for m in df2infer/models/default.onnx df2infer/models/default.int8.onnx; do
    $PY -m df2infer eval "$VAL" --model "$m" --backend onnxruntime --json "$OUT/runtime_$(basename "$m" .onnx).json" \
        | tee "$OUT/runtime_$(basename "$m" .onnx).txt"
done
