"""Held-out accuracy of the same ONNX files on ONNX Runtime and on OpenVINO (the CPU backends), with the runtime's
own postprocessing: the split of tests/test_heldout_accuracy.py (df2infer synth, seed 777, 600 images), conf 0.05.

    .venv/bin/python benchmarks/cpu_backends_accuracy.py [--models default.onnx,default.int8.onnx] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import df2infer
from df2infer.api import DEFAULT_MODEL
from df2infer.data import load_dataset
from df2infer.eval import evaluate_predictions
from df2infer.eval.predict import predict_results
from df2infer.synth.generator import generate

HELDOUT_SEED, HELDOUT_IMAGES = 777, 600


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=f"{DEFAULT_MODEL},{DEFAULT_MODEL.with_name('default.int8.onnx')}")
    ap.add_argument("--backends", default="onnxruntime,openvino")
    ap.add_argument("--data", help="an existing copy of the held-out split (else generated into a temporary folder)")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="cpu_backends_accuracy")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp) / "synth_val"
        if not args.data:
            generate(root, HELDOUT_IMAGES, HELDOUT_SEED, log=lambda *a, **k: None)
        ds = load_dataset(root)
        rows = {}
        for model in args.models.split(","):
            for backend in args.backends.split(","):
                t0 = time.perf_counter()
                p = df2infer.load(model, device="cpu", backend=backend)
                rep = evaluate_predictions(ds, predict_results(p, ds, conf=0.05), breakdown=False)
                key = f"{Path(model).name} [{backend}]"
                rows[key] = {
                    "box_AP": rep["box"]["overall"]["AP"],
                    "mask_AP": rep["mask"]["overall"]["AP"],
                    "landmarks_visible_AP": rep["landmarks_visible"]["overall"]["AP"],
                    "landmarks_all_AP": rep["landmarks_all"]["overall"]["AP"],
                    "retrieval_top1": rep["retrieval"]["top1"],
                    "retrieval_top10": rep["retrieval"]["top10"],
                    "retrieval_top20": rep["retrieval"]["top20"],
                    "seconds": round(time.perf_counter() - t0, 1),
                    "loadavg_1m_end": round(os.getloadavg()[0], 2),
                }
                print(key, json.dumps(rows[key]), flush=True)
                p.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(
        json.dumps(
            {
                "about": f"held-out synthetic split (seed {HELDOUT_SEED}, {HELDOUT_IMAGES} images), conf 0.05, runtime postprocessing",
                "command": "python benchmarks/cpu_backends_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "rows": rows,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
