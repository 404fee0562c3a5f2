"""detectron2 checkpoints (df2infer_export.checkpoint_import.detectron2) against detectron2's own forward.

The fixture (tests/fixtures/detectron2: recipe.json, fixture.npz, meta.json) was made by make_fixture.py
with detectron2 itself (commit and config in meta.json): a Mask R-CNN R50-FPN with a 294-keypoint head,
13 classes, on deterministic weights, and its outputs on three 192 x 192 images. This test needs no
detectron2: it regenerates the same weights from the recipe (tests/d2_weights.py), saves them as a
detectron2 trainer checkpoint ({"model": state_dict}), imports, exports and compares through df2infer.load().
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from d2_weights import FIXTURE, load_recipe, weights

from df2infer_export.checkpoint_import import CheckpointImportError, detect_format, import_checkpoint
from df2infer_export.checkpoint_import import detectron2 as d2i

S = 192


@pytest.fixture(scope="module")
def d2_state():
    return weights(load_recipe())


def test_table_names_every_tensor_and_fills_the_model(d2_state):
    model, rep = d2i.build(d2_state, "d2.pth")
    table = dict(rep["mapped"])
    assert set(table) == set(d2_state) and not rep["defaulted"]
    assert set(model.state_dict()) == set(table.values())
    assert model.cfg["backbone"] == "msra_resnet50" and model.cfg["roi_aligned"] and model.cfg["input_channels"] == "bgr"
    assert rep["heads"] == ["mask", "landmark"]
    own = model.state_dict()
    # background last -> first; detectron2 class c-1 (category c) is our row c
    cls = d2_state["roi_heads.box_predictor.cls_score.weight"]
    assert torch.equal(own["roi_heads.box_predictor.cls_score.weight"][0], cls[13])
    assert torch.equal(own["roi_heads.box_predictor.cls_score.weight"][5], cls[4])
    bbox = own["roi_heads.box_predictor.bbox_pred.weight"]
    assert torch.equal(bbox[:4], torch.zeros_like(bbox[:4])) and torch.equal(bbox[4:], d2_state["roi_heads.box_predictor.bbox_pred.weight"])
    # MSRA: the stride of res3's first block is in its 1x1 conv
    blk = model.backbone.body.layer2[0]
    assert blk.conv1.stride == (2, 2) and blk.conv2.stride == (1, 1)


def test_errors_name_the_tensors(d2_state):
    sd = dict(d2_state)
    sd["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(81, 1024)
    with pytest.raises(CheckpointImportError, match=r"80 categories.*train --init"):
        d2i.build(sd, "coco.pth")
    sd = {**d2_state, "roi_heads.attr_head.fc.weight": torch.zeros(2, 2)}
    with pytest.raises(CheckpointImportError, match="1 tensors the detectron2 mapping does not know") as e:
        d2i.build(sd, "x.pth")
    assert e.value.tensors == ["roi_heads.attr_head.fc.weight"]
    sd = {k: v for k, v in d2_state.items() if not k.startswith("backbone.bottom_up.res4.5.")}
    with pytest.raises(CheckpointImportError, match="res4 has 5 blocks"):
        d2i.build(sd, "x.pth")


def test_rpn_ranks_the_logits_whose_sigmoid_ties():
    """One proposal per FPN level, logits 20 (level 0) and 25 (level 1), both sigmoids 1.0 in float32, and a
    post-NMS top-1: detectron2's find_top_rpn_proposals ranks the logits, so the level-1 box is kept (hand-derived)."""
    from torchvision.models.detection.rpn import RPNHead

    from df2infer_export.model.match_rcnn import LogitRankRPN

    rpn = LogitRankRPN(None, RPNHead(1, 1), 0.7, 0.3, 1, 0.5, {"training": 1, "testing": 1}, {"training": 1, "testing": 1}, 0.7)
    rpn.eval().min_size = 0.0
    logits = torch.tensor([[20.0, 25.0]])
    assert torch.sigmoid(logits)[0, 0] == torch.sigmoid(logits)[0, 1] == 1.0
    boxes = torch.tensor([[[10.0, 10.0, 20.0, 20.0], [30.0, 30.0, 50.0, 50.0]]])
    kept, _ = rpn.filter_proposals(boxes, logits, [(64, 64)], [1, 1])
    assert kept[0].tolist() == [[30.0, 30.0, 50.0, 50.0]]


def test_roi_levels_follow_assign_boxes_to_levels():
    """A square box of side 224 * (1 - 5e-7) (a hair below level 4's lower edge): detectron2's
    floor(4 + log2(s / 224 + 1e-8)) = floor(4 - 7.1e-7) = 3; torchvision's floor(4 + log2(s / 224) + 1e-6)
    = floor(4 + 2.8e-7) = 4 (hand-derived). Levels 2..5 at rows 0, 100, 200, 300 of the packed map, so the
    level shows in the shifted y1."""
    from df2infer_export.deploy import RoILevels

    side = 224 * (1 - 5e-7)
    rois = torch.tensor([[0.0, 0.0, 0.0, side, side]])
    scales = torch.tensor([1 / 4, 1 / 8, 1 / 16, 1 / 32])
    rows = torch.tensor([0.0, 100.0, 200.0, 300.0])
    assert float(RoILevels()(rois, scales, rows, 2, 5, "detectron2")[0, 2]) == 100.0  # level 3
    assert float(RoILevels()(rois, scales, rows, 2, 5, "torchvision")[0, 2]) == 200.0  # level 4


@pytest.mark.slow
def test_parity_with_detectron2_forward(d2_state, tmp_path):
    """Images 1 and 2 have objectness logits up to ~21, where sigmoid is 1.0 in float32: ranking the RPN by
    the sigmoid (torchvision's way) tied them and NMS kept other proposals than detectron2's (5 of 300
    detections changed, one 7.7 px off); detectron2 ranks the logits, and so does the import."""
    from df2infer_export.checkpoint_import.parity import compare_detections
    from df2infer_export.onnx_export import export_onnx

    ckpt = tmp_path / "model_final.pth"
    torch.save({"model": d2_state, "iteration": 0}, ckpt)
    assert detect_format(torch.load(ckpt, weights_only=True)) == "detectron2"
    model, rep = import_checkpoint(ckpt, config_override={"rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 300})
    onnx_path = export_onnx(model, tmp_path / "d2.onnx", input_size=(S, S), max_detections=100, simplify=False)
    fx = np.load(FIXTURE / "fixture.npz")
    meta = json.loads((FIXTURE / "meta.json").read_text())
    refs, start = [], 0
    for n in fx["counts"]:
        sl = slice(start, start + int(n))
        start += int(n)
        masks = np.unpackbits(fx["masks"][sl], axis=-1)[..., :S].astype(bool)
        ref = {k: fx[k][sl] for k in ("boxes", "scores", "labels", "keypoints")}
        refs.append({**ref, "masks": masks})
    images = list(fx["images"])
    r = compare_detections(refs, onnx_path, images, conf=0.05)  # detectron2's SCORE_THRESH_TEST: all 300 detections
    numbers = json.dumps({k: v for k, v in r.items() if k != "unmatched"})
    print(f"\n[parity] detectron2 {meta['config']} @ {meta['detectron2_commit'][:12]}: {numbers}")
    assert r["detections_ref"] >= 5, r
    assert not r["unmatched"], r["unmatched"]
    assert r["matched"] == r["detections_ref"] == r["detections_ours"] and r["label_mismatches"] == 0
    assert r["box_max_rel"] <= 1e-3, r
    assert r["keypoints_compared"] == r["matched"] and r["keypoint_max_px"] <= 0.5, r
    assert r["masks_compared"] == r["matched"] and r["mask_min_iou"] >= 0.99, r
