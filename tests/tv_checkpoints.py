"""Deterministic torchvision Mask / Keypoint R-CNN checkpoints for the import and parity tests.

Built with torchvision's own builders (14 classes, 294 keypoints), seeded; then conditioned so that
they detect something with clear margins: BatchNorm statistics measured on the test images (a
random ResNet-50 in eval mode otherwise grows its activations stage by stage), and the objectness
and class-score weights scaled up (at their initial 0.01 scale every score is ~1/14 and every
objectness ~0.5, and the selections between near-ties would test float rounding, not the mapping).
"""

from __future__ import annotations

import numpy as np
import torch

RPN_TOP_N = 300  # both sides use the same pre/post-NMS proposal counts (torchvision's default 1000 costs more here)


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """BGR uint8 h x w: flat-coloured ellipses and rectangles on noise, deterministic."""
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 140, size=(h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(6):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.08, 0.3) * w, rng.uniform(0.08, 0.3) * h
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        img[inside] = rng.integers(0, 256, size=3)
    return img


def to_tv_input(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))).float() / 255.0


def smooth_mask_head(m) -> None:
    """Spatially smooth masks: random 3x3 kernels give speckled 28 x 28 masks whose 0.5 contour moves
    with any sub-pixel shift, so pasting could not be compared. Each mask conv becomes a box filter
    per channel (zero padding makes the response fall off towards the RoI border), the
    deconv a nearest-neighbour upsampling, the logits conv the channel mean; make() then sets a
    different threshold (bias) per class, so a wrong class channel gives a different mask."""
    with torch.no_grad():
        for mod in m.roi_heads.mask_head.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.zero_()
                for c in range(min(mod.weight.shape[:2])):
                    mod.weight[c, c] = 1.0 / 9
                if mod.bias is not None:
                    mod.bias.zero_()
        up = m.roi_heads.mask_predictor.conv5_mask
        up.weight.zero_()
        for c in range(min(up.weight.shape[:2])):
            up.weight[c, c] = 1.0
        up.bias.zero_()
        logits = m.roi_heads.mask_predictor.mask_fcn_logits
        logits.weight.fill_(1.0 / logits.weight.shape[1])
        logits.bias.zero_()


def make(kind: str, size: int, seed: int = 0, images: list[np.ndarray] | None = None):
    """kind: mask_v1 | mask_v2 | keypoint_v1 -> torchvision model (eval) built for input size x size."""
    from torchvision.models.detection import keypointrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

    torch.manual_seed(seed)
    opts = dict(
        weights=None,
        weights_backbone=None,
        num_classes=14,
        min_size=size,
        max_size=size,
        rpn_pre_nms_top_n_test=RPN_TOP_N,
        rpn_post_nms_top_n_test=RPN_TOP_N,
        box_detections_per_img=100,
    )
    if kind == "keypoint_v1":
        m = keypointrcnn_resnet50_fpn(num_keypoints=294, **opts)
    else:
        m = {"mask_v1": maskrcnn_resnet50_fpn, "mask_v2": maskrcnn_resnet50_fpn_v2}[kind](**opts)
    m.eval()
    if m.roi_heads.mask_predictor is not None:
        smooth_mask_head(m)
    calib = [to_tv_input(im) for im in images or [scene(size, size, 100)]]
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.train()
        bn.momentum = None  # cumulative average over the calibration pass
    with torch.no_grad():
        m(calib)
    for bn in bns:
        bn.eval()
    # scale the score layers so their logits have a set spread on the calibration image
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.rpn.head.register_forward_hook(lambda mod, i, o: seen.__setitem__("rpn", torch.cat([x.flatten() for x in o[0]]))),
        m.roi_heads.box_predictor.register_forward_hook(lambda mod, i, o: seen.__setitem__("cls", o[0])),
    ]
    if m.roi_heads.mask_predictor is not None:
        hooks.append(m.roi_heads.mask_predictor.register_forward_hook(lambda mod, i, o: seen.__setitem__("mask", o)))
    with torch.no_grad():
        m(calib)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        rpn = m.rpn.head.cls_logits
        rpn.weight.mul_(3.0 / float(seen["rpn"].std()))  # objectness logits spread ~3
        cls = m.roi_heads.box_predictor.cls_score
        k = 2.0 / float(seen["cls"].std())  # class logits spread ~2
        cls.weight.mul_(k)
        cls.bias.mul_(k)
        z = seen["cls"] * k
        margin = z[:, 1:].max(1).values - z[:, 0]  # how far each RoI's best category beats background
        cls.bias[0] += float(torch.quantile(margin, 0.95))  # 1 RoI in 20 foreground: a few detections, not N
        m.roi_heads.box_predictor.bbox_pred.weight.mul_(5.0)
        if "mask" in seen:  # decisive probabilities, about half of each box on, a different extent per class
            mk = m.roi_heads.mask_predictor.mask_fcn_logits
            k = 10.0 / float(seen["mask"].std())
            offsets = torch.linspace(-1.5, 1.5, mk.bias.numel())[torch.randperm(mk.bias.numel())]
            mk.weight.mul_(k)
            mk.bias.copy_(-k * float(seen["mask"].median()) + offsets)
    return m.eval()
