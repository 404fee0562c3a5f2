"""Match R-CNN configuration: defaults, YAML files and `key=value` overrides.

A configuration is a plain dict with two sections, `model` (architecture; stored in every
checkpoint so a checkpoint rebuilds its own model) and `train` (optimizer, schedule, data).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

DEFAULT_MODEL: dict[str, Any] = {
    "name": "match_rcnn_r50_fpn",
    "backbone": "resnet50",  # one of BACKBONES
    "backbone_widths": [32, 64, 96, 128],  # small backbone only: channels of C2..C5
    "backbone_blocks": [1, 1, 1, 1],  # small backbone only: BasicBlocks per stage
    "norm": "bn",  # bn (train-mode BatchNorm, from scratch) | frozen_bn (pretrained) | gn
    "fpn_channels": 256,
    "returned_layers": [1, 2, 3, 4],  # ResNet stages fed to the FPN (1 = C2, stride 4)
    "input_size": 800,  # square letterbox side the model is trained/deployed at
    "anchor_sizes": [32, 64, 128, 256, 512],
    "aspect_ratios": [0.5, 1.0, 2.0],
    "rpn_pre_nms_top_n_train": 2000,
    "rpn_post_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_test": 1000,
    "rpn_nms_thresh": 0.7,
    "rpn_batch_size_per_image": 256,
    "box_pool": 7,
    "box_fc": 1024,
    "box_batch_size_per_image": 512,
    "box_positive_fraction": 0.25,
    "box_score_thresh": 0.05,
    "box_nms_thresh": 0.5,
    "max_detections": 100,
    "mask_pool": 14,
    "mask_channels": 256,
    "mask_convs": 4,  # mask size = 2 * mask_pool
    "landmark_pool": 14,
    "landmark_channels": 512,
    "landmark_convs": 8,
    "landmark_deconvs": 2,  # heatmap size = landmark_pool * 2 ** landmark_deconvs
    "match_pool": 14,
    "match_channels": [256, 256, 256, 1024],
    "embedding_dim": 256,
    "max_pos_per_image": 64,  # positives per image fed to mask/landmark/matching in training
    # --- semantics of imported checkpoints (df2infer_export.checkpoint_import); the defaults are this project's own
    "family": "df2infer",  # df2infer | torchvision | detectron2: whose checkpoint the weights came from
    "heads": ["mask", "landmark", "match"],  # the heads the model has (an imported checkpoint may lack some)
    "input_channels": "rgb",  # channel order the network was trained on (the graph input is always RGB; bgr flips inside)
    "pixel_mean": [123.675, 116.28, 103.53],  # in input_channels order, 0..255 scale
    "pixel_std": [58.395, 57.12, 57.375],
    "fpn_norm": None,  # None | bn (torchvision v2: conv + BatchNorm in the FPN)
    "rpn_conv_depth": 1,  # torchvision v2: 2
    "box_head": "mlp",  # mlp (two fc) | conv4_fc_bn (torchvision v2: 4 conv+BN, 1 fc)
    "head_norm": None,  # None | bn: BatchNorm after each mask-head conv (torchvision v2)
    "landmark_predictor": "slots",  # slots (ours) | deconv_upsample (torchvision/detectron2: 4x4 deconv to 294, bilinear x2)
    "roi_aligned": False,  # RoIAlign half-pixel offset (detectron2 ROIAlignV2: True)
    "roi_sampling_ratio": 2,  # torchvision 2; detectron2 0 (adaptive)
    "anchor_rounding": True,  # torchvision rounds its cell anchors; detectron2 does not
    "anchor_offset": 0.0,  # detectron2 ANCHOR_GENERATOR.OFFSET (fraction of the stride)
    "det_min_size": 1e-2,  # torchvision drops detections smaller than this; detectron2 keeps non-empty boxes (0)
    "rpn_min_size": 1e-3,  # torchvision RPN min_size; detectron2 0 (non-empty)
    # RPN NMS and top-k on the objectness logits (detectron2) instead of their sigmoid (torchvision); sigmoid saturates to
    # 1.0 in float32 above a logit of ~16.6, and tied scores make NMS keep a different set than detectron2's
    "rpn_rank_by_logit": False,
    # FPN level of a RoI (deploy graph): torchvision's LevelMapper or detectron2's assign_boxes_to_levels (another epsilon)
    "roi_level_rule": "torchvision",
    "class_agnostic_mask": False,  # one mask channel for every class (detectron2 CLS_AGNOSTIC_MASK)
}

HEADS = ("mask", "landmark", "match")
# msra_resnet50/101: detectron2's ResNet (stride in the first 1x1 conv of a bottleneck, STRIDE_IN_1X1)
BACKBONES = ("small", "resnet18", "resnet34", "resnet50", "resnet101", "msra_resnet50", "msra_resnet101")

DEFAULT_TRAIN: dict[str, Any] = {
    "iters": 90000,
    "batch_size": 4,
    "optimizer": "sgd",
    "lr": 0.005,
    "momentum": 0.9,
    "weight_decay": 1e-5,
    "warmup_iters": 1000,
    "lr_steps": [0.67, 0.89],
    "lr_gamma": 0.1,
    "grad_clip": 10.0,
    "pair_fraction": 1.0,
    "num_workers": 1,
    "seed": 0,
    "log_every": 20,
    "ckpt_every": 500,
    "eval_every": 0,
    "eval_max_images": 200,
    "scale_jitter": [0.7, 1.0],
    "color_jitter": 0.25,
    "hflip": False,
    "loss_weights": {
        "loss_classifier": 1.0,
        "loss_box_reg": 1.0,
        "loss_objectness": 1.0,
        "loss_rpn_box_reg": 1.0,
        "loss_mask": 1.0,
        "loss_landmark": 1.0,
        "loss_match": 1.0,
    },
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def default_config() -> dict:
    return {"model": copy.deepcopy(DEFAULT_MODEL), "train": copy.deepcopy(DEFAULT_TRAIN)}


def resolve_path(path: str | Path) -> Path:
    """A config file path, or a bare name like `small` looked up in export/configs/."""
    p = Path(path)
    if p.exists():
        return p
    q = CONFIG_DIR / (str(path) if str(path).endswith(".yaml") else f"{path}.yaml")
    if q.exists():
        return q
    raise FileNotFoundError(f"config {path!r} not found (neither a file nor one of {sorted(x.stem for x in CONFIG_DIR.glob('*.yaml'))})")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Defaults <- YAML file <- overrides like `train.lr=0.01` or `model.input_size=256`."""
    cfg = default_config()
    if path is not None:
        p = resolve_path(path)
        raw = yaml.safe_load(p.read_text()) or {}
        unknown = set(raw) - {"model", "train"}
        if unknown:
            raise ValueError(f"{p}: unknown top-level keys {sorted(unknown)} (expected model, train)")
        cfg = _merge(cfg, raw)
    for ov in overrides or []:
        key, _, val = ov.partition("=")
        if not _:
            raise ValueError(f"override {ov!r} is not key=value")
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(val)
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    m = cfg["model"]
    unknown = set(m) - set(DEFAULT_MODEL)
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)}")
    unknown = set(cfg["train"]) - set(DEFAULT_TRAIN)
    if unknown:
        raise ValueError(f"unknown train config keys {sorted(unknown)}")
    if m["backbone"] not in BACKBONES:
        raise ValueError(f"model.backbone {m['backbone']!r}: expected one of {BACKBONES}")
    bad = [h for h in m["heads"] if h not in HEADS]
    if bad:
        raise ValueError(f"model.heads {m['heads']!r}: unknown {bad}, expected a subset of {HEADS}")
    if m["norm"] not in ("bn", "frozen_bn", "gn"):
        raise ValueError(f"model.norm {m['norm']!r}: expected bn, frozen_bn or gn")


def model_config(cfg_model: dict) -> dict:
    """A checkpoint's stored model config completed with today's defaults (older checkpoints)."""
    return _merge(DEFAULT_MODEL, cfg_model)
