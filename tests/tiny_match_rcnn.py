"""A tiny random-init Match R-CNN (small config, 128x128 input) for deploy-graph tests."""

from __future__ import annotations

import torch

SIZE, N, P = 128, 20, 60


def build_tiny_model(score_thresh: float):
    """Random init, seed 0, N=20 detections from 60 proposals. A random-init box classifier scores
    every class near 1/14; its weights are sharpened so the score threshold and NMS select
    (with score_thresh 0.3 the test images get 2..7 of the 20 rows: padding is exercised)."""
    from df2infer_export.config import load_config
    from df2infer_export.model import build_model

    torch.manual_seed(0)
    cfg = load_config(
        "small",
        [
            f"model.input_size={SIZE}",
            f"model.rpn_post_nms_top_n_test={P}",
            "model.rpn_pre_nms_top_n_test=200",
            f"model.max_detections={N}",
            f"model.box_score_thresh={score_thresh}",
        ],
    )["model"]
    m = build_model(cfg).eval()
    with torch.no_grad():
        m.roi_heads.box_predictor.cls_score.weight.mul_(20)
    return m
