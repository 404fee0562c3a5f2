"""Evaluator: ground truth scores 1.0, perturbations score lower, result files read and validate."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from df2_folder import make_folder

from df2infer.apps.main import main
from df2infer.data import load_dataset
from df2infer.eval import (
    KINDS,
    ResultFormatError,
    evaluate_predictions,
    ground_truth_as_results,
    read_results,
    read_results_dir,
    validate_results,
    write_results,
)
from df2infer.eval.api import polygons_to_rle
from df2infer.ops.boxes import box_iou

FIXTURES = Path(__file__).parent / "fixtures"
METRICS = ("box", "mask", "landmarks_visible", "landmarks_all")


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset(make_folder(tmp_path_factory.mktemp("df2") / "df2"))


@pytest.fixture(scope="module")
def gt_results(ds):
    return ground_truth_as_results(ds)


@pytest.fixture(scope="module")
def perfect(ds, gt_results):
    return evaluate_predictions(ds, gt_results)


def test_ground_truth_scores_one(perfect):
    for m in METRICS:
        o = perfect[m]["overall"]
        assert o["AP"] == pytest.approx(1.0) and o["AP50"] == pytest.approx(1.0) and o["AP75"] == pytest.approx(1.0), m
    r = perfect["retrieval"]
    assert r["num_queries"] == 6
    for k in (1, 5, 10, 15, 20):
        assert r[f"top{k}"] == 1.0


def test_breakdown_by_attribute(perfect):
    for m in METRICS:
        ba = perfect[m]["by_attribute"]
        assert set(ba) == {"scale", "occlusion", "zoom_in", "viewpoint"}
        for attr, groups in ba.items():
            assert len(groups) == 3
            for name, stats in groups.items():
                assert stats is None or stats["AP"] == pytest.approx(1.0), (m, attr, name)


def _ap(ds, results, metric):
    return evaluate_predictions(ds, results, breakdown=False)[metric]["overall"]["AP"]


def test_shifted_boxes_score_lower(ds, gt_results):
    res = {"bbox": copy.deepcopy(gt_results["bbox"])}
    for e in res["bbox"][::2]:
        e["bbox"][0] += 0.3 * e["bbox"][2]
    assert _ap(ds, res, "box") < 0.9


def test_box_shaped_masks_score_lower(ds, gt_results):
    sizes = {im.image_id: (im.width, im.height) for im in ds}
    segm = []
    for e in gt_results["bbox"]:
        x, y, w, h = e["bbox"]
        W, H = sizes[e["image_id"]]
        rect = [x, y, x + w, y, x + w, y + h, x, y + h]
        segm.append({**{k: e[k] for k in ("image_id", "category_id", "score")}, "segmentation": polygons_to_rle([rect], H, W)})
    assert _ap(ds, {"segm": segm}, "mask") < 0.9


@pytest.mark.parametrize("metric", ["landmarks_visible", "landmarks_all"])
def test_moved_landmarks_score_lower(ds, gt_results, metric):
    keys = copy.deepcopy(gt_results["keys"])
    for e in keys:
        kp = np.asarray(e["keypoints"], dtype=float).reshape(-1, 3)
        kp[:, :2] += 6.0
        e["keypoints"] = kp.reshape(-1).tolist()
    ap = _ap(ds, {"keys": keys}, metric)
    assert ap < 0.9


def test_wrong_class_scores_lower(ds, gt_results):
    res = {}
    for kind in ("bbox", "keys"):
        res[kind] = copy.deepcopy(gt_results[kind])
        for e in res[kind][::2]:
            e["category_id"] = e["category_id"] % 13 + 1
    rep = evaluate_predictions(ds, res, breakdown=False)
    assert rep["box"]["overall"]["AP"] < 0.9
    assert rep["landmarks_all"]["overall"]["AP"] < 0.9
    assert rep["landmarks_visible"]["overall"]["AP"] < 0.9


def test_retrieval_shuffled_and_wrong_class(ds, gt_results):
    shuffled = copy.deepcopy(gt_results["retrieval"])
    for e in shuffled:
        e["gallery_image_id"].reverse()
        e["gallery_bbox"].reverse()
    r = evaluate_predictions(ds, {"retrieval": shuffled})["retrieval"]
    assert r["top1"] < 1.0 and r["top20"] == 1.0
    wrong = copy.deepcopy(gt_results["retrieval"])
    wrong[0]["query_cls"] = wrong[0]["query_cls"] % 13 + 1
    r = evaluate_predictions(ds, {"retrieval": wrong})["retrieval"]
    assert r["top1"] == pytest.approx(5 / 6) and r["num_queries_detected"] == 5
    # gallery box off the item (IoU < 0.5): not a hit
    off = copy.deepcopy(gt_results["retrieval"])
    off[0]["gallery_bbox"][0] = [0, 0, 5, 5]
    assert evaluate_predictions(ds, {"retrieval": off})["retrieval"]["top1"] == pytest.approx(5 / 6)
    # missing queries count in the denominator
    assert evaluate_predictions(ds, {"retrieval": gt_results["retrieval"][:3]})["retrieval"]["top1"] == 0.5


def test_attribute_breakdown_ignores_other_groups(ds, gt_results):
    # drop every prediction of the items with scale "small": overall AP drops, the other groups
    # stay perfect, the small group scores 0
    small = {(im.image_id, it.bbox[0]) for im in ds for it in im.items if it.scale == 1}
    bbox = [e for e in gt_results["bbox"] if (e["image_id"], e["bbox"][0]) not in small]
    rep = evaluate_predictions(ds, {"bbox": bbox})["box"]
    assert rep["overall"]["AP"] < 1.0
    by = rep["by_attribute"]["scale"]
    assert by["small"]["AP"] == 0.0
    assert by["moderate"]["AP"] == pytest.approx(1.0) and by["large"]["AP"] == pytest.approx(1.0)


def test_empty_results_score_zero(ds):
    rep = evaluate_predictions(ds, {"bbox": [], "retrieval": []}, breakdown=False)
    assert rep["box"]["overall"]["AP"] == 0.0 and rep["retrieval"]["top1"] == 0.0


def test_iou():
    assert box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float64).tolist() == [[1.0, 1 / 3, 0.0]]


# --- result files ------------------------------------------------------------------------------


def test_official_example_files_load():
    res = read_results_dir(FIXTURES / "example_results")
    assert set(res) == set(KINDS)
    assert len(res["bbox"]) == 5 and len(res["keys"][0]["keypoints"]) == 882
    assert len(res["retrieval"][0]["gallery_image_id"]) == 20
    assert res["segm"][0]["segmentation"]["size"] == [624, 468]


def test_write_then_read(tmp_path, gt_results):
    paths = write_results(gt_results, tmp_path)
    assert set(paths) == set(KINDS)
    back = read_results_dir(tmp_path)
    assert back["bbox"] == gt_results["bbox"] and back["retrieval"] == gt_results["retrieval"]


@pytest.mark.parametrize(
    "kind,mutate,field",
    [
        ("bbox", lambda e: e.pop("score"), "score"),
        ("bbox", lambda e: e.__setitem__("bbox", [1, 2, 3]), "bbox"),
        ("bbox", lambda e: e.__setitem__("category_id", 0), "category_id"),
        ("keys", lambda e: e.__setitem__("keypoints", e["keypoints"][:-3]), "keypoints"),
        ("segm", lambda e: e["segmentation"].pop("counts"), "segmentation"),
        ("retrieval", lambda e: e["gallery_bbox"].pop(), "gallery_bbox"),
        ("retrieval", lambda e: e.__setitem__("query_bbox", [10, 10, 5, 5]), "query_bbox"),
    ],
)
def test_bad_result_entries_named(tmp_path, kind, mutate, field):
    entries = json.loads((FIXTURES / "example_results" / f"{kind}.json").read_text())
    mutate(entries[2])
    p = tmp_path / f"{kind}.json"
    p.write_text(json.dumps(entries))
    with pytest.raises(ResultFormatError) as ei:
        read_results(p)
    msg = str(ei.value)
    assert str(p) in msg and "entry 2" in msg and field in msg


def test_unknown_image_and_wrong_mask_size(ds, gt_results):
    bad = copy.deepcopy(gt_results["bbox"][:2])
    bad[1]["image_id"] = 999
    errs = validate_results("bbox", bad, image_ids={im.image_id for im in ds})
    assert len(errs) == 1 and "entry 1" in errs[0] and "999" in errs[0]
    segm = copy.deepcopy(gt_results["segm"][:1])
    segm[0]["segmentation"]["size"] = [10, 10]
    with pytest.raises(ResultFormatError, match="segmentation.size"):
        evaluate_predictions(ds, {"segm": segm})


# --- command line ------------------------------------------------------------------------------


def test_eval_cli(ds, gt_results, tmp_path, capsys):
    write_results({k: gt_results[k] for k in ("bbox", "retrieval")}, tmp_path / "res")
    out_json = tmp_path / "report.json"
    assert main(["eval", str(ds.root), "--results", str(tmp_path / "res"), "--json", str(out_json), "--no-breakdown"]) == 0
    rep = json.loads(out_json.read_text())
    assert rep["scored"] == ["bbox", "retrieval"] and rep["box"]["overall"]["AP"] == pytest.approx(1.0)
    assert "detection (box)" in capsys.readouterr().out


def test_eval_cli_self_check(ds, capsys):
    assert main(["eval", str(ds.root), "--self-check"]) == 0
    assert "self-check passed" in capsys.readouterr().out


def test_eval_cli_bad_results(ds, tmp_path, capsys):
    (tmp_path / "bbox.json").write_text(json.dumps([{"image_id": 1}]))
    assert main(["eval", str(ds.root), "--results", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "bbox.json" in err and "entry 0" in err and "category_id" in err
