"""Parity of an exported ONNX with the source framework's own forward pass (`df2infer export --check-parity`, tests).

    tv = torchvision_model(state_dict, input_hw)        # torchvision's own Mask/Keypoint R-CNN, these weights
    numbers = compare_torchvision(tv, "model.onnx", bgr_images, conf=0.3)

Step (a), the network input: images whose size is the graph's input size, so the runtime's letterbox is
the identity and torchvision's transform (min_size = max_size = that size) does not resize or pad:
both see the same tensor. Detections are matched one to one (same label, best IoU); the numbers are
the largest box difference relative to the image side, the label agreement, the smallest mask IoU
after each side pastes its masks into the image (torchvision: paste_masks_in_image; df2infer: its
runtime's pasting), and the largest keypoint distance in pixels (both decode torchvision's way). A keypoint
is an argmax: where torchvision's own heatmap has two points equal within its own float32 rounding
(measured against a float64 run of the same model), either is its answer; such reference ties are
counted apart (reference_tie) and every other keypoint is held to the distance.
Step (b), end to end: any image; torchvision resizes it (800/1333 by default) and pads bottom-right,
df2infer letterboxes it into its fixed input: the same numbers, measured, not expected to be small.
"""

from __future__ import annotations

import numpy as np
import torch

from df2infer.data import spec


def torchvision_model(sd: dict[str, torch.Tensor], input_hw: tuple[int, int] | None, *, max_detections: int = 100, **kw):
    """torchvision's own model for a torchvision checkpoint (describe() picks the builder), eval mode.
    input_hw: min_size = min(H, W), max_size = max(H, W) so an image of that size is not resized
    (None: torchvision's defaults 800 / 1333). kw: more builder options (rpn_pre_nms_top_n_test=...)."""
    from torchvision.models.detection import keypointrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

    from .torchvision import NUM_CLASSES, NUM_KEYPOINTS, describe

    d = describe(sd, "<torchvision>")
    if d["depth"] != 50 or d["heads"] not in (("mask",), ("landmark",)):
        raise ValueError(
            f"torchvision has builders for ResNet-50 Mask R-CNN (v1, v2) and Keypoint R-CNN (v1), not {d['depth']} {d['heads']}"
        )
    opts = dict(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, box_detections_per_img=max_detections, **kw)
    if input_hw is not None:
        opts.update(min_size=min(input_hw), max_size=max(input_hw))
    if d["heads"] == ("landmark",):
        m = keypointrcnn_resnet50_fpn(num_keypoints=NUM_KEYPOINTS, **opts)
    else:
        m = (maskrcnn_resnet50_fpn_v2 if d["v2"] else maskrcnn_resnet50_fpn)(**opts)
    m.load_state_dict(d["sd"] if not any(k.endswith("num_batches_tracked") for k in m.state_dict()) else _with_counters(m, d["sd"]))
    return m.eval()


def _with_counters(m, sd):
    """A builder without pretrained weights uses BatchNorm2d (with step counters) where a checkpoint may carry FrozenBN."""
    own = m.state_dict()
    return {**{k: own[k] for k in own if k.endswith("num_batches_tracked")}, **sd}


def parity_images(hw: tuple[int, int], n: int = 3) -> list[np.ndarray]:
    """n deterministic BGR uint8 images of the graph's input size: coloured ellipses on noise."""
    h, w = hw
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(n):
        img = rng.integers(90, 140, size=(h, w, 3), dtype=np.uint8)
        for _ in range(6):
            cx, cy, rx, ry = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.08, 0.3) * w, rng.uniform(0.08, 0.3) * h
            img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = rng.integers(0, 256, size=3)
        out.append(img)
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(inter / union)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def _run_keeping_heatmaps(model, x: torch.Tensor) -> tuple[dict, torch.Tensor | None]:
    """torchvision's forward on one image, and its keypoint logits [n, K, 56, 56] (rows = its detections) if it has a keypoint head."""
    seen: dict[str, torch.Tensor] = {}
    kp = getattr(model.roi_heads, "keypoint_predictor", None)
    hook = kp.register_forward_hook(lambda mod, i, o: seen.__setitem__("kp", o)) if kp is not None else None
    try:
        with torch.no_grad():
            r = model([x])[0]
    finally:
        if hook is not None:
            hook.remove()
    return r, seen.get("kp")


def compare_torchvision(tv_model, onnx_path, images_bgr: list[np.ndarray], *, conf: float = 0.3, margin: float = 0.02) -> dict:
    """Run torchvision's model and the exported ONNX (df2infer.load, CPU) on the same images; see compare_detections.
    For a Keypoint R-CNN it also runs a float64 copy of torchvision's model, so that each keypoint's heatmap carries
    torchvision's own float32 rounding error (compare_detections: reference ties)."""
    import copy

    tv64 = copy.deepcopy(tv_model).double() if getattr(tv_model.roi_heads, "keypoint_predictor", None) is not None else None
    refs = []
    for img in images_bgr:
        x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))).float() / 255.0
        r, maps = _run_keeping_heatmaps(tv_model, x)
        ref = {
            "boxes": r["boxes"].numpy(),
            "scores": r["scores"].numpy(),
            "labels": r["labels"].numpy(),
            "masks": (r["masks"][:, 0] >= 0.5).numpy() if "masks" in r else None,
            "keypoints": r["keypoints"][:, :, :2].numpy() if "keypoints" in r else None,
        }
        if tv64 is not None and maps is not None:
            r64, maps64 = _run_keeping_heatmaps(tv64, x.double())
            ref["keypoint_maps"], ref["keypoint_maps64"] = [], []
            for i in range(len(r["boxes"])):
                c = spec.category(int(r["labels"][i]))
                ref["keypoint_maps"].append(maps[i, c.slot_start : c.slot_end].numpy())
                # the same detection in the float64 run: same label, box within 1 px (else no rounding estimate: strict)
                d = (r64["boxes"].float() - r["boxes"][i]).abs().max(1).values + 1e3 * (r64["labels"] != r["labels"][i])
                j = int(d.argmin()) if len(d) else -1
                ref["keypoint_maps64"].append(maps64[j, c.slot_start : c.slot_end].numpy() if j >= 0 and float(d[j]) < 1.0 else None)
        refs.append(ref)
    return compare_detections(refs, onnx_path, images_bgr, conf=conf, margin=margin)


def reference_tie(maps32: np.ndarray, maps64: np.ndarray | None, box: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Per keypoint: is the point `xy` [k, 2] a co-maximum of the reference's own heatmap within the reference's own
    float32 rounding? maps32 / maps64 [k, Hm, Wm]: the reference's heatmap logits computed in float32 and float64;
    box: the reference's box. Each map is resized as Keypoint R-CNN decodes it (bicubic to ceil(box h) x ceil(box w));
    True where R32(max) - R32(at xy) <= max |R32 - R64| over that map: the gap between the reference's own argmax and
    `xy` is smaller than the reference's float32 error, so which of them float32 picks is rounding, not the model."""
    import torch.nn.functional as F

    k = len(xy)
    if maps64 is None:
        return np.zeros(k, dtype=bool)
    w, h = max(float(box[2] - box[0]), 1.0), max(float(box[3] - box[1]), 1.0)
    size = (int(np.ceil(h)), int(np.ceil(w)))
    r32 = F.interpolate(torch.from_numpy(np.asarray(maps32, np.float32))[None], size=size, mode="bicubic", align_corners=False)[0]
    r64 = F.interpolate(torch.from_numpy(np.asarray(maps64, np.float64))[None], size=size, mode="bicubic", align_corners=False)[0]
    noise = (r32.double() - r64).abs().flatten(1).max(1).values.numpy()
    xi = np.clip(np.round((xy[:, 0] - box[0]) * size[1] / w - 0.5), 0, size[1] - 1).astype(int)
    yi = np.clip(np.round((xy[:, 1] - box[1]) * size[0] / h - 0.5), 0, size[0] - 1).astype(int)
    r = r32.numpy()
    gap = r.reshape(k, -1).max(1) - r[np.arange(k), yi, xi]
    return gap <= noise


def compare_detections(refs: list[dict], onnx_path, images_bgr: list[np.ndarray], *, conf: float = 0.3, margin: float = 0.02) -> dict:
    """The reference framework's detections per image (`refs`: boxes [n, 4], scores [n], labels [n] as
    DeepFashion2 categories, masks bool [n, H, W] pasted by the framework or None, keypoints [n, 294, 2]
    or None; optionally keypoint_maps / keypoint_maps64: per detection its category's heatmap logits from the
    reference in float32 and float64, see reference_tie) against the exported ONNX run by df2infer.load() (CPU,
    landmark_method "torchvision", the decode both families use). Returns
    {"images", "detections_ref", "detections_ours", "matched", "unmatched": [...], "label_mismatches",
     "box_max_rel", "box_max_px", "score_max_abs", "mask_min_iou", "mask_mean_iou", "keypoint_max_px",
     "keypoint_ties", "keypoint_max_px_untied", "keypoints_compared", ...}: keypoint_max_px is the largest
    distance of all; keypoint_ties counts the keypoints farther than 0.5 px that are reference ties (the
    reference's own float32 heatmap cannot tell the two points apart), keypoint_max_px_untied the largest
    distance of the others.
    Detections are matched one to one (IoU > 0.5, best first); those scoring within `margin` of conf are
    left out of the count comparison (a hair above the threshold on one side may be a hair below on the other)."""
    import df2infer

    pred = df2infer.load(str(onnx_path), device="cpu")
    out: dict = dict(images=len(images_bgr), detections_ref=0, detections_ours=0, matched=0, unmatched=[], label_mismatches=0)
    box_rel, box_px, ious, kp_px, kp_untied, score_d = [], [], [], [], [], []
    kp_ties = kp_count = 0
    try:
        for n, (img, ref) in enumerate(zip(images_bgr, refs)):
            h, w = img.shape[:2]
            keep = np.asarray(ref["scores"]) >= conf
            tb, ts, tl = np.asarray(ref["boxes"])[keep], np.asarray(ref["scores"])[keep], np.asarray(ref["labels"])[keep]
            det = pred.predict([img], conf=conf, landmark_method="torchvision").ok[0]
            out["detections_ref"] += len(tb)
            out["detections_ours"] += len(det)
            used: set[int] = set()
            iou = _box_iou(tb, det.boxes) if len(tb) and len(det) else np.zeros((len(tb), len(det)))
            for i in range(len(tb)):
                cand = [j for j in np.argsort(-iou[i]) if j not in used and iou[i, j] > 0.5] if iou.shape[1] else []
                if not cand and len(det):  # a needle box (width or height ~0) has no stable IoU: the nearest box within 1 %
                    dist = np.abs(det.boxes - tb[i]).max(1) / max(h, w)
                    cand = [j for j in np.argsort(dist) if j not in used and dist[j] <= 0.01][:1]
                if not cand:
                    if ts[i] >= conf + margin:
                        out["unmatched"].append(f"image {n}: reference detection {i} (label {tl[i]}, score {ts[i]:.4f}) not found")
                    continue
                j = cand[0]
                used.add(j)
                out["matched"] += 1
                out["label_mismatches"] += int(tl[i] != det.labels[j])
                d = np.abs(tb[i] - det.boxes[j])
                box_px.append(float(d.max()))
                box_rel.append(float(d.max() / max(h, w)))
                score_d.append(abs(float(ts[i]) - float(det.scores[j])))
                if ref.get("masks") is not None and det.masks is not None:
                    ious.append(_iou(np.asarray(ref["masks"])[keep][i], det.full_mask(j)))
                if ref.get("keypoints") is not None and det.landmarks is not None:
                    c = spec.category(int(det.labels[j]))
                    theirs = np.asarray(ref["keypoints"])[keep][i, c.slot_start : c.slot_end, :2]
                    d = np.abs(theirs - det.landmarks[j][:, :2]).max(1)
                    kp_px.append(float(d.max()))
                    kp_count += len(d)
                    far = d > 0.5
                    if far.any() and ref.get("keypoint_maps") is not None and tl[i] == det.labels[j]:  # maps: its category's slots
                        k = int(np.flatnonzero(keep)[i])
                        tie = reference_tie(ref["keypoint_maps"][k], ref["keypoint_maps64"][k], tb[i], det.landmarks[j][:, :2]) & far
                        kp_ties += int(tie.sum())
                        d = d[~tie]
                    kp_untied.append(float(d.max(initial=0.0)))
            for j in range(len(det)):
                if j not in used and det.scores[j] >= conf + margin:
                    out["unmatched"].append(
                        f"image {n}: df2infer detection {j} (label {det.labels[j]}, score {det.scores[j]:.4f}) not in the reference"
                    )
    finally:
        pred.close()
    out.update(
        box_max_rel=max(box_rel, default=0.0),
        box_max_px=max(box_px, default=0.0),
        score_max_abs=max(score_d, default=0.0),
        mask_min_iou=min(ious, default=None),
        mask_mean_iou=float(np.mean(ious)) if ious else None,
        keypoint_max_px=max(kp_px, default=None),
        keypoint_max_px_untied=max(kp_untied, default=None),
        keypoint_ties=kp_ties,
        masks_compared=len(ious),
        keypoints_compared=len(kp_px),
        keypoint_points=kp_count,
    )
    return out


__all__ = ["compare_detections", "compare_torchvision", "parity_images", "reference_tie", "torchvision_model"]
