"""The one builder of the Contract a Match R-CNN artifact carries (the ONNX export and the eager
TorchBackend both use it, so the two cannot disagree on a field such as pad_value)."""

from __future__ import annotations

from typing import Any

import torch

from df2infer.contract import PAD_VALUE, Contract


def build_contract(
    model: torch.nn.Module,
    *,
    input_size: tuple[int, int] | None = None,
    max_detections: int,
    max_batch: int,
    score_threshold: float | None = None,
    nms_iou: float | None = None,
    gated_heads: bool = False,
    model_info: dict[str, Any] | None = None,
) -> Contract:
    """The FP32 contract of `model` (a MatchRCNN) run at `input_size` (H, W; default its training size) with
    `max_detections` rows. Thresholds default to the model config's; `model_info` extends contract.model."""
    rh: Any = model.roi_heads
    cfg: dict[str, Any] = model.cfg  # type: ignore[assignment]
    has_mask, has_landmarks, has_match = rh.mask_head is not None, rh.keypoint_head is not None, rh.match_head is not None
    fc = rh.similarity.fc if has_match else None
    H, W = input_size if input_size is not None else (int(model.input_size), int(model.input_size))
    info = {
        "name": cfg.get("name", "match_rcnn"),
        "backbone": cfg.get("backbone"),
        "fpn_channels": cfg.get("fpn_channels"),
        **(model_info or {}),
    }
    return Contract(
        input_height=int(H),
        input_width=int(W),
        max_detections=int(max_detections),
        # a missing head's placeholder output has its sizes 1 (df2infer.contract, "Heads")
        mask_size=int(model.mask_size) if has_mask else 1,
        heatmap_size=int(model.heatmap_size) if has_landmarks else 1,
        max_landmarks=int(rh.keypoint_predictor.slots.shape[1]) if has_landmarks else 1,
        embedding_dim=int(rh.match_head.fc.out_features) if has_match else 1,
        num_classes=int(rh.box_predictor.cls_score.out_features - 1),
        precision="fp32",
        max_batch=int(max_batch),
        pad_value=PAD_VALUE,
        score_threshold=float(cfg["box_score_thresh"] if score_threshold is None else score_threshold),
        nms_iou=float(cfg["box_nms_thresh"] if nms_iou is None else nms_iou),
        gated_heads=bool(gated_heads),
        similarity_weight=fc.weight.detach().cpu().double().tolist() if fc is not None else [],
        similarity_bias=fc.bias.detach().cpu().double().tolist() if fc is not None else [],
        model=info,
        heads=[h for h, on in (("masks", has_mask), ("landmarks", has_landmarks), ("embeddings", has_match)) if on],
        family=str(cfg.get("family", "df2infer")),
        input_convention=input_convention(cfg),
        mask_paste="torchvision" if cfg.get("family") == "torchvision" else "grid_sample",
    )


def input_convention(cfg: dict[str, Any]) -> str:
    """How the graph turns its RGB 0..255 input into what the network was trained on (contract.input_convention)."""
    order = "flipped to BGR, " if cfg.get("input_channels", "rgb") == "bgr" else ""
    mean = ", ".join(f"{v:g}" for v in cfg.get("pixel_mean", (123.675, 116.28, 103.53)))
    std = ", ".join(f"{v:g}" for v in cfg.get("pixel_std", (58.395, 57.12, 57.375)))
    chans = cfg.get("input_channels", "rgb").upper()
    return f"RGB 0..255 in; inside the graph {order}(x - [{mean}]) / [{std}] ({chans} order)"


__all__ = ["build_contract", "input_convention"]
