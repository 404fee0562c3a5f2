"""The official DeepFashion2 result files: read, validate, write.

- `bbox.json`: [{image_id, category_id, bbox [x, y, w, h], score}]
- `segm.json`: [{image_id, category_id, segmentation {size [h, w], counts (COCO RLE string)}, score}]
- `keys.json`: [{image_id, category_id, keypoints [x, y, v] * 294, score}]
- `retrieval.json`: [{query_image_id, query_bbox [x1, y1, x2, y2], query_cls, query_score,
  gallery_image_id [ints], gallery_bbox [[x1, y1, x2, y2], ...]}] (20 gallery entries officially)

Every problem names the file, the entry index and the field.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.errors import InputError

from ..data import spec
from ..data.annotations import read_json

KINDS = ("bbox", "segm", "keys", "retrieval")


class ResultFormatError(InputError, ValueError):
    """A result file that breaks the official format; the message lists every problem found."""


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _box_problem(box, fmt: str) -> str | None:
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_num(v) for v in box)):
        return f"{box!r:.80} is not {fmt} (4 finite numbers)"
    if fmt.startswith("[x, y, w, h]") and (box[2] < 0 or box[3] < 0):
        return f"{box} has a negative width or height"
    if fmt.startswith("[x1") and (box[2] < box[0] or box[3] < box[1]):
        return f"{box} has x2 < x1 or y2 < y1"
    return None


def validate_results(
    kind: str,
    entries,
    *,
    source: str | None = None,
    image_ids: set[int] | None = None,
    image_sizes: dict[int, tuple[int, int]] | None = None,
) -> list[str]:
    """Every problem in a result list of `kind` (one of KINDS). `image_ids` (when given) are the
    images of the ground truth; `image_sizes` maps image_id -> (width, height) for RLE sizes."""
    if kind not in KINDS:
        raise ValueError(f"unknown result kind {kind!r}, expected one of {KINDS}")
    src = source or f"{kind}.json"
    if not isinstance(entries, list):
        return [f"{src}: expected a JSON list of entries, got {type(entries).__name__}"]
    errs: list[str] = []
    for i, e in enumerate(entries):

        def err(fld: str, msg: str, i: int = i) -> None:  # i bound now: the entry this check is about
            errs.append(f"{src}: entry {i}: {fld}: {msg}")

        if not isinstance(e, dict):
            errs.append(f"{src}: entry {i}: expected an object, got {type(e).__name__}")
            continue
        required: tuple[str, ...]
        if kind == "retrieval":
            required = ("query_image_id", "query_bbox", "query_cls", "query_score", "gallery_image_id", "gallery_bbox")
        else:
            required = ("image_id", "category_id", {"bbox": "bbox", "segm": "segmentation", "keys": "keypoints"}[kind], "score")
        missing = [k for k in required if k not in e]
        for k in missing:
            err(k, "missing")
        if missing:
            continue
        img_key = "query_image_id" if kind == "retrieval" else "image_id"
        cls_key = "query_cls" if kind == "retrieval" else "category_id"
        score_key = "query_score" if kind == "retrieval" else "score"
        iid = e[img_key]
        if not _is_int(iid):
            err(img_key, f"{iid!r} is not an int")
        elif image_ids is not None and iid not in image_ids:
            err(img_key, f"image {iid} is not in the ground truth")
        cid = e[cls_key]
        if not _is_int(cid) or not 1 <= cid <= spec.NUM_CATEGORIES:
            err(cls_key, f"{cid!r} is not a category id in 1..{spec.NUM_CATEGORIES}")
        if not _is_num(e[score_key]):
            err(score_key, f"{e[score_key]!r} is not a finite number")
        if kind == "bbox":
            p = _box_problem(e["bbox"], "[x, y, w, h]")
            if p:
                err("bbox", p)
        elif kind == "keys":
            kp = e["keypoints"]
            if not isinstance(kp, list) or len(kp) != 3 * spec.NUM_LANDMARKS:
                n = len(kp) if isinstance(kp, list) else type(kp).__name__
                err("keypoints", f"expected {3 * spec.NUM_LANDMARKS} numbers ([x, y, v] * {spec.NUM_LANDMARKS}), got {n}")
            elif not all(_is_num(v) for v in kp):
                err("keypoints", "contains a value that is not a finite number")
        elif kind == "segm":
            seg = e["segmentation"]
            if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
                err("segmentation", "expected a COCO RLE object {size: [h, w], counts: str}")
            elif not (isinstance(seg["size"], list) and len(seg["size"]) == 2 and all(_is_int(v) and v > 0 for v in seg["size"])):
                err("segmentation.size", f"{seg['size']!r} is not [height, width]")
            elif not isinstance(seg["counts"], (str, list)):
                err("segmentation.counts", "expected an RLE string (or a list of run lengths)")
            elif image_sizes is not None and _is_int(iid) and iid in image_sizes:
                w, h = image_sizes[iid]
                if w is not None and list(seg["size"]) != [h, w]:
                    err("segmentation.size", f"{seg['size']} but image {iid} is {h} high, {w} wide ([h, w] = [{h}, {w}])")
        else:  # retrieval
            p = _box_problem(e["query_bbox"], "[x1, y1, x2, y2]")
            if p:
                err("query_bbox", p)
            gi, gb = e["gallery_image_id"], e["gallery_bbox"]
            if not isinstance(gi, list) or not all(_is_int(v) for v in gi):
                err("gallery_image_id", "expected a list of ints")
            elif not isinstance(gb, list):
                err("gallery_bbox", "expected a list of [x1, y1, x2, y2] boxes")
            elif len(gi) != len(gb):
                err("gallery_bbox", f"{len(gb)} boxes but {len(gi)} gallery_image_id entries")
            else:
                for j, b in enumerate(gb):
                    p = _box_problem(b, "[x1, y1, x2, y2]")
                    if p:
                        err(f"gallery_bbox[{j}]", p)
                        break
    return errs


def _raise(errs: list[str], limit: int = 30) -> None:
    if errs:
        more = f"\n... and {len(errs) - limit} more" if len(errs) > limit else ""
        raise ResultFormatError(f"{len(errs)} problem(s)\n" + "\n".join(errs[:limit]) + more)


def kind_of(path: str | os.PathLike) -> str:
    stem = Path(path).stem
    if stem not in KINDS:
        raise ValueError(f"{path}: cannot tell the result kind from the name, expected one of " + ", ".join(k + ".json" for k in KINDS))
    return stem


def read_results(
    path: str | os.PathLike,
    kind: str | None = None,
    *,
    image_ids: set[int] | None = None,
    image_sizes: dict[int, tuple[int, int]] | None = None,
) -> list[dict]:
    """Read and validate one result file (kind from the file name unless given)."""
    p = Path(path)
    kind = kind or kind_of(p)
    entries = read_json(p, "result file", ResultFormatError)
    _raise(validate_results(kind, entries, source=str(p), image_ids=image_ids, image_sizes=image_sizes))
    return entries


def read_results_dir(folder: str | os.PathLike, **kw) -> dict[str, list[dict]]:
    """Every official result file found in `folder` ({kind: entries}); at least one must exist."""
    folder = Path(folder)
    found = {k: folder / f"{k}.json" for k in KINDS if (folder / f"{k}.json").exists()}
    if not found:
        raise ResultFormatError(f"{folder}: no result files (expected any of " + ", ".join(k + ".json" for k in KINDS) + ")")
    errs: list[str] = []
    out = {}
    for k, p in found.items():
        try:
            out[k] = read_results(p, k, **kw)
        except ResultFormatError as e:
            errs.append(str(e))
    if errs:
        raise ResultFormatError("\n".join(errs))
    return out


def write_results(results: dict[str, list[dict]], folder: str | os.PathLike) -> dict[str, Path]:
    """Validate and write {kind: entries} as the official files; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, entries in results.items():
        _raise(validate_results(kind, entries, source=f"{kind}.json"))
        paths[kind] = folder / f"{kind}.json"
        paths[kind].write_text(json.dumps(entries))
    return paths


# The official entries, built from the runtime's results (eval.predict, `df2infer search`); write_results writes them.


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
