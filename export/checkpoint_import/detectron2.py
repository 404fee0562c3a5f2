"""detectron2 Mask R-CNN checkpoints (`{"model": state_dict}` .pth from its trainer, model-zoo .pkl of numpy
arrays): ResNet-50/101 FPN (MSRA, STRIDE_IN_1X1), with or without a keypoint head, 13 classes.

The table (`tensor_table`) names every tensor and its place; the changes made to tensors:
  box_predictor.cls_score   detectron2 puts background LAST (row K); this project FIRST: rows reordered
                            [K, 0, 1, ..., K-1], so category c (detectron2 class index c - 1) is row c
  box_predictor.bbox_pred   detectron2 has no background deltas ([4K, D]): 4 zero rows put first;
                            class-agnostic regression ([4, D], CLS_AGNOSTIC_BBOX_REG) repeated per class
  everything else           copied (FrozenBN statistics included; running_mean/var missing in an old
                            file are detectron2's own defaults 0 and 1)
Semantics put into the model config (docs/models.md): the MSRA bottleneck (stride in the first 1x1
conv), BGR input with detectron2's pixel mean (103.53, 116.28, 123.675) and std (1, 1, 1) (its
PIXEL_MEAN/PIXEL_STD are not in the checkpoint; these are its defaults and those of every model-zoo
R50/R101-FPN config), anchors without rounding at offset 0 and strides 4..64, ROIAlignV2
(aligned=True, sampling ratio 0 = adaptive), RPN NMS and top-k on the objectness logits (not their
sigmoid, which ties at 1.0 for large logits), RoI levels by assign_boxes_to_levels (its epsilon), RPN
and detections keep non-empty boxes, BoxCoder (10, 10, 5, 5), class-specific or class-agnostic masks,
the keypoint deconv + bilinear x2, masks pasted the grid_sample way (detectron2's paste_masks_in_image, this runtime's default).
"""

from __future__ import annotations

import torch

from ..checkpoint import CheckpointImportError
from ..config import model_config
from .checks import bottleneck_resnet_depth, check_table_covers

FAMILY = "detectron2"
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BN = ("weight", "bias", "running_mean", "running_var")
NUM_CATEGORIES = 13
NUM_KEYPOINTS = 294
PIXEL_MEAN_BGR = [103.53, 116.28, 123.675]
PIXEL_STD = [1.0, 1.0, 1.0]


def tensor_table(depth: int, heads: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """{detectron2 name: (this project's name, transform)}; transform: copy | cls_background_first | bbox_background_first."""
    t: dict[str, tuple[str, str]] = {}
    bu, body = "backbone.bottom_up.", "backbone.body."
    t[bu + "stem.conv1.weight"] = (body + "conv1.weight", "copy")
    for p in BN:
        t[f"{bu}stem.conv1.norm.{p}"] = (f"{body}bn1.{p}", "copy")
    for s, n in enumerate(BLOCKS[depth], 2):
        for b in range(n):
            src, dst = f"{bu}res{s}.{b}.", f"{body}layer{s - 1}.{b}."
            for c in (1, 2, 3):
                t[f"{src}conv{c}.weight"] = (f"{dst}conv{c}.weight", "copy")
                for p in BN:
                    t[f"{src}conv{c}.norm.{p}"] = (f"{dst}bn{c}.{p}", "copy")
            if b == 0:
                t[src + "shortcut.weight"] = (dst + "downsample.0.weight", "copy")
                for p in BN:
                    t[f"{src}shortcut.norm.{p}"] = (f"{dst}downsample.1.{p}", "copy")
    for lvl in range(2, 6):
        for p in ("weight", "bias"):
            t[f"backbone.fpn_lateral{lvl}.{p}"] = (f"backbone.fpn.inner_blocks.{lvl - 2}.0.{p}", "copy")
            t[f"backbone.fpn_output{lvl}.{p}"] = (f"backbone.fpn.layer_blocks.{lvl - 2}.0.{p}", "copy")
    for p in ("weight", "bias"):
        t[f"proposal_generator.rpn_head.conv.{p}"] = (f"rpn.head.conv.0.0.{p}", "copy")
        t[f"proposal_generator.rpn_head.objectness_logits.{p}"] = (f"rpn.head.cls_logits.{p}", "copy")
        t[f"proposal_generator.rpn_head.anchor_deltas.{p}"] = (f"rpn.head.bbox_pred.{p}", "copy")
        t[f"roi_heads.box_head.fc1.{p}"] = (f"roi_heads.box_head.fc6.{p}", "copy")
        t[f"roi_heads.box_head.fc2.{p}"] = (f"roi_heads.box_head.fc7.{p}", "copy")
        t[f"roi_heads.box_predictor.cls_score.{p}"] = (f"roi_heads.box_predictor.cls_score.{p}", "cls_background_first")
        t[f"roi_heads.box_predictor.bbox_pred.{p}"] = (f"roi_heads.box_predictor.bbox_pred.{p}", "bbox_background_first")
        if "mask" in heads:
            for i in range(1, 5):
                t[f"roi_heads.mask_head.mask_fcn{i}.{p}"] = (f"roi_heads.mask_head.{i - 1}.0.{p}", "copy")
            t[f"roi_heads.mask_head.deconv.{p}"] = (f"roi_heads.mask_predictor.conv5_mask.{p}", "copy")
            t[f"roi_heads.mask_head.predictor.{p}"] = (f"roi_heads.mask_predictor.mask_fcn_logits.{p}", "copy")
        if "landmark" in heads:
            for i in range(1, 9):
                t[f"roi_heads.keypoint_head.conv_fcn{i}.{p}"] = (f"roi_heads.keypoint_head.{2 * (i - 1)}.{p}", "copy")
            t[f"roi_heads.keypoint_head.score_lowres.{p}"] = (f"roi_heads.keypoint_predictor.kps_score_lowres.{p}", "copy")
    return t


def _optional(k: str) -> bool:
    """FrozenBN statistics an old checkpoint may lack (detectron2 then uses mean 0, var 1)."""
    return k.endswith((".norm.running_mean", ".norm.running_var"))


def describe(sd: dict[str, torch.Tensor], source: str) -> dict:
    depth = bottleneck_resnet_depth(sd, source, FAMILY, first_block="backbone.bottom_up.res2.0.", third_stage="backbone.bottom_up.res4.")
    prefixes = (("mask", "roi_heads.mask_head."), ("landmark", "roi_heads.keypoint_head."))
    heads = tuple(h for h, pre in prefixes if any(k.startswith(pre) for k in sd))
    cls = sd.get("roi_heads.box_predictor.cls_score.weight")
    kps = sd.get("roi_heads.keypoint_head.score_lowres.weight")
    masks = sd.get("roi_heads.mask_head.predictor.weight")
    return {
        "sd": sd,
        "depth": depth,
        "heads": heads,
        "num_classes": None if cls is None else int(cls.shape[0]) - 1,  # detectron2 counts categories, background extra
        "num_keypoints": None if kps is None else int(kps.shape[1]),
        "class_agnostic_mask": masks is not None and int(masks.shape[0]) == 1,
    }


def _transform(how: str, v: torch.Tensor, k: int) -> torch.Tensor:
    if how == "cls_background_first":
        return torch.cat([v[k:], v[:k]], 0)
    if how == "bbox_background_first":
        if v.shape[0] == 4:  # class-agnostic regression: the same deltas for every class
            v = v.repeat(k, *([1] * (v.dim() - 1)))
        return torch.cat([torch.zeros_like(v[:4]), v], 0)
    return v


def _map(d: dict, source: str, *, strict: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    sd, table = d["sd"], tensor_table(d["depth"], d["heads"])
    check_table_covers(sd, table, source, FAMILY, strict=strict, optional=_optional)
    out, defaulted = {}, []
    for theirs, (ours, how) in table.items():
        if theirs not in sd:
            if _optional(theirs):
                ref = sd.get(theirs.rsplit(".", 1)[0] + ".weight")
                if ref is not None:
                    out[ours] = torch.zeros_like(ref) if theirs.endswith("running_mean") else torch.ones_like(ref)
                    defaulted.append(theirs)
            continue
        k = d["num_classes"] if d["num_classes"] is not None else NUM_CATEGORIES
        out[ours] = _transform(how, sd[theirs], k)
    return out, defaulted


def config_for(d: dict) -> dict:
    sd = d["sd"]
    return model_config(
        {
            "name": "detectron2_" + "".join(f"{h}_" for h in d["heads"]) + f"rcnn_R_{d['depth']}_FPN",
            "family": FAMILY,
            "backbone": f"msra_resnet{d['depth']}",
            "norm": "frozen_bn",
            "fpn_channels": int(sd["backbone.fpn_lateral2.weight"].shape[0]),
            "box_fc": int(sd["roi_heads.box_predictor.cls_score.weight"].shape[1]),
            "heads": list(d["heads"]),
            "input_channels": "bgr",
            "pixel_mean": PIXEL_MEAN_BGR,
            "pixel_std": PIXEL_STD,
            "anchor_rounding": False,
            "anchor_offset": 0.0,
            "roi_aligned": True,
            "roi_sampling_ratio": 0,
            "rpn_min_size": 0.0,
            "rpn_rank_by_logit": True,
            "roi_level_rule": "detectron2",
            "det_min_size": 0.0,
            "class_agnostic_mask": bool(d["class_agnostic_mask"]),
            "landmark_predictor": "deconv_upsample",
            "landmark_deconvs": 2,
            "landmark_channels": int(sd["roi_heads.keypoint_head.conv_fcn1.weight"].shape[0]) if "landmark" in d["heads"] else 512,
            "input_size": 800,
        }
    )


def build(sd: dict[str, torch.Tensor], source: str, *, config_override: dict | None = None):
    from ..checkpoint import check_state_dict
    from ..model import build_model

    d = describe(sd, source)
    if d["num_classes"] != NUM_CATEGORIES:
        raise CheckpointImportError(
            source,
            FAMILY,
            f"box predictor has {d['num_classes']} categories (ROI_HEADS.NUM_CLASSES); a DeepFashion2 model has {NUM_CATEGORIES}. "
            "A COCO-shaped checkpoint can start a training: df2infer train --init CKPT",
            [f"{k} {tuple(d['sd'][k].shape)}" for k in (f"roi_heads.box_predictor.{p}.weight" for p in ("cls_score", "bbox_pred"))],
        )
    if "landmark" in d["heads"] and d["num_keypoints"] != NUM_KEYPOINTS:
        w = d["sd"]["roi_heads.keypoint_head.score_lowres.weight"]
        raise CheckpointImportError(
            source,
            FAMILY,
            f"keypoint head predicts {d['num_keypoints']} keypoints; a DeepFashion2 landmark head has {NUM_KEYPOINTS}",
            [f"roi_heads.keypoint_head.score_lowres.weight {tuple(w.shape)}"],
        )
    if not d["heads"]:
        raise CheckpointImportError(source, FAMILY, "no mask and no keypoint head: a Faster R-CNN; the product needs at least one of them")
    mapped, defaulted = _map(d, source, strict=True)
    cfg = config_for(d)
    if config_override:
        cfg.update(config_override)
    model = build_model(cfg)
    check_state_dict(model, mapped, source)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in mapped.items()})
    table = tensor_table(d["depth"], d["heads"])
    report = {
        "config": cfg,
        "mapped": [(k, table[k][0]) for k in table],
        "ignored": [],
        "defaulted": defaulted,
        "heads": list(d["heads"]),
        "default_input_hw": (800, 1344),
        "description": f"detectron2 ResNet-{d['depth']}-FPN (MSRA), heads: {', '.join(d['heads'])}"
        + (", class-agnostic masks" if d["class_agnostic_mask"] else ""),
    }
    return model.float().eval(), report


def map_for_training(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    mapped, _ = _map(describe(sd, source), source, strict=False)
    return mapped
