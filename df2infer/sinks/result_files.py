"""DeepFashion2 / COCO result files: the official entries of one image's Detections, the official
retrieval entries of ranked queries, and a sink that collects detections for many images and writes
the JSON files (bbox, segm, keys)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.data import spec

KINDS = ("bbox", "segm", "keys")


def df2_result_entries(det, image_id: int) -> dict[str, list[dict]]:
    """Official DeepFashion2 result entries for one image: {"bbox": [...], "segm": [...], "keys": [...]}.

    bbox: {image_id, category_id, bbox [x, y, w, h], score}
    segm: {image_id, category_id, segmentation RLE {size, counts str}, score}
    keys: {image_id, category_id, keypoints [294 * 3], score}; the item's own category's slots
          hold x, y, 1 (v = 1, as in the official example), every other slot 0, 0, 0.
    """
    out: dict[str, list[dict]] = {"bbox": [], "segm": [], "keys": []}
    rles = det.rle() if det.masks is not None else None
    starts = spec.slot_starts()
    for i in range(len(det)):
        cid = int(det.labels[i])
        score = round(float(det.scores[i]), 6)
        x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
        out["bbox"].append(
            {
                "image_id": int(image_id),
                "category_id": cid,
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": score,
            }
        )
        if rles is not None:
            out["segm"].append({"image_id": int(image_id), "category_id": cid, "segmentation": rles[i], "score": score})
        if det.landmarks is not None:
            kp = np.zeros((spec.NUM_LANDMARKS, 3), dtype=np.float64)
            lm = det.landmarks[i]
            s0 = int(starts[cid])
            kp[s0 : s0 + len(lm), :2] = lm[:, :2]
            kp[s0 : s0 + len(lm), 2] = 1
            out["keys"].append(
                {"image_id": int(image_id), "category_id": cid, "keypoints": [round(float(v), 3) for v in kp.reshape(-1)], "score": score}
            )
    return out


def retrieval_entries(queries: list[tuple[Any, Any, list]]) -> list[dict]:
    """Official DeepFashion2 retrieval entries from (image_id, Detections, per-detection Match lists):
    {query_image_id, query_bbox [x1, y1, x2, y2], query_cls, query_score, gallery_image_id [...], gallery_bbox [...]}
    per query detection, its gallery items in rank order."""
    entries: list[dict] = []
    for image_id, det, ranked in queries:
        for i in range(len(det)):
            entries.append(
                {
                    "query_image_id": int(image_id),
                    "query_bbox": [round(float(v), 2) for v in det.boxes[i]],
                    "query_cls": int(det.labels[i]),
                    "query_score": round(float(det.scores[i]), 6),
                    "gallery_image_id": [int(m.image_id) for m in ranked[i]],
                    "gallery_bbox": [[round(float(v), 2) for v in m.box] for m in ranked[i]],
                }
            )
    return entries


class ResultFilesSink:
    """add(det, image_id) per image; close() writes <folder>/<prefix>_{bbox,segm,keys}.json
    (a kind no image produced, e.g. segm without masks, is not written)."""

    def __init__(self, folder: str | os.PathLike, prefix: str = "results"):
        self.folder = Path(folder)
        self.prefix = prefix
        self.entries: dict[str, list[dict]] = {k: [] for k in KINDS}

    def add(self, det, image_id: int) -> None:
        for k, v in df2_result_entries(det, image_id).items():
            self.entries[k] += v

    def close(self) -> dict[str, Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        written = {}
        for k, v in self.entries.items():
            if v or k == "bbox":
                p = self.folder / f"{self.prefix}_{k}.json"
                p.write_text(json.dumps(v))
                written[k] = p
        return written
