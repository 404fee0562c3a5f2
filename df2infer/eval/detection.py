"""Box, mask and landmark AP on DeepFashion2, with stock pycocotools (the official protocol).

- Box and mask AP: COCOeval "bbox" / "segm" on the converted ground truth (data/coco.py).
- Landmark AP: COCOeval "keypoints" with 294 keypoints, `params.kpt_oks_sigmas` = the official
  294 sigmas, ground-truth `area` = box w * h (computeOks uses it as the OKS scale), maxDets 20
  (pycocotools' keypoint default). COCOeval evaluates per category (useCats=1), so a prediction
  only ever matches a ground truth of the same category and only that category's slots count
  (the others are zero, v = 0, in the ground truth). Two ground truths: visible + occluded
  ("landmarks_all") and visible only ("landmarks_visible", occluded landmarks zeroed).
  Ground truths with no labelled landmark are ignored (pycocotools: num_keypoints == 0).

Per-attribute breakdown (scale, occlusion, zoom_in, viewpoint, values 1..3), as in the paper's
tables: the IoUs / OKS are computed once on the whole ground truth; for each group, every ground
truth outside the group is marked *ignore* (on top of pycocotools' own ignore flags) and the
per-image matching is rerun. COCOeval then matches predictions to in-group ground truth first;
a prediction whose best match is an ignored (out-of-group) ground truth is itself ignored
(neither a true nor a false positive), so detecting other groups' items costs nothing. A
prediction that matches no ground truth at all remains a false positive in every group. `iscrowd`
is not used for this (it would change the IoU to intersection / prediction area).
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data import spec

ATTRIBUTES = {"scale": spec.SCALE, "occlusion": spec.OCCLUSION, "zoom_in": spec.ZOOM_IN, "viewpoint": spec.VIEWPOINT}

BOX_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KPT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# metric name -> (iouType, which ground truth, which result kind)
METRICS = {
    "box": ("bbox", "instances", "bbox"),
    "mask": ("segm", "instances", "segm"),
    "landmarks_visible": ("keypoints", "keypoints_visible", "keys"),
    "landmarks_all": ("keypoints", "instances", "keys"),
}


def coco_from_dict(d: dict) -> COCO:
    """A pycocotools COCO object from an in-memory dict, without its prints."""
    c = COCO()
    c.dataset = copy.deepcopy(d)
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def _load_res(gt: COCO, entries: list[dict]) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(copy.deepcopy(entries))


def _stats_dict(stats, names) -> dict:
    return {n: (None if float(v) < 0 else float(v)) for n, v in zip(names, stats)}


class DF2COCOeval(COCOeval):
    """COCOeval with one DeepFashion2 correction to keypoint OKS.

    For a ground truth with no labelled landmark (ignored; in the visible-only variant: every
    landmark occluded), pycocotools measures a prediction's keypoints against an ignore region
    (twice the box) over all 294 slots. A DeepFashion2 prediction fills only its category's slots
    (the others are 0, far outside the region), so even a perfect prediction never matches the
    ignored item and counts as a false positive. Here the region test uses the item's own
    category's slots only, so such a prediction is ignored, as COCO's ignore rule intends."""

    def computeOks(self, imgId, catId):
        ious = super().computeOks(imgId, catId)
        if len(ious) == 0:
            return ious
        p = self.params
        gts = self._gts[imgId, catId]
        dts = sorted(self._dts[imgId, catId], key=lambda d: -d["score"])[: p.maxDets[-1]]
        var = (np.asarray(p.kpt_oks_sigmas) * 2) ** 2
        for j, gt in enumerate(gts):
            g = np.asarray(gt["keypoints"], dtype=np.float64)
            if np.count_nonzero(g[2::3] > 0):
                continue
            own = spec.category(gt["category_id"]).slots
            sl = slice(own.start, own.stop)
            x, y, w, h = gt["bbox"]
            for i, dt in enumerate(dts):
                d = np.asarray(dt["keypoints"], dtype=np.float64)
                xd, yd = d[0::3][sl], d[1::3][sl]
                dx = np.maximum(0, (x - w) - xd) + np.maximum(0, xd - (x + 2 * w))
                dy = np.maximum(0, (y - h) - yd) + np.maximum(0, yd - (y + 2 * h))
                e = (dx**2 + dy**2) / var[sl] / (gt["area"] + np.spacing(1)) / 2
                ious[i, j] = np.mean(np.exp(-e))
        return ious


class _Scorer:
    """One COCOeval run whose IoUs are reused to score ground-truth subsets."""

    def __init__(self, gt: COCO, entries: list[dict], iou_type: str):
        self.iou_type = iou_type
        self.names = KPT_STATS if iou_type == "keypoints" else BOX_STATS
        dt = _load_res(gt, entries)
        self.E = (DF2COCOeval if iou_type == "keypoints" else COCOeval)(gt, dt, iou_type)
        if iou_type == "keypoints":
            self.E.params.kpt_oks_sigmas = spec.oks_sigmas().copy()
        with contextlib.redirect_stdout(io.StringIO()):
            self.E.evaluate()
        self._gts = [g for gs in self.E._gts.values() for g in gs]
        self._base_ignore = [int(bool(g["ignore"])) for g in self._gts]

    def score(self, keep_ann_ids: set[int] | None = None) -> dict:
        """COCO stats with every ground truth outside keep_ann_ids (None: keep all) ignored."""
        E, p = self.E, self.E.params
        for g, base in zip(self._gts, self._base_ignore):
            g["ignore"] = base or (keep_ann_ids is not None and g["id"] not in keep_ann_ids)
        cat_ids = p.catIds if p.useCats else [-1]
        max_det = p.maxDets[-1]
        E.evalImgs = [E.evaluateImg(i, c, a, max_det) for c in cat_ids for a in p.areaRng for i in p.imgIds]
        with contextlib.redirect_stdout(io.StringIO()):
            E.accumulate()
            E.summarize()
        return _stats_dict(E.stats, self.names)


def _zero_stats(names) -> dict:
    return {n: 0.0 for n in names}


def evaluate_detection(gt: dict[str, dict], results: dict[str, list[dict]], *, breakdown: bool = True) -> dict:
    """Box / mask / landmark AP. `gt`: {"instances": coco dict, "keypoints_visible": coco dict}
    (data.coco.dataset_to_coco); `results`: {kind: entries} with any of bbox, segm, keys.

    Returns {metric: {"overall": stats, "by_attribute": {attr: {value_name: stats}}}} where stats
    holds AP, AP50, AP75, ... (None where there is no ground truth to score)."""
    cocos = {k: coco_from_dict(v) for k, v in gt.items()}
    anns = gt["instances"]["annotations"]
    groups = {attr: {v: {a["id"] for a in anns if a.get(attr) == v} for v in names} for attr, names in ATTRIBUTES.items()}
    out: dict = {}
    for metric, (iou_type, gt_key, kind) in METRICS.items():
        if kind not in results:
            continue
        names = KPT_STATS if iou_type == "keypoints" else BOX_STATS
        entries = results[kind]
        res: dict = {}
        if not entries:  # pycocotools cannot load an empty result list: nothing found, AP 0
            res["overall"] = _zero_stats(names)
            if breakdown:
                res["by_attribute"] = {
                    attr: {ATTRIBUTES[attr][v]: (_zero_stats(names) if ids else None) for v, ids in g.items()} for attr, g in groups.items()
                }
            out[metric] = res
            continue
        sc = _Scorer(cocos[gt_key], entries, iou_type)
        res["overall"] = sc.score(None)
        if breakdown:
            res["by_attribute"] = {
                attr: {ATTRIBUTES[attr][v]: (sc.score(ids) if ids else None) for v, ids in g.items()} for attr, g in groups.items()
            }
        out[metric] = res
    return out
