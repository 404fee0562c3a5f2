"""DeepFashion2 <-> COCO-style conversion and retrieval ground truth.

Follows the official `deepfashion2_to_coco.py`:
- images: id (= the DeepFashion2 image_id), file_name, width, height, source, pair_id
- annotations: id (1.. in image then item order), image_id, category_id, bbox [x, y, w, h],
  area = w * h (the official convention, which the landmark OKS relies on), iscrowd 0,
  segmentation (polygons), keypoints (294 * 3: the item's landmarks in its category's slots,
  zeros elsewhere), num_keypoints (labelled landmarks, v > 0), style, pair_id, scale, occlusion,
  zoom_in, viewpoint. Two extra fields make the reverse conversion exact: `item` (the 1-based
  index N of `itemN` in the DeepFashion2 file).
- categories: id, name, supercategory "clothes", keypoints (294 names, `<prefix>_<k>`), skeleton
  (1-based pairs over the 294 slots, COCO style).

`visible_only=True` gives the ground truth of the "visible" landmark AP: occluded landmarks
(v = 1) are zeroed (x = y = v = 0) and num_keypoints counts only v = 2.

Retrieval ground truth (consumer-to-shop): `query` lists every consumer ("user") item with
style > 0, `gallery` every shop item (style 0 included: it never matches, but it is in the
gallery a model searches). A query and a gallery item match when pair_id and style are equal.
Boxes there are [x1, y1, x2, y2], as in the official retrieval result format.

Files written by `write_coco_files(root)` into `root/coco/`:
- `instances.json`: images, annotations (box, mask, all labelled landmarks), categories
- `keypoints_visible.json`: the same with occluded landmarks removed (visible-only landmark AP)
- `retrieval_gt.json`: {"query": [...], "gallery": [...]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import spec
from .annotations import Dataset, ImageAnnotation, Item, json_number, load_dataset, read_image_size

INSTANCES_FILE = "instances.json"
KEYPOINTS_VISIBLE_FILE = "keypoints_visible.json"
RETRIEVAL_GT_FILE = "retrieval_gt.json"


def landmark_names() -> list[str]:
    """The 294 landmark slot names, slot order (e.g. 'sss_1' .. 'sd_37')."""
    return [n for c in spec.categories() for n in c.landmark_names]


def coco_categories() -> list[dict]:
    names = landmark_names()
    out = []
    for c in spec.categories():
        skel = [[c.slot_start + a + 1, c.slot_start + b + 1] for a, b in c.skeleton]
        out.append({"id": c.id, "name": c.name, "supercategory": "clothes", "keypoints": names, "skeleton": skel})
    return out


def xyxy_to_xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def xywh_to_xyxy(box) -> list[float]:
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def item_keypoints(item: Item, *, visible_only: bool = False) -> tuple[list, int]:
    """(flat 294 * 3 keypoint list, num_keypoints) for one item."""
    kp = item.landmarks_294()
    if visible_only:
        kp[kp[:, 2] != 2] = 0.0
    n = int(np.count_nonzero(kp[:, 2] > 0))
    return [json_number(v) for v in kp.reshape(-1)], n


def _image_wh(ds: Dataset | None, img: ImageAnnotation) -> tuple[int | None, int | None]:
    if img.width is not None and img.height is not None:
        return img.width, img.height
    if ds is not None:
        size = read_image_size(ds.image_path(img))
        if size is not None:
            return size
    return None, None


def dataset_to_coco(ds: Dataset | list[ImageAnnotation], *, visible_only: bool = False) -> dict:
    """COCO-style dict (images, annotations, categories) for a data set or a list of images.

    Image width/height come from the annotation (load_dataset fills them) or, when missing,
    from the image file; masks cannot be evaluated without them."""
    images_list = ds.images if isinstance(ds, Dataset) else list(ds)
    dset = ds if isinstance(ds, Dataset) else None
    images, anns = [], []
    ann_id = 0
    for img in images_list:
        w, h = _image_wh(dset, img)
        images.append(
            {
                "id": int(img.image_id),
                "file_name": img.file_name,
                "width": w,
                "height": h,
                "source": img.source,
                "pair_id": int(img.pair_id),
            }
        )
        for k, item in enumerate(img.items, 1):
            ann_id += 1
            bbox = xyxy_to_xywh(item.bbox)
            kps, nkp = item_keypoints(item, visible_only=visible_only)
            anns.append(
                {
                    "id": ann_id,
                    "image_id": int(img.image_id),
                    "category_id": int(item.category_id),
                    "bbox": [json_number(v) for v in bbox],
                    "area": json_number(bbox[2] * bbox[3]),
                    "iscrowd": 0,
                    "segmentation": [[json_number(v) for v in p] for p in item.segmentation],
                    "keypoints": kps,
                    "num_keypoints": nkp,
                    "style": int(item.style),
                    "pair_id": int(img.pair_id),
                    "scale": int(item.scale),
                    "occlusion": int(item.occlusion),
                    "zoom_in": int(item.zoom_in),
                    "viewpoint": int(item.viewpoint),
                    "item": k,
                }
            )
    return {
        "info": {
            "description": "DeepFashion2-format data converted by df2infer",
            "landmarks": "visible only" if visible_only else "visible + occluded",
        },
        "images": images,
        "annotations": anns,
        "categories": coco_categories(),
    }


def coco_to_images(coco: dict) -> list[ImageAnnotation]:
    """The reverse of `dataset_to_coco` (from the all-landmarks file): DeepFashion2 images.

    Items keep their `item` index order (annotation id order when absent); landmarks are read
    back from the category's slots."""
    by_img: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_img.setdefault(int(a["image_id"]), []).append(a)
    out = []
    for im in coco["images"]:
        anns = sorted(by_img.get(int(im["id"]), []), key=lambda a: (a.get("item", 0), a["id"]))
        items = []
        for a in anns:
            cat = spec.category(int(a["category_id"]))
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(spec.NUM_LANDMARKS, 3)
            x, y, w, h = (float(v) for v in a["bbox"])
            items.append(
                Item(
                    category_id=cat.id,
                    style=int(a.get("style", 0)),
                    bbox=(x, y, x + w, y + h),
                    landmarks=kp[cat.slot_start : cat.slot_end].copy(),
                    segmentation=[[float(v) for v in p] for p in a["segmentation"]],
                    scale=int(a.get("scale", 2)),
                    occlusion=int(a.get("occlusion", 1)),
                    zoom_in=int(a.get("zoom_in", 1)),
                    viewpoint=int(a.get("viewpoint", 2)),
                )
            )
        out.append(
            ImageAnnotation(
                int(im["id"]),
                im.get("file_name", f"{int(im['id']):06d}.jpg"),
                im.get("source", "shop"),
                int(im.get("pair_id", 0)),
                items,
                im.get("width"),
                im.get("height"),
            )
        )
    return out


def retrieval_ground_truth(ds: Dataset | list[ImageAnnotation]) -> dict:
    """{"query": consumer items with style > 0, "gallery": all shop items}; boxes [x1, y1, x2, y2]."""
    images_list = ds.images if isinstance(ds, Dataset) else list(ds)
    query, gallery = [], []
    for img in images_list:
        for k, item in enumerate(img.items, 1):
            entry = {
                "image_id": int(img.image_id),
                "item": k,
                "category_id": int(item.category_id),
                "bbox": [json_number(v) for v in item.bbox],
                "style": int(item.style),
                "pair_id": int(img.pair_id),
            }
            if img.source == "user" and item.style > 0:
                query.append(entry)
            elif img.source == "shop":
                gallery.append(entry)
    return {"query": query, "gallery": gallery}


def write_coco_files(root: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Read the DeepFashion2 folder `root` and write the COCO-style files (default `root/coco/`).

    Returns {"instances": path, "keypoints_visible": path, "retrieval_gt": path}."""
    ds = load_dataset(root)
    out = Path(out_dir) if out_dir is not None else Path(root) / "coco"
    out.mkdir(parents=True, exist_ok=True)
    paths = {"instances": out / INSTANCES_FILE, "keypoints_visible": out / KEYPOINTS_VISIBLE_FILE, "retrieval_gt": out / RETRIEVAL_GT_FILE}
    paths["instances"].write_text(json.dumps(dataset_to_coco(ds)))
    paths["keypoints_visible"].write_text(json.dumps(dataset_to_coco(ds, visible_only=True)))
    paths["retrieval_gt"].write_text(json.dumps(retrieval_ground_truth(ds)))
    return paths
