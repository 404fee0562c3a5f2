"""torchvision Mask R-CNN / Keypoint R-CNN checkpoints (v1 `maskrcnn_resnet50_fpn`, `keypointrcnn_resnet50_fpn`;
v2 `maskrcnn_resnet50_fpn_v2`), ResNet-50 or -101 FPN, as a Match R-CNN without a matching network.

The table (`tensor_table`) names every tensor such a checkpoint holds and where it goes; the only
changes made to a tensor are listed there (mask logits: the background channel dropped, since this
project's mask channel c-1 is category c and torchvision's channel c is class c). Semantics kept
as torchvision has them, in the model config: RGB with ImageNet mean/std (this project's own
normalization, (x - 255 mean) / (255 std) = (x/255 - mean) / std), rounded cell anchors, RoIAlign
aligned=False with sampling ratio 2, BoxCoder (10, 10, 5, 5), detections >= 1e-2 px, the keypoint
predictor's 4x4 deconv + bilinear x2 (heatmaps 56 x 56 from 14 x 14 RoIs). Class order: torchvision's
label c (1..13) is DeepFashion2 category c, 0 is background, as in a DeepFashion2 COCO-format
fine-tune. torchvision has no Keypoint R-CNN v2 builder, so v2 is Mask R-CNN only; a checkpoint
with both a mask and a keypoint head (a custom MaskRCNN with keypoint heads) maps both.
"""

from __future__ import annotations

import re

import torch

from ..checkpoint import CheckpointImportError
from ..config import model_config
from .checks import bottleneck_resnet_depth, check_table_covers

FAMILY = "torchvision"
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BN = ("weight", "bias", "running_mean", "running_var")
NUM_CLASSES = 14  # 13 DeepFashion2 categories + background
NUM_KEYPOINTS = 294

# names of torchvision < 0.13 (its own loaders upgrade them the same way)
_LEGACY = (
    (re.compile(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.(weight|bias)$"), r"backbone.fpn.\1_blocks.\2.0.\3"),
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"), r"rpn.head.conv.0.0.\1"),
)


def _legacy_name(k: str) -> str:
    for pat, rep in _LEGACY:
        if pat.match(k):
            return pat.sub(rep, k)
    m = re.match(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$", k)
    if m:
        return f"roi_heads.mask_head.{int(m.group(1)) - 1}.0.{m.group(2)}"
    m = re.match(r"^roi_heads\.keypoint_head\.conv_fcn(\d+)\.(weight|bias)$", k)
    if m:
        return f"roi_heads.keypoint_head.{2 * (int(m.group(1)) - 1)}.{m.group(2)}"
    return k


def tensor_table(depth: int, v2: bool, heads: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """{torchvision name: (this project's name, transform)} for every tensor of the checkpoint;
    transform is "copy" or "drop_background" (first row of the mask logits conv)."""
    t: dict[str, tuple[str, str]] = {}

    def same(name: str, how: str = "copy") -> None:
        t[name] = (name, how)

    body = "backbone.body."
    same(body + "conv1.weight")
    for p in BN:
        same(f"{body}bn1.{p}")
    for s, n in enumerate(BLOCKS[depth], 1):
        for b in range(n):
            pre = f"{body}layer{s}.{b}."
            for c in (1, 2, 3):
                same(f"{pre}conv{c}.weight")
                for p in BN:
                    same(f"{pre}bn{c}.{p}")
            if b == 0:
                same(pre + "downsample.0.weight")
                for p in BN:
                    same(f"{pre}downsample.1.{p}")
    for kind in ("inner", "layer"):
        for i in range(4):
            pre = f"backbone.fpn.{kind}_blocks.{i}."
            if v2:
                same(pre + "0.weight")
                for p in (*BN, "num_batches_tracked"):
                    same(f"{pre}1.{p}")
            else:
                same(pre + "0.weight")
                same(pre + "0.bias")
    for i in range(2 if v2 else 1):
        same(f"rpn.head.conv.{i}.0.weight")
        same(f"rpn.head.conv.{i}.0.bias")
    for p in ("cls_logits", "bbox_pred"):
        same(f"rpn.head.{p}.weight")
        same(f"rpn.head.{p}.bias")
    if v2:
        for i in range(4):
            same(f"roi_heads.box_head.{i}.0.weight")
            for p in (*BN, "num_batches_tracked"):
                same(f"roi_heads.box_head.{i}.1.{p}")
        same("roi_heads.box_head.5.weight")
        same("roi_heads.box_head.5.bias")
    else:
        for fc in ("fc6", "fc7"):
            same(f"roi_heads.box_head.{fc}.weight")
            same(f"roi_heads.box_head.{fc}.bias")
    for p in ("cls_score", "bbox_pred"):
        same(f"roi_heads.box_predictor.{p}.weight")
        same(f"roi_heads.box_predictor.{p}.bias")
    if "mask" in heads:
        for i in range(4):
            same(f"roi_heads.mask_head.{i}.0.weight")
            if v2:
                for p in (*BN, "num_batches_tracked"):
                    same(f"roi_heads.mask_head.{i}.1.{p}")
            else:
                same(f"roi_heads.mask_head.{i}.0.bias")
        same("roi_heads.mask_predictor.conv5_mask.weight")
        same("roi_heads.mask_predictor.conv5_mask.bias")
        same("roi_heads.mask_predictor.mask_fcn_logits.weight", "drop_background")
        same("roi_heads.mask_predictor.mask_fcn_logits.bias", "drop_background")
    if "landmark" in heads:
        for i in range(8):
            same(f"roi_heads.keypoint_head.{2 * i}.weight")
            same(f"roi_heads.keypoint_head.{2 * i}.bias")
        same("roi_heads.keypoint_predictor.kps_score_lowres.weight")
        same("roi_heads.keypoint_predictor.kps_score_lowres.bias")
    return t


def _ignored(k: str) -> bool:
    """Tensors accepted and not used: BatchNorm's training step counter of the ResNet body (the body
    runs as frozen BN: the statistics are used, the counter is not)."""
    return k.startswith("backbone.body.") and k.endswith(".num_batches_tracked")


def describe(sd: dict[str, torch.Tensor], source: str) -> dict:
    """What the checkpoint is: depth, v2, heads, class and keypoint counts (structure errors raised here)."""
    sd = {_legacy_name(k): v for k, v in sd.items()}
    depth = bottleneck_resnet_depth(sd, source, FAMILY, first_block="backbone.body.layer1.0.", third_stage="backbone.body.layer3.")
    v2 = "rpn.head.conv.1.0.weight" in sd or "roi_heads.box_head.0.0.weight" in sd
    heads = tuple(h for h, pre in (("mask", "roi_heads.mask_"), ("landmark", "roi_heads.keypoint_")) if any(k.startswith(pre) for k in sd))
    cls = sd.get("roi_heads.box_predictor.cls_score.weight")
    kps = sd.get("roi_heads.keypoint_predictor.kps_score_lowres.weight")
    return {
        "sd": sd,
        "depth": depth,
        "v2": v2,
        "heads": heads,
        "num_classes": None if cls is None else int(cls.shape[0]),
        "num_keypoints": None if kps is None else int(kps.shape[1]),
    }


def _map(d: dict, source: str, *, strict: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Apply the table; strict: every tensor known and present. Returns (our tensors, ignored names)."""
    sd, table = d["sd"], tensor_table(d["depth"], d["v2"], d["heads"])
    check_table_covers(sd, table, source, FAMILY, strict=strict, ignored=_ignored)
    out = {}
    for theirs, (ours, how) in table.items():
        if theirs not in sd:
            continue
        v = sd[theirs]
        if how == "drop_background":
            if d["num_classes"] != NUM_CLASSES:
                continue  # another class count: its mask logits have no place (train --init reports it untrained)
            v = v[1:]
        out[ours] = v
    return out, sorted(k for k in sd if _ignored(k))


def config_for(d: dict) -> dict:
    sd = d["sd"]
    cfg = model_config(
        {
            "name": f"torchvision_{'keypoint' if d['heads'] == ('landmark',) else 'mask'}rcnn_r{d['depth']}_fpn{'_v2' if d['v2'] else ''}",
            "family": FAMILY,
            "backbone": f"resnet{d['depth']}",
            "norm": "frozen_bn",
            "fpn_channels": int(sd["backbone.fpn.inner_blocks.0.0.weight"].shape[0]),
            "fpn_norm": "bn" if d["v2"] else None,
            "rpn_conv_depth": 2 if d["v2"] else 1,
            "box_head": "conv4_fc_bn" if d["v2"] else "mlp",
            "box_fc": int(sd["roi_heads.box_predictor.cls_score.weight"].shape[1]),
            "head_norm": "bn" if d["v2"] else None,
            "heads": list(d["heads"]),
            "landmark_predictor": "deconv_upsample",
            "landmark_deconvs": 2,  # 14 -> 28 (deconv) -> 56 (bilinear x2)
            "landmark_channels": int(sd["roi_heads.keypoint_head.0.weight"].shape[0]) if "landmark" in d["heads"] else 512,
            "input_size": 800,
        }
    )
    return cfg


def build(sd: dict[str, torch.Tensor], source: str, *, config_override: dict | None = None):
    """The Match R-CNN of a torchvision checkpoint (export: 13 classes, 294 keypoints required)."""
    from ..checkpoint import check_state_dict
    from ..model import build_model

    d = describe(sd, source)
    if d["num_classes"] != NUM_CLASSES:
        raise CheckpointImportError(
            source,
            FAMILY,
            f"box predictor has {d['num_classes']} classes (background included); a DeepFashion2 model has {NUM_CLASSES} "
            "(13 categories + background). A COCO-shaped checkpoint can start a training: df2infer train --init CKPT",
            [
                f"roi_heads.box_predictor.{p}.weight {tuple(d['sd'][f'roi_heads.box_predictor.{p}.weight'].shape)}"
                for p in ("cls_score", "bbox_pred")
            ],
        )
    if "landmark" in d["heads"] and d["num_keypoints"] != NUM_KEYPOINTS:
        w = d["sd"]["roi_heads.keypoint_predictor.kps_score_lowres.weight"]
        raise CheckpointImportError(
            source,
            FAMILY,
            f"keypoint head predicts {d['num_keypoints']} keypoints; a DeepFashion2 landmark head has {NUM_KEYPOINTS} "
            "(all 13 categories' landmarks). Export without it is not offered silently: train with --init, or remove the head's tensors",
            [f"roi_heads.keypoint_predictor.kps_score_lowres.weight {tuple(w.shape)}"],
        )
    if not d["heads"]:
        raise CheckpointImportError(source, FAMILY, "no mask and no keypoint head: a Faster R-CNN; the product needs at least one of them")
    mapped, ignored = _map(d, source, strict=True)
    cfg = config_for(d)
    if config_override:
        cfg.update(config_override)
    model = build_model(cfg)
    check_state_dict(model, mapped, source)  # names are the table's; a shape that differs is named here
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in mapped.items()})
    table = tensor_table(d["depth"], d["v2"], d["heads"])
    report = {
        "config": cfg,
        "mapped": [(k, table[k][0]) for k in table],
        "ignored": ignored,
        "heads": list(d["heads"]),
        "default_input_hw": (800, 1344),
        "description": f"torchvision {'v2' if d['v2'] else 'v1'} ResNet-{d['depth']}-FPN, heads: {', '.join(d['heads'])}",
    }
    return model.float().eval(), report


def map_for_training(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Every tensor under this project's name (any class or keypoint count; the caller checks shapes)."""
    mapped, _ = _map(describe(sd, source), source, strict=False)
    return mapped
