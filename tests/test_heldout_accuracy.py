"""`df2infer eval` through the runtime on the held-out synthetic split reproduces the accuracy the
export measured (benchmarks/results/heldout_accuracy.json, written by df2infer_export.parity_eval) within
0.5 AP points. The split is regenerated here (seed 777, 600 images: never used in training), so
this runs the whole path a user runs: generator -> runtime -> evaluator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import df2infer
from df2infer.data import load_dataset
from df2infer.eval import evaluate_predictions
from df2infer.eval.predict import predict_results, summarize
from df2infer.synth.generator import generate

pytestmark = pytest.mark.slow

REFERENCE = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "heldout_accuracy.json"
HELDOUT_SEED, HELDOUT_IMAGES = 777, 600
TOLERANCE = 0.005  # 0.5 AP points


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_val")
    generate(root, HELDOUT_IMAGES, HELDOUT_SEED, log=lambda *a, **k: None)
    return load_dataset(root)


def test_runtime_eval_reproduces_export_accuracy(heldout):
    ref = json.loads(REFERENCE.read_text())["rows"]["ort-fp32"]
    predictor = df2infer.load(device="cpu")
    results = predict_results(predictor, heldout, conf=0.05)
    report = evaluate_predictions(heldout, results, breakdown=False)
    got = summarize(report)
    for key in ("box_AP", "mask_AP", "landmarks_visible_AP", "landmarks_all_AP", "retrieval_top10"):
        value = got[key]
        assert abs(value - ref[key]) <= TOLERANCE, f"{key}: runtime {value:.4f}, export reference {ref[key]:.4f}"
