#!/usr/bin/env bash
# Retrieval on the held-out synthetic split (df2infer synth --images 600 --seed 777, as accuracy.sh)
# through `df2infer index build` + `df2infer search`, against `df2infer eval --model` (the evaluator's
# own path) and the figures in benchmarks/results/heldout_accuracy.json.
# Usage: benchmarks/retrieval_heldout.sh [OUT_DIR]     (about 5 minutes on 2 CPU cores)
# SUMMARY_ONLY=1 re-writes the summary from an earlier run's outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench_out/retrieval_heldout}
VAL=${VAL:-data/synth_val}
MODEL=${MODEL:-df2infer/models/default.onnx}
if [ -z "${SUMMARY_ONLY:-}" ]; then
    [ -d "$VAL/annos" ] || $PY -m df2infer synth --out "$VAL" --images 600 --seed 777 --video-frames 0
    rm -rf "$OUT"; mkdir -p "$OUT"
    $PY -m df2infer index build "$VAL" --out "$OUT/gallery" --model "$MODEL" --no-progress | tee "$OUT/index.txt"
    $PY -m df2infer search "$VAL" --gallery "$OUT/gallery" --topk 20 --out "$OUT/search" --draw 5 | tee "$OUT/search.txt"
    $PY -m df2infer eval "$VAL" --model "$MODEL" --json "$OUT/eval.json" --write-results "$OUT/eval_results" \
        --no-breakdown | tee "$OUT/eval.txt"
fi
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
via_search = json.loads((out / "search/retrieval.json").read_text())
via_eval = json.loads((out / "eval_results/retrieval.json").read_text())
rep_search = json.loads((out / "search/retrieval_report.json").read_text())
rep_eval = json.loads((out / "eval.json").read_text())["retrieval"]
ref = json.loads(Path("benchmarks/results/heldout_accuracy.json").read_text())["rows"]["runtime default.onnx (bundled fp32)"]
g = json.loads((out / "gallery/gallery.json").read_text())
summary = {
    "about": "Held-out synthetic split (df2infer synth --images 600 --seed 777), bundled default.onnx: retrieval "
             "through df2infer index build + df2infer search vs df2infer eval --model (same run) and "
             "heldout_accuracy.json. Command: benchmarks/retrieval_heldout.sh",
    "gallery_items": g["items"], "gallery_images": g["images"], "query_entries": len(via_search),
    "entries_identical_to_eval": via_search == via_eval,
    "index_search": {k: rep_search[k] for k in ("top1", "top5", "top10", "top15", "top20", "num_queries", "num_queries_detected")},
    "eval_same_run": {k: rep_eval[k] for k in ("top1", "top5", "top10", "top15", "top20")},
    "heldout_accuracy_json": {k: ref[f"retrieval_{k}"] for k in ("top1", "top10", "top20")},
}
summary["equal_to_heldout_accuracy_json"] = all(summary["index_search"][k] == v for k, v in summary["heldout_accuracy_json"].items())
Path("benchmarks/results").mkdir(exist_ok=True)
Path("benchmarks/results/retrieval_heldout.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary, indent=1))
PY
