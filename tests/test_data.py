"""Data layer: DeepFashion2 <-> COCO round trip, retrieval ground truth, validator messages, CLIs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from df2_folder import make_folder

from df2infer.apps.main import main
from df2infer.data import load_dataset, read_annotation, spec, validate_folder
from df2infer.data.coco import coco_to_images, dataset_to_coco, landmark_names, retrieval_ground_truth, write_coco_files

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture()
def folder(tmp_path):
    return make_folder(tmp_path / "df2")


def test_round_trip_df2_coco_df2_is_exact(folder):
    ds = load_dataset(folder)
    coco = json.loads(json.dumps(dataset_to_coco(ds)))  # through JSON, as written to disk
    back = coco_to_images(coco)
    assert len(back) == len(ds)
    for img, b in zip(ds, back):
        raw = json.loads((folder / "annos" / f"{img.image_id:06d}.json").read_text())
        assert b.to_json() == raw
        assert (b.image_id, b.file_name, b.width, b.height) == (img.image_id, img.file_name, 200, 160)


def test_coco_fields_follow_official_converter(folder):
    ds = load_dataset(folder)
    coco = dataset_to_coco(ds)
    assert len(coco["categories"]) == 13
    assert all(len(c["keypoints"]) == 294 for c in coco["categories"])
    assert coco["categories"][0]["keypoints"] == landmark_names()
    im = coco["images"][0]
    assert set(im) >= {"id", "file_name", "width", "height", "source", "pair_id"}
    a = coco["annotations"][0]
    item = ds.images[0].items[0]
    x1, y1, x2, y2 = item.bbox
    assert a["bbox"] == [x1, y1, x2 - x1, y2 - y1]
    assert a["area"] == (x2 - x1) * (y2 - y1)
    assert a["iscrowd"] == 0
    kp = np.asarray(a["keypoints"]).reshape(294, 3)
    cat = spec.category(a["category_id"])
    np.testing.assert_array_equal(kp[cat.slot_start : cat.slot_end], item.landmarks)
    assert not kp[: cat.slot_start].any() and not kp[cat.slot_end :].any()
    assert a["num_keypoints"] == int((item.landmarks[:, 2] > 0).sum())
    for key in ("style", "pair_id", "scale", "occlusion", "zoom_in", "viewpoint", "segmentation"):
        assert key in a
    ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ids)) == len(ids) == 16


def test_visible_only_variant_zeroes_occluded(folder):
    ds = load_dataset(folder)
    full = dataset_to_coco(ds)["annotations"]
    vis = dataset_to_coco(ds, visible_only=True)["annotations"]
    saw_occluded = False
    for f, v in zip(full, vis):
        fk, vk = np.reshape(f["keypoints"], (-1, 3)), np.reshape(v["keypoints"], (-1, 3))
        occ = fk[:, 2] == 1
        saw_occluded |= bool(occ.any())
        assert not vk[occ].any()
        np.testing.assert_array_equal(vk[fk[:, 2] == 2], fk[fk[:, 2] == 2])
        assert v["num_keypoints"] == int((fk[:, 2] == 2).sum())
        assert v["bbox"] == f["bbox"] and v["area"] == f["area"]
    assert saw_occluded


def test_retrieval_ground_truth(folder):
    gt = retrieval_ground_truth(load_dataset(folder))
    assert all(q["style"] > 0 for q in gt["query"])
    assert len(gt["query"]) == 6  # 4 left items + 2 right items of even pairs
    assert len(gt["gallery"]) == 8  # every shop item, style 0 included
    for q in gt["query"]:
        assert any(g["pair_id"] == q["pair_id"] and g["style"] == q["style"] for g in gt["gallery"])


def test_write_coco_files_and_convert_cli(folder, capsys):
    paths = write_coco_files(folder)
    assert set(paths) == {"instances", "keypoints_visible", "retrieval_gt"}
    for p in paths.values():
        assert p.parent == folder / "coco" and json.loads(p.read_text())
    assert main(["convert", str(folder), "--out", str(folder / "c2")]) == 0
    assert (folder / "c2" / "instances.json").exists()


def test_example_annotation_reads():
    ann = read_annotation(FIXTURES / "example_annotation.json")
    assert ann.source == "shop" and len(ann.items) == 2
    cats = {it.category_id for it in ann.items}
    assert cats == {1, 9}


# --- validator: every error names the file, the item and the field ---------------------------


def _corrupt(folder: Path, image_id: int, fn) -> Path:
    p = folder / "annos" / f"{image_id:06d}.json"
    raw = json.loads(p.read_text())
    fn(raw)
    p.write_text(json.dumps(raw))
    return p


CASES = {
    "landmark_count": (lambda r: r["item1"].__setitem__("landmarks", r["item1"]["landmarks"][:-3]), "item1", "landmarks"),
    "box_outside": (lambda r: r["item2"].__setitem__("bounding_box", [110, 30, 260, 150]), "item2", "bounding_box"),
    "odd_polygon": (lambda r: r["item1"]["segmentation"][0].append(5), "item1", "segmentation"),
    "unknown_category": (lambda r: r["item2"].__setitem__("category_id", 14), "item2", "category_id"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validator_names_file_item_field(folder, case):
    fn, item, fld = CASES[case]
    path = _corrupt(folder, 3, fn)
    ds, problems = validate_folder(folder)
    assert len(problems) == 1, problems
    msg = problems[0]
    assert str(path) in msg and item in msg and fld in msg
    assert len(ds) == 7


def test_validator_missing_image(folder):
    (folder / "image" / "000005.jpg").unlink()
    ds, problems = validate_folder(folder)
    assert len(problems) == 1 and "000005" in problems[0] and "missing image" in problems[0]


def test_validator_reports_all_problems(folder, capsys):
    paths = [_corrupt(folder, i, CASES[c][0]) for i, c in zip((1, 2, 4, 6), sorted(CASES))]
    (folder / "image" / "000008.jpg").unlink()
    _, problems = validate_folder(folder)
    assert len(problems) == 5
    for p in paths:
        assert any(str(p) in m for m in problems)
    assert main(["validate", str(folder)]) == 1
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 5
    assert "5 problem(s)" in out.err


def test_validate_cli_ok(folder, capsys):
    assert main(["validate", str(folder)]) == 0
    assert "OK: 8 image(s), 16 item(s)" in capsys.readouterr().out


def test_validate_cli_no_annos(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 1
    assert "annos" in capsys.readouterr().err


def test_copy_of_example_folder_loads(tmp_path):
    root = tmp_path / "ex"
    (root / "annos").mkdir(parents=True)
    (root / "image").mkdir()
    shutil.copy(FIXTURES / "example_annotation.json", root / "annos" / "000001.json")
    import cv2

    cv2.imwrite(str(root / "image" / "000001.jpg"), np.zeros((600, 560, 3), np.uint8))
    ds = load_dataset(root)
    coco = dataset_to_coco(ds)
    assert [a["category_id"] for a in coco["annotations"]] == [9, 1]
    assert coco_to_images(coco)[0].to_json() == json.loads((root / "annos" / "000001.json").read_text())
