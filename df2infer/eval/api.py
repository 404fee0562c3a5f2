"""The evaluator's Python API.

    evaluate_predictions(dataset, results) -> dict

`results` is {kind: entries} with any subset of "bbox", "segm", "keys", "retrieval" in the
official result formats (eval/results.py), held in memory: the runtime (`df2infer eval --model`)
can build these lists from its detections and score them without writing files.
`ground_truth_as_results(dataset)` builds perfect predictions from the ground truth.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from ..data import spec
from ..data.annotations import Dataset, ImageAnnotation
from ..data.coco import dataset_to_coco
from .detection import evaluate_detection
from .results import KINDS, ResultFormatError, validate_results
from .retrieval import evaluate_retrieval


def _images(dataset: Dataset | list[ImageAnnotation]) -> list[ImageAnnotation]:
    return dataset.images if isinstance(dataset, Dataset) else list(dataset)


def ground_truth_coco(dataset: Dataset | list[ImageAnnotation]) -> dict[str, dict]:
    """{"instances": COCO dict, "keypoints_visible": COCO dict} with image sizes filled in."""
    inst = dataset_to_coco(dataset)
    vis = dataset_to_coco(dataset, visible_only=True)
    return {"instances": inst, "keypoints_visible": vis}


def evaluate_predictions(
    dataset: Dataset | list[ImageAnnotation], results: dict[str, list[dict]], *, breakdown: bool = True, validate: bool = True
) -> dict:
    """Score in-memory results against a DeepFashion2 data set (load_dataset(root)).

    Returns {"box"|"mask"|"landmarks_visible"|"landmarks_all": {"overall": {AP, AP50, AP75, ...},
    "by_attribute": {"scale": {"small": {...}, ...}, ...}}, "retrieval": {"top1", ..., "top20",
    "num_queries", "num_queries_detected"}, "num_images", "num_items", "scored": [kinds]};
    only the kinds present in `results` are scored. Raises ResultFormatError on malformed input."""
    unknown = set(results) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown result kinds {sorted(unknown)}, expected any of {KINDS}")
    images = _images(dataset)
    gt = ground_truth_coco(dataset)
    if validate:
        ids = {im["id"] for im in gt["instances"]["images"]}
        sizes = {im["id"]: (im["width"], im["height"]) for im in gt["instances"]["images"]}
        errs = []
        for kind, entries in results.items():
            errs += validate_results(kind, entries, source=f"{kind} results", image_ids=ids, image_sizes=sizes)
        if errs:
            raise ResultFormatError(f"{len(errs)} problem(s)\n" + "\n".join(errs[:30]))
    if any(k in results for k in ("segm",)) and any(im["width"] is None for im in gt["instances"]["images"]):
        raise ValueError("mask AP needs every image's width and height (load the data set with its images)")
    out: dict = {"num_images": len(images), "num_items": sum(len(im.items) for im in images), "scored": [k for k in KINDS if k in results]}
    out.update(evaluate_detection(gt, results, breakdown=breakdown))
    if "retrieval" in results:
        out["retrieval"] = evaluate_retrieval(images, results["retrieval"])
    return out


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> dict:
    """COCO RLE {size: [h, w], counts: str} of the union of the polygons."""
    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    rle = mask_utils.merge(rles)
    counts = rle["counts"]
    return {"size": [int(height), int(width)], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _perfect_keypoints(ann: dict) -> list[float]:
    """A ground-truth item's keypoints as a prediction: labelled landmarks where they are, the
    category's unlabelled ones (v=0, e.g. outside the image) at the box centre, as any real
    prediction places every landmark of its category somewhere on the item."""
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    own = spec.category(ann["category_id"]).slots
    x, y, w, h = ann["bbox"]
    unlabelled = np.zeros(len(kp), bool)
    unlabelled[own.start : own.stop] = kp[own.start : own.stop, 2] == 0
    kp[unlabelled, 0], kp[unlabelled, 1] = x + w / 2, y + h / 2
    return kp.reshape(-1).tolist()


def ground_truth_as_results(dataset: Dataset | list[ImageAnnotation], *, gallery_size: int = 20) -> dict[str, list[dict]]:
    """The ground truth as perfect predictions (score 1): bbox, segm, keys and retrieval.

    Retrieval: every consumer item with style > 0 queries; its gallery list puts the shop items
    with the same pair_id and style first, then other shop items, up to `gallery_size`."""
    images = _images(dataset)
    gt = dataset_to_coco(dataset)
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    bbox, segm, keys = [], [], []
    for a in gt["annotations"]:
        base = {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0}
        bbox.append({**base, "bbox": list(a["bbox"])})
        w, h = sizes[a["image_id"]]
        if w is not None:
            segm.append({**base, "segmentation": polygons_to_rle(a["segmentation"], h, w)})
        keys.append({**base, "keypoints": _perfect_keypoints(a)})
    shop = [(im, it) for im in images if im.source == "shop" for it in im.items]
    retrieval = []
    for im in images:
        if im.source != "user":
            continue
        for it in im.items:
            if it.style <= 0:
                continue
            match = [(s, g) for s, g in shop if s.pair_id == im.pair_id and g.style == it.style]
            rest = [(s, g) for s, g in shop if not (s.pair_id == im.pair_id and g.style == it.style)]
            gal = (match + rest)[:gallery_size]
            retrieval.append(
                {
                    "query_image_id": im.image_id,
                    "query_bbox": list(it.bbox),
                    "query_cls": it.category_id,
                    "query_score": 1.0,
                    "gallery_image_id": [s.image_id for s, _ in gal],
                    "gallery_bbox": [list(g.bbox) for _, g in gal],
                }
            )
    out = {"bbox": bbox, "keys": keys, "retrieval": retrieval}
    if len(segm) == len(bbox):
        out["segm"] = segm
    return out


__all__ = ["evaluate_predictions", "ground_truth_as_results", "ground_truth_coco", "polygons_to_rle"]
