"""DeepFashion2 per-image annotations: dataclasses, reader, validator and writer.

One JSON per image (`000001.jpg` <-> `annos/000001.json`, image_id = 1). Items are `item1`..`itemN`.
Every error names the file, the item and the field, so a broken data set can be fixed by reading
the message. `validate_folder` collects every problem instead of stopping at the first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from df2infer.errors import InputError
from df2infer.images import find_image

from . import spec


class AnnotationError(InputError, ValueError):
    """A DeepFashion2 annotation that breaks the format; the message says where and why."""


@dataclass
class Item:
    category_id: int
    style: int
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    landmarks: np.ndarray  # float64 [n, 3]: x, y, v for the category's own n landmarks
    segmentation: list[list[float]]  # polygons, flat [x1, y1, x2, y2, ...]
    scale: int = 2
    occlusion: int = 1
    zoom_in: int = 1
    viewpoint: int = 2

    @property
    def category(self) -> spec.Category:
        return spec.category(self.category_id)

    @property
    def area(self) -> float:
        """DeepFashion2/COCO-conversion convention: box width * height."""
        x1, y1, x2, y2 = self.bbox
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))

    def landmarks_294(self) -> np.ndarray:
        """float64 [294, 3] with this item's landmarks in its category's slots, zeros elsewhere."""
        out = np.zeros((spec.NUM_LANDMARKS, 3), dtype=np.float64)
        out[self.category.slot_start : self.category.slot_end] = self.landmarks
        return out

    def to_json(self) -> dict:
        c = self.category
        return {
            "category_id": int(self.category_id),
            "category_name": c.raw_name,
            "style": int(self.style),
            "bounding_box": [json_number(v) for v in self.bbox],
            "landmarks": [json_number(v) for v in self.landmarks.reshape(-1)],
            "segmentation": [[json_number(v) for v in poly] for poly in self.segmentation],
            "scale": int(self.scale),
            "occlusion": int(self.occlusion),
            "zoom_in": int(self.zoom_in),
            "viewpoint": int(self.viewpoint),
        }


@dataclass
class ImageAnnotation:
    image_id: int
    file_name: str  # image file name relative to the image folder, e.g. "000001.jpg"
    source: str  # "shop" or "user"
    pair_id: int
    items: list[Item] = field(default_factory=list)
    width: int | None = None  # not in the DeepFashion2 JSON; filled from the image when known
    height: int | None = None

    def to_json(self) -> dict:
        out: dict = {"source": self.source, "pair_id": int(self.pair_id)}
        for i, item in enumerate(self.items, 1):
            out[f"item{i}"] = item.to_json()
        return out


def json_number(v: float) -> float | int:
    """A coordinate as written to JSON: an int when whole, else rounded to 3 decimals."""
    f = float(v)
    return int(f) if f.is_integer() else round(f, 3)


def _where(path: str | os.PathLike | None, item: str | None, fld: str | None) -> str:
    parts = [str(path) if path is not None else "<annotation>"]
    if item:
        parts.append(item)
    if fld:
        parts.append(fld)
    return ": ".join(parts)


def parse_item(raw: dict, *, path=None, name: str = "item", image_size: tuple[int, int] | None = None) -> tuple[Item | None, list[str]]:
    """Parse one item dict; returns (item or None, problems). image_size is (width, height)."""
    errs: list[str] = []

    def err(fld: str, msg: str) -> None:
        errs.append(f"{_where(path, name, fld)}: {msg}")

    if not isinstance(raw, dict):
        return None, [f"{_where(path, name, None)}: expected an object, got {type(raw).__name__}"]
    for key in ("category_id", "bounding_box", "landmarks", "segmentation", "style"):
        if key not in raw:
            err(key, "missing")
    if errs:
        return None, errs
    cid = raw["category_id"]
    if not isinstance(cid, int) or isinstance(cid, bool) or not 1 <= cid <= spec.NUM_CATEGORIES:
        err("category_id", f"unknown category {cid!r}, expected an int in 1..{spec.NUM_CATEGORIES}")
        return None, errs
    cat = spec.category(cid)
    cname = raw.get("category_name")
    if cname is not None and cname not in (cat.raw_name, cat.name):
        err("category_name", f"{cname!r} does not match category_id {cid} ({cat.raw_name!r})")
    style = raw["style"]
    if not isinstance(style, int) or style < 0:
        err("style", f"{style!r} is not an int >= 0")

    box = raw["bounding_box"]
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        err("bounding_box", f"{box!r} is not [x1, y1, x2, y2]")
        box = None
    else:
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (x2 > x1 and y2 > y1):
            err("bounding_box", f"{box} has x2 <= x1 or y2 <= y1")
        if image_size is not None:
            w, h = image_size
            if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
                err("bounding_box", f"{box} lies outside the {w}x{h} image")

    lms = raw["landmarks"]
    lm_arr = None
    if not isinstance(lms, list) or not all(isinstance(v, (int, float)) for v in lms):
        err("landmarks", "expected a flat list of numbers [x, y, v, ...]")
    elif len(lms) != 3 * cat.num_landmarks:
        err(
            "landmarks",
            f"{len(lms)} values ({len(lms) / 3:g} landmarks) but category {cid} "
            f"({cat.raw_name}) has {cat.num_landmarks} landmarks, expected {3 * cat.num_landmarks} values",
        )
    else:
        lm_arr = np.asarray(lms, dtype=np.float64).reshape(-1, 3)
        bad_v = sorted({v for v in lm_arr[:, 2].tolist() if v not in (0, 1, 2)})
        if bad_v:
            err("landmarks", f"visibility values {bad_v} not in {{0, 1, 2}}")

    seg = raw["segmentation"]
    if not isinstance(seg, list) or not seg:
        err("segmentation", "expected a non-empty list of polygons")
    else:
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(isinstance(v, (int, float)) for v in poly):
                err("segmentation", f"polygon {k} is not a flat list of numbers")
            elif len(poly) % 2:
                err("segmentation", f"polygon {k} has an odd number of values ({len(poly)})")
            elif len(poly) < 6:
                err("segmentation", f"polygon {k} has {len(poly) // 2} points, at least 3 needed")

    attrs = {}
    for key, allowed in (("scale", spec.SCALE), ("occlusion", spec.OCCLUSION), ("zoom_in", spec.ZOOM_IN), ("viewpoint", spec.VIEWPOINT)):
        v = raw.get(key, 1 if key != "viewpoint" else 2)
        if v not in allowed:
            err(key, f"{v!r} not in {sorted(allowed)}")
        attrs[key] = v
    if errs:
        return None, errs
    item = Item(
        category_id=cid,
        style=style,
        bbox=tuple(float(v) for v in box),  # type: ignore[arg-type]
        landmarks=lm_arr,  # type: ignore[arg-type]
        segmentation=[[float(v) for v in p] for p in seg],
        **attrs,
    )
    return item, []


def parse_annotation(
    raw: dict, *, path=None, image_id: int = 0, file_name: str = "", image_size: tuple[int, int] | None = None
) -> tuple[ImageAnnotation | None, list[str]]:
    """Parse one per-image dict; returns (annotation or None, every problem found)."""
    if not isinstance(raw, dict):
        return None, [f"{_where(path, None, None)}: expected a JSON object, got {type(raw).__name__}"]
    errs: list[str] = []
    source = raw.get("source")
    if source not in ("shop", "user"):
        errs.append(f"{_where(path, None, 'source')}: {source!r}, expected 'shop' or 'user'")
    pair_id = raw.get("pair_id")
    if not isinstance(pair_id, int) or isinstance(pair_id, bool):
        errs.append(f"{_where(path, None, 'pair_id')}: {pair_id!r} is not an int")
    item_keys = sorted((k for k in raw if k.startswith("item")), key=lambda k: int(k[4:]) if k[4:].isdigit() else 10**9)
    items = []
    for k in item_keys:
        if not k[4:].isdigit():
            errs.append(f"{_where(path, k, None)}: item keys must be item1..itemN")
            continue
        item, item_errs = parse_item(raw[k], path=path, name=k, image_size=image_size)
        errs.extend(item_errs)
        if item is not None:
            items.append(item)
    if errs:
        return None, errs
    w, h = image_size if image_size else (None, None)
    assert isinstance(source, str) and isinstance(pair_id, int)  # checked above
    return ImageAnnotation(image_id, file_name, source, pair_id, items, w, h), []


def read_json(path: Path, what: str, error: type[Exception]):
    """The parsed JSON of a file; `error` naming the file when it is missing ("<what> not found")
    or not valid JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e})") from None


def read_annotation(json_path: str | os.PathLike, *, image_size: tuple[int, int] | None = None) -> ImageAnnotation:
    """Read and validate one annotation file; raises AnnotationError listing every problem."""
    p = Path(json_path)
    raw = read_json(p, "annotation file", AnnotationError)
    image_id = int(p.stem) if p.stem.isdigit() else 0
    ann, errs = parse_annotation(raw, path=p, image_id=image_id, file_name=p.stem + ".jpg", image_size=image_size)
    if errs:
        raise AnnotationError("\n".join(errs))
    return ann  # type: ignore[return-value]


def write_annotation(ann: ImageAnnotation, json_path: str | os.PathLike) -> None:
    Path(json_path).write_text(json.dumps(ann.to_json()))


@dataclass
class Dataset:
    """A DeepFashion2-format folder: `image/` with the pictures, `annos/` with one JSON each."""

    root: Path
    images: list[ImageAnnotation]

    @property
    def image_dir(self) -> Path:
        return self.root / "image"

    def image_path(self, ann: ImageAnnotation) -> Path:
        return self.image_dir / ann.file_name

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[ImageAnnotation]:
        return iter(self.images)


def read_image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) read from the image header, without decoding pixels where possible."""
    import cv2  # local: the data layer is usable without OpenCV for pure JSON work

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    return img.shape[1], img.shape[0]


def validate_folder(root: str | os.PathLike, *, check_images: bool = True) -> tuple[Dataset, list[str]]:
    """Read a whole DeepFashion2 folder; returns the valid part and every problem found."""
    root = Path(root)
    anno_dir, image_dir = root / "annos", root / "image"
    problems: list[str] = []
    if not anno_dir.is_dir():
        raise AnnotationError(f"{root}: no 'annos' folder (expected {anno_dir} with one JSON per image)")
    images = []
    for jp in sorted(anno_dir.glob("*.json")):
        img_path = find_image(image_dir, jp.stem)
        size = None
        if img_path is None:
            problems.append(f"{jp}: missing image {image_dir / (jp.stem + '.jpg')}")
            if check_images:
                continue
        elif check_images:
            size = read_image_size(img_path)
            if size is None:
                problems.append(f"{img_path}: unreadable or corrupt image")
                continue
        try:
            raw = json.loads(jp.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{jp}: not valid JSON ({e})")
            continue
        image_id = int(jp.stem) if jp.stem.isdigit() else 0
        if image_id <= 0:
            problems.append(f"{jp}: file name must be a positive number (it is the image_id)")
            continue
        ann, errs = parse_annotation(
            raw, path=jp, image_id=image_id, file_name=img_path.name if img_path else jp.stem + ".jpg", image_size=size
        )
        problems.extend(errs)
        if ann is not None:
            images.append(ann)
    return Dataset(root, images), problems


def load_dataset(root: str | os.PathLike, *, check_images: bool = True) -> Dataset:
    """Read a DeepFashion2 folder; raises AnnotationError listing every problem if any."""
    ds, problems = validate_folder(root, check_images=check_images)
    if problems:
        shown = "\n".join(problems[:50])
        more = f"\n... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise AnnotationError(f"{root}: {len(problems)} problem(s)\n{shown}{more}")
    return ds
