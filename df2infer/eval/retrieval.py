"""Consumer-to-shop retrieval top-k accuracy under the official DeepFashion2 protocol.

Ground-truth queries are the consumer ("user") items with style > 0; the ground-truth gallery
is the shop items. For every ground-truth query:
1. each retrieval entry of that consumer image is assigned to the ground-truth item of the image
   with which its `query_bbox` has the highest IoU (entries overlapping no item are unassigned);
2. of the entries assigned to this query, those with `query_cls` equal to its category are kept
   and the one with the highest `query_score` is used (none: the query is a miss at every k);
3. gallery position j is a hit when `gallery_image_id[j]` is a shop image holding a ground-truth
   item with the query's pair_id and style whose box has IoU >= 0.5 with `gallery_bbox[j]`;
4. top-k accuracy = (queries with a hit among the first k positions) / (all ground-truth queries
   with style > 0), for k = 1, 5, 10, 15, 20.
"""

from __future__ import annotations

import numpy as np

from ..data.annotations import ImageAnnotation
from ..ops.boxes import box_iou

TOP_K = (1, 5, 10, 15, 20)


def evaluate_retrieval(images: list[ImageAnnotation], entries: list[dict], *, ks=TOP_K, iou_threshold: float = 0.5) -> dict:
    """{"top1": .., "top5": .., ..., "num_queries": n, "num_queries_detected": m}."""
    # (pair_id, style) -> {shop image_id: [boxes]}
    gallery: dict[tuple[int, int], dict[int, list]] = {}
    for im in images:
        if im.source != "shop":
            continue
        for it in im.items:
            if it.style > 0:
                gallery.setdefault((im.pair_id, it.style), {}).setdefault(im.image_id, []).append(it.bbox)
    entries_by_img: dict[int, list[dict]] = {}
    for e in entries:
        entries_by_img.setdefault(int(e["query_image_id"]), []).append(e)

    hits = {k: 0 for k in ks}
    n_queries = n_detected = 0
    for im in images:
        if im.source != "user":
            continue
        queries = [(i, it) for i, it in enumerate(im.items) if it.style > 0]
        if not queries:
            continue
        n_queries += len(queries)
        dets = entries_by_img.get(im.image_id, [])
        if not dets:
            continue
        ious = box_iou([d["query_bbox"] for d in dets], [it.bbox for it in im.items], np.float64)
        assigned = ious.argmax(axis=1)
        overlaps = ious.max(axis=1) > 0
        for i, it in queries:
            cands = [d for d, a, ok in zip(dets, assigned, overlaps) if ok and a == i and int(d["query_cls"]) == it.category_id]
            if not cands:
                continue
            n_detected += 1
            best = max(cands, key=lambda d: float(d["query_score"]))
            targets = gallery.get((im.pair_id, it.style), {})
            first_hit = None
            for j, (gid, gbox) in enumerate(zip(best["gallery_image_id"], best["gallery_bbox"])):
                boxes = targets.get(int(gid))
                if boxes and float(box_iou([gbox], boxes, np.float64).max()) >= iou_threshold:
                    first_hit = j
                    break
            if first_hit is not None:
                for k in ks:
                    if first_hit < k:
                        hits[k] += 1
    out = {f"top{k}": (hits[k] / n_queries if n_queries else None) for k in ks}
    out["num_queries"] = n_queries
    out["num_queries_detected"] = n_detected
    return out
