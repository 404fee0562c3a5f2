"""The ranking policy of consumer-to-shop retrieval: the one place that decides which gallery items a
query sees and in what order. `df2infer eval`, `df2infer demo`, `df2infer search` and the Python API
(Gallery.search, FaissIndex, MilvusGallery) all rank through `RankingPolicy.rank`.

- min_gallery_score: a detection enters a gallery only with score >= this (applied by `admit` when
  items are added, so the floor is a property of the gallery and is saved with it);
- category: "first" (default; the DeepFashion2 evaluation's order): the gallery items of the query's
  predicted category, best first, then the items of other categories, best first;
  "only": items of the query's category only; "any": every item by score alone.
Within a group items are ordered by the similarity network's logit (= by match probability), ties by
gallery index (the order items were added).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

CATEGORY_MODES = ("first", "only", "any")

# topk(k, groups) -> {group: (ids int64 [n, k], logits float32 [n, k])}, group in "all", "same", "other";
# unused slots hold id -1 and logit -inf. "same"/"other": gallery items whose category equals / differs
# from the query's.
TopK = Callable[[int, tuple[str, ...]], dict[str, tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class RankingPolicy:
    category: str = "first"
    min_gallery_score: float = 0.3

    def __post_init__(self):
        if self.category not in CATEGORY_MODES:
            raise ValueError(f"ranking policy: category={self.category!r}, expected one of {CATEGORY_MODES}")
        if not 0.0 <= float(self.min_gallery_score) <= 1.0:
            raise ValueError(f"ranking policy: min_gallery_score={self.min_gallery_score}, expected a score in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RankingPolicy:
        return cls(category=str(d.get("category", "first")), min_gallery_score=float(d.get("min_gallery_score", 0.3)))

    def admit(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask of the detections that may enter a gallery."""
        return np.asarray(scores) >= self.min_gallery_score

    def groups(self) -> tuple[str, ...]:
        return {"any": ("all",), "only": ("same",), "first": ("same", "other")}[self.category]

    def rank(self, topk: TopK, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [n, k], logits float32 [n, k]) in the policy's order; -1 / -inf pad."""
        r = topk(k, self.groups())
        if self.category == "any":
            return r["all"]
        if self.category == "only":
            return r["same"]
        (si, sz), (oi, oz) = r["same"], r["other"]
        # same-category items (valid ones come first in each row) followed by the others
        ids = np.concatenate([si, oi], axis=1)
        z = np.concatenate([sz, oz], axis=1)
        valid = ids >= 0
        order = np.argsort(~valid, axis=1, kind="stable")[:, :k]  # keep valid entries, in their order
        return np.take_along_axis(ids, order, 1), np.take_along_axis(z, order, 1)


DEFAULT_POLICY = RankingPolicy()
