"""DeepFashion2 category and landmark specification, as code.

The facts come from the official repository (13 categories, 294 landmark slots, per-landmark OKS
sigmas) and from mmpose's skeleton links; both JSON files ship inside the package so an installed
df2infer needs nothing from a checkout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

NUM_CATEGORIES = 13
NUM_LANDMARKS = 294
MAX_CATEGORY_LANDMARKS = 39  # long_sleeved_outwear; deploy graphs pad landmark channels to this

# The raw strings DeepFashion2 annotations carry in `category_name`, by category id.
RAW_NAMES = {
    1: "short sleeve top",
    2: "long sleeve top",
    3: "short sleeve outwear",
    4: "long sleeve outwear",
    5: "vest",
    6: "sling",
    7: "shorts",
    8: "trousers",
    9: "skirt",
    10: "short sleeve dress",
    11: "long sleeve dress",
    12: "vest dress",
    13: "sling dress",
}

VISIBILITY = {0: "not labelled", 1: "occluded", 2: "visible"}
SCALE = {1: "small", 2: "moderate", 3: "large"}
OCCLUSION = {1: "slight", 2: "medium", 3: "heavy"}
ZOOM_IN = {1: "none", 2: "medium", 3: "large"}
VIEWPOINT = {1: "no wear", 2: "frontal", 3: "side or back"}


@dataclass(frozen=True)
class Category:
    id: int
    name: str  # COCO-style name, e.g. "short_sleeved_shirt"
    raw_name: str  # DeepFashion2 annotation string, e.g. "short sleeve top"
    prefix: str  # short landmark prefix from mmpose, e.g. "sss"
    num_landmarks: int
    slot_start: int  # first of this category's slots among the 294
    oks_sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...]  # 0-based pairs within the category's own landmarks

    @property
    def slot_end(self) -> int:
        return self.slot_start + self.num_landmarks

    @property
    def slots(self) -> range:
        return range(self.slot_start, self.slot_end)

    @property
    def landmark_names(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}_{i + 1}" for i in range(self.num_landmarks))


@lru_cache(maxsize=1)
def categories() -> tuple[Category, ...]:
    """The 13 categories in id order (index i holds id i + 1)."""
    pkg = resources.files(__package__)
    cats = json.loads(pkg.joinpath("categories.json").read_text())["categories"]
    skel = {c["id"]: c for c in json.loads(pkg.joinpath("skeleton.json").read_text())["categories"]}
    out = []
    for c in cats:
        s = skel[c["id"]]
        links = tuple((a - 1, b - 1) for a, b in (link["local1"] for link in s["links"]))
        out.append(
            Category(
                id=c["id"],
                name=c["name"],
                raw_name=RAW_NAMES[c["id"]],
                prefix=s["prefix"],
                num_landmarks=c["num_landmarks"],
                slot_start=c["slot_start"],
                oks_sigmas=tuple(c["oks_sigmas"]),
                skeleton=links,
            )
        )
    assert sum(c.num_landmarks for c in out) == NUM_LANDMARKS
    return tuple(out)


def category(category_id: int) -> Category:
    """The category with this id (1..13); a ValueError names the bad id."""
    if not isinstance(category_id, (int, np.integer)) or not 1 <= int(category_id) <= NUM_CATEGORIES:
        raise ValueError(f"unknown category_id {category_id!r}: expected an int in 1..{NUM_CATEGORIES}")
    return categories()[int(category_id) - 1]


def category_by_name(name: str) -> Category:
    """Look a category up by its COCO name or its raw DeepFashion2 string."""
    for c in categories():
        if name in (c.name, c.raw_name):
            return c
    known = ", ".join(c.raw_name for c in categories())
    raise ValueError(f"unknown category name {name!r}: expected one of {known}")


@lru_cache(maxsize=1)
def oks_sigmas() -> np.ndarray:
    """All 294 official sigmas, slot order (for pycocotools' params.kpt_oks_sigmas)."""
    return np.concatenate([np.asarray(c.oks_sigmas, dtype=np.float64) for c in categories()])


@lru_cache(maxsize=1)
def landmark_counts() -> np.ndarray:
    """int32[14]: landmark count per category id (index 0 unused, 0)."""
    return np.array([0] + [c.num_landmarks for c in categories()], dtype=np.int32)


@lru_cache(maxsize=1)
def slot_starts() -> np.ndarray:
    """int32[14]: first slot per category id (index 0 unused, 0)."""
    return np.array([0] + [c.slot_start for c in categories()], dtype=np.int32)
