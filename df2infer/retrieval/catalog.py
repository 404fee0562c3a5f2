"""What a catalog is made of, and indexing it: the images of a DeepFashion2 folder (shop images for a
gallery, consumer images for queries; image ids, pair ids and ground-truth items known) or of plain
image files and folders (image id = the path relative to the folder given), and `index_images`,
which detects and embeds them into a Gallery, resumably. No argparse here (`df2infer index build`
and `df2infer search` are in df2infer/apps)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.images import IMAGE_SUFFIXES, find_image, list_images
from df2infer.ops.boxes import box_iou

log = logging.getLogger(__name__)

STYLE_IOU = 0.5  # a detection takes the style of the ground-truth item it overlaps by IoU >= this


@dataclass
class CatalogImage:
    image_id: Any  # int (DeepFashion2) or str (relative path)
    path: str
    pair_id: int | None = None
    gt_boxes: np.ndarray | None = None  # [m, 4] ground-truth items, when known
    gt_styles: np.ndarray | None = None  # [m]
    extra: dict = field(default_factory=dict)


def is_df2_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "annos").is_dir() and (p / "image").is_dir()


def df2_images(root: str | os.PathLike, source: str) -> tuple[list[CatalogImage], Any]:
    """The `source` ("shop" or "user") images of a DeepFashion2 folder, and the Dataset."""
    from df2infer.data.annotations import load_dataset

    if source not in ("shop", "user"):
        raise ValueError(f"source={source!r}, expected 'shop' or 'user'")
    ds = load_dataset(root)
    out = []
    for a in ds.images:
        if a.source != source:
            continue
        out.append(
            CatalogImage(
                a.image_id,
                str(ds.image_path(a)),
                a.pair_id,
                np.array([it.bbox for it in a.items], np.float32).reshape(-1, 4),
                np.array([it.style for it in a.items], np.int32),
            )
        )
    return out, ds


def file_images(inputs: Iterable[str | os.PathLike]) -> list[CatalogImage]:
    """Image files, and the images under folders (recursively; id = path relative to the folder)."""
    out = []
    for x in inputs:
        p = Path(x)
        if p.is_dir():
            found = list_images(p, recursive=True)
            if not found:
                raise FileNotFoundError(f"{p}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            out += [CatalogImage(str(q.relative_to(p)), str(q)) for q in found]
        else:
            out.append(CatalogImage(p.name, str(p)))  # a missing file fails by name when read
    ids = [c.image_id for c in out]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"image ids must be unique, these repeat: {dup} (give one folder, or files with distinct names)")
    return out


def catalog_images(inputs: list[str], source: str) -> tuple[list[CatalogImage], dict, Any]:
    """(images, gallery info, Dataset or None) for one DeepFashion2 folder or image files/folders."""
    if len(inputs) == 1 and is_df2_folder(inputs[0]):
        ims, ds = df2_images(inputs[0], source)
        return ims, {"root": str(Path(inputs[0]).resolve()), "layout": "df2", "source": source}, ds
    ims = file_images(inputs)
    roots = [str(Path(x).resolve()) for x in inputs]
    return (
        ims,
        {
            "root": roots[0] if len(roots) == 1 and Path(inputs[0]).is_dir() else None,
            "layout": "files",
            "paths": {c.image_id: c.path for c in ims} if len(ims) <= 100_000 else None,
        },
        None,
    )


def image_path(info: dict, image_id) -> Path | None:
    """Where a gallery image is, from the gallery's info (None when unknown)."""
    if info.get("paths") and str(image_id) in info["paths"]:
        return Path(info["paths"][str(image_id)])
    root = info.get("root")
    if root is None:
        return None
    if info.get("layout") == "df2":
        return find_image(Path(root) / "image", f"{int(image_id):06d}")
    return Path(root) / str(image_id)


def styles_of(boxes: np.ndarray, gt_boxes: np.ndarray | None, gt_styles: np.ndarray | None) -> np.ndarray | None:
    """Each detection's style: that of the ground-truth item with the highest IoU >= STYLE_IOU, else -1."""
    if gt_boxes is None or gt_styles is None:
        return None
    out = np.full(len(boxes), -1, np.int32)
    if len(boxes) and len(gt_boxes):
        iou = box_iou(boxes, gt_boxes, np.float64)
        best = iou.argmax(1)
        ok = iou.max(1) >= STYLE_IOU
        out[ok] = gt_styles[best[ok]]
    return out


def images_to_index(gallery, images: list[CatalogImage]) -> tuple[list[CatalogImage], dict[str, Any]]:
    """The images not yet in `gallery` (resuming skips the others), and the counts an indexing run reports."""
    todo = [c for c in images if not gallery.has_image(c.image_id)]
    stats: dict[str, Any] = {
        "images": len(images),
        "skipped_already_indexed": len(images) - len(todo),
        "indexed": 0,
        "failed": 0,
        "items_added": 0,
        "failures": [],
    }
    return todo, stats


def index_images(
    predictor,
    gallery,
    images: list[CatalogImage],
    *,
    conf: float = 0.05,
    batch_size: int | None = None,
    progress: bool = True,
    save_to: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    on_added: Callable[[int], None] | None = None,
) -> dict:
    """Detect and embed every image not yet in the gallery and add its items (the gallery's policy
    keeps those past its score floor). With save_to, the gallery is saved every `checkpoint_every`
    images and at the end, so an interrupted run resumes where it stopped. Returns counts."""
    todo, stats = images_to_index(gallery, images)
    bar = None
    if progress:
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=len(todo), desc="index", unit="img")
    since = 0
    try:
        stream = predictor.stream([c.path for c in todo], conf=conf, batch_size=batch_size, masks=False, landmarks=False, embeddings=True)
        for c, det in zip(todo, stream):
            if bar is not None:
                bar.update(1)
            if not det.ok:
                stats["failed"] += 1
                stats["failures"].append(det.message)
                log.warning("index: %s", det.message)
                continue  # not marked as indexed: a later run retries it
            n = gallery.add(det, image_id=c.image_id, pair_id=c.pair_id, styles=styles_of(det.boxes, c.gt_boxes, c.gt_styles))
            stats["indexed"] += 1
            stats["items_added"] += n
            since += 1
            if on_added is not None:
                on_added(n)
            if save_to is not None and since >= checkpoint_every:
                gallery.save(save_to)
                since = 0
    finally:
        if bar is not None:
            bar.close()
        if save_to is not None:
            gallery.save(save_to)
    return stats
