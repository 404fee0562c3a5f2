"""df2infer bench, eval --model and demo, on the fake contract-conforming ONNX model."""

from __future__ import annotations

import json
import math
import shutil

import df2_folder
import fake_model as fm
import numpy as np
import pytest

import df2infer
import df2infer.api  # the tests patch its DEFAULT_MODEL
from df2infer.apps.main import main
from df2infer.data.annotations import load_dataset
from df2infer.eval import evaluate_predictions, validate_results
from df2infer.eval.predict import predict_results


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return fm.build(tmp_path_factory.mktemp("model") / "fake.onnx")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return df2_folder.make_folder(tmp_path_factory.mktemp("df2"))


# ---------------------------------------------------------------- bench


def test_bench_two_artifacts(model_path, tmp_path, capsys):
    second = tmp_path / "fake_copy.onnx"
    shutil.copy(model_path, second)
    out = tmp_path / "bench"
    rc = main(
        [
            "bench",
            str(model_path),
            str(second),
            "--synthetic",
            "--size",
            "320x240",
            "--batch",
            "1,2",
            "--warmup",
            "3",
            "--runs",
            "5",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| artifact | batch |" in printed and "p99" in printed
    rep = json.loads((out / "bench.json").read_text())
    assert (out / "bench.md").read_text().startswith("# df2infer bench")
    try:
        import matplotlib  # noqa: F401

        assert (out / "bench.png").stat().st_size > 0
    except ImportError:
        assert any("plot skipped" in n for n in rep["notes"])
    assert rep["machine"]["onnxruntime"] and rep["machine"]["cpu_count"]
    assert any("p99 is not meaningful" in n for n in rep["notes"])  # 5 runs < 30
    rows = rep["results"]
    assert [(r["name"], r["batch"]) for r in rows] == [("fake.onnx", 1), ("fake_copy.onnx", 1), ("fake.onnx", 2), ("fake_copy.onnx", 2)]
    for r in rows:
        assert r["runs"] == 5 and r["warmup"] == 3
        assert set(r["stages"]) == {"read", "preprocess", "inference", "postprocess", "total"}
        for st, v in r["stages"].items():
            assert all(math.isfinite(v[k]) and v[k] >= 0 for k in ("p50", "p90", "p99", "mean", "min", "max")), st
            assert v["min"] <= v["p50"] <= v["p90"] <= v["p99"] <= v["max"], (st, v)
            assert v["min"] <= v["mean"] <= v["max"]
        parts = sum(r["stages"][s]["min"] for s in ("preprocess", "inference", "postprocess"))
        assert parts <= r["stages"]["total"]["max"] + 1e-6
        assert r["throughput_ips"] > 0 and r["detections"] == 3 * r["batch"]  # fake: scores .95 .8 .5 >= conf .3
        assert r["speedup_p50"] > 0 and r["throughput_ratio"] > 0
    assert rows[0]["speedup_p50"] == pytest.approx(1.0) and rows[2]["throughput_ratio"] == pytest.approx(1.0)


def test_bench_no_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(df2infer.api, "DEFAULT_MODEL", tmp_path / "models" / "default.onnx")
    assert main(["bench", "--out", str(tmp_path / "b")]) == 2
    assert "make bundle" in capsys.readouterr().err


def test_bench_images_folder_and_accuracy(model_path, tiny_data, tmp_path):
    out = tmp_path / "bench"
    rc = main(
        [
            "bench",
            str(model_path),
            "--images",
            str(tiny_data / "image"),
            "--batch",
            "1",
            "--warmup",
            "1",
            "--runs",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-plot",
            "--accuracy",
            str(tiny_data),
            "--accuracy-images",
            "4",
        ]
    )
    assert rc == 0
    rep = json.loads((out / "bench.json").read_text())
    acc = rep["accuracy"]["by_subject"]["fake.onnx"]
    assert acc["box_AP"] is not None and math.isfinite(acc["box_AP"])
    assert "retrieval_top1" in acc
    assert not (out / "bench.png").exists()


# ---------------------------------------------------------------- eval --model


def test_predict_results_formats(model_path, tiny_data):
    pred = df2infer.load(model_path, device="cpu")
    ds = load_dataset(tiny_data)
    res = predict_results(pred, ds, conf=0.05)
    assert set(res) == {"bbox", "segm", "keys", "retrieval"}
    ids = {a.image_id for a in ds.images}
    for kind, entries in res.items():
        assert validate_results(kind, entries, image_ids=ids) == [], kind
    assert len(res["bbox"]) == 4 * len(ds)  # fake: 4 detections >= 0.05 per image
    users = [a for a in ds.images if a.source == "user"]
    assert len(res["retrieval"]) == 4 * len(users)
    for e in res["retrieval"]:
        assert 0 < len(e["gallery_image_id"]) <= 20
        assert {a.source for a in ds.images if a.image_id in e["gallery_image_id"]} == {"shop"}
    report = evaluate_predictions(ds, res, breakdown=False)
    assert math.isfinite(report["box"]["overall"]["AP"])


def test_eval_model_cli(model_path, tiny_data, tmp_path, capsys):
    rj = tmp_path / "report.json"
    rc = main(
        [
            "eval",
            str(tiny_data),
            "--model",
            str(model_path),
            "--device",
            "cpu",
            "--conf",
            "0.05",
            "--batch",
            "2",
            "--max-images",
            "6",
            "--json",
            str(rj),
            "--write-results",
            str(tmp_path / "res"),
            "--no-breakdown",
        ]
    )
    assert rc == 0
    assert "detection (box)" in capsys.readouterr().out
    rep = json.loads(rj.read_text())
    assert rep["num_images"] == 6
    for m in ("box", "mask", "landmarks_visible", "landmarks_all"):
        ap = rep[m]["overall"]["AP"]
        assert ap is None or math.isfinite(ap)
    assert math.isfinite(rep["box"]["overall"]["AP"])
    assert rep["retrieval"]["num_queries"] > 0
    assert {p.name for p in (tmp_path / "res").iterdir()} == {"bbox.json", "segm.json", "keys.json", "retrieval.json"}


def test_eval_model_missing(tiny_data, tmp_path, capsys):
    assert main(["eval", str(tiny_data), "--model", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx" in capsys.readouterr().err


# ---------------------------------------------------------------- demo


def test_demo_missing_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(df2infer.api, "DEFAULT_MODEL", tmp_path / "models" / "default.onnx")
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and df2infer.api.MAKE_DEFAULT_MODEL in err
    assert not (tmp_path / "demo").exists()  # nothing generated before the model check


def test_demo_end_to_end(model_path, tmp_path, capsys):
    model = tmp_path / "copied" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(model_path, model)
    out = tmp_path / "demo"
    rc = main(
        [
            "demo",
            "--out",
            str(out),
            "--model",
            str(model),
            "--device",
            "cpu",
            "--images",
            "6",
            "--video-frames",
            "4",
            "--runs",
            "3",
            "--warmup",
            "1",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Outputs in" in printed and "latency" in printed
    lines = (out / "detections.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(x)["items"] for x in lines)
    assert len(list((out / "annotated").glob("*.jpg"))) == 6
    assert (out / "annotated" / "video.mp4").stat().st_size > 0
    assert [json.loads(x)["frame_index"] for x in (out / "annotated" / "video.jsonl").read_text().splitlines()] == [0, 1, 2, 3]
    assert (out / "retrieval.jpg").stat().st_size > 0
    info = json.loads((out / "retrieval.json").read_text())
    assert 1 <= len(info["top"]) <= 5
    rep = json.loads((out / "bench" / "bench.json").read_text())
    assert rep["results"][0]["batch"] == 1 and rep["results"][0]["runs"] == 3
    # a second run reuses the generated data
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--model",
                str(model),
                "--device",
                "cpu",
                "--images",
                "6",
                "--video-frames",
                "4",
                "--runs",
                "1",
                "--warmup",
                "0",
            ]
        )
        == 0
    )
    assert "generating" not in capsys.readouterr().out


def test_bench_measures_in_blocks_after_an_untimed_switch_call():
    """Each subject runs `block` timed calls in a row, each block after one untimed call; blocks go
    round-robin with the first subject rotating, and the timed samples are the calls asked for."""
    from df2infer.bench.runner import Subject, measure

    log: list[tuple[str, int]] = []

    class Counting(Subject):
        def timed(self, images, conf):
            log.append((self.name, len(log)))
            return {"read": 0.0, "preprocess": 0.0, "inference": 0.001, "postprocess": 0.0, "total": 0.001}, 1

    subs = [Counting(name=n, kind="fake", path=n, precision="fp32", predictor=None) for n in ("a", "b")]
    rows = measure(subs, [np.zeros((8, 8, 3), np.uint8)], [1], warmup=1, runs=5, block=2, log=None)
    names = "".join(n for n, _ in log)
    # warm-up a b; round 0: a (1 untimed + 2), b (1 + 2); round 1 rotated: b, a; round 2: a (1 + 1), b (1 + 1)
    assert names == "ab" + "aaabbb" + "bbbaaa" + "aabb"
    assert all(r["runs"] == 5 and r["block"] == 2 for r in rows)
    with pytest.raises(ValueError, match="block"):
        measure(subs, [np.zeros((8, 8, 3), np.uint8)], [1], runs=2, block=0, log=None)
