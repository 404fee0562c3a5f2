"""A retrieval gallery (e.g. a shop catalog): items with embeddings, boxes, image ids, categories,
detection scores and, when known, pair id and style; build, add, save, load, search.

    g = Gallery(predictor.similarity)                 # dtype="float16" halves the memory
    g.add(detections, image_id="shop/001.jpg")        # items below the policy's score floor are not added
    g.save("catalog.gallery"); g = Gallery.load("catalog.gallery")
    g.search(query_detections, k=20)                  # -> per query, a list of Match

Storage grows by doubling (amortized O(1) per add, no re-joining of arrays); `save` writes one .npy
per column (memory-mappable at load) and a JSON header. Exact search scores every item with the
similarity network as one matrix product (see similarity.py), a gallery chunk at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from df2infer.errors import InputError

from .policy import DEFAULT_POLICY, RankingPolicy
from .similarity import Similarity, sigmoid

FORMAT = "df2infer-gallery"
VERSION = 1
DTYPES = ("float32", "float16")
CHUNK = 65536  # gallery rows scored at a time: bounded memory for any gallery size


@dataclass
class Match:
    """One retrieved gallery item."""

    index: int  # row in the gallery
    probability: float  # the similarity network's p(match)
    logit: float  # its logit (what the ranking sorts by)
    image_id: Any
    box: np.ndarray  # [x1, y1, x2, y2] in the gallery image
    label: int  # category id
    score: float  # detection score of the gallery item
    pair_id: int = -1  # -1: unknown
    style: int = -1  # -1: unknown


class GalleryError(InputError, ValueError):
    pass


def matches_from(ids: np.ndarray, z: np.ndarray, item: Callable[[int], tuple]) -> list[list[Match]]:
    """Match lists from ranked gallery rows `ids` (-1: no item) and their logits `z`; item(row) gives the
    row's (image_id, box, label, score, pair_id, style), wherever the gallery keeps them."""
    p = sigmoid(np.where(ids >= 0, z, 0).astype(np.float64))
    return [
        [Match(int(gi), float(p[i, j]), float(z[i, j]), *item(int(gi))) for j, gi in enumerate(ids[i]) if gi >= 0] for i in range(len(ids))
    ]


def topk_merge(ids: np.ndarray, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k per row of candidate (ids, logits) [n, c]: by logit, ties by lower id; pads -1 / -inf."""
    n, c = z.shape
    if c < k:
        ids = np.concatenate([ids, np.full((n, k - c), -1, np.int64)], axis=1)
        z = np.concatenate([z, np.full((n, k - c), -np.inf, np.float32)], axis=1)
    tie = np.where(ids < 0, np.iinfo(np.int64).max, ids)
    order = np.lexsort((tie, -z), axis=-1)[:, :k]
    ids, z = np.take_along_axis(ids, order, 1), np.take_along_axis(z, order, 1)
    ids = np.where(np.isneginf(z), -1, ids)
    return ids, z


def _chunk_topk(z: np.ndarray, k: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    m = z.shape[1]
    if m > k:
        part = np.argpartition(-z, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), z.shape).copy()
    return part.astype(np.int64) + offset, np.take_along_axis(z, part, 1)


def _chunk_candidates(z: np.ndarray, k: int, offset: int, floor: np.ndarray | None):
    """Per row, the chunk's entries that can still enter the top k: those above the row's current
    k-th best (`floor`), usually a handful once the first chunk is done, which is much cheaper than a
    partition of every row; a full partition when too many pass."""
    if floor is not None:
        rows, cols = np.nonzero(z > floor[:, None])
        counts = np.bincount(rows, minlength=len(z))
        width = int(counts.max()) if len(rows) else 0
        if width <= 4 * k:
            start = np.concatenate([[0], np.cumsum(counts)[:-1]])
            pos = np.arange(len(rows)) - start[rows]
            ids = np.full((len(z), max(width, 1)), -1, np.int64)
            zz = np.full((len(z), max(width, 1)), -np.inf, np.float32)
            ids[rows, pos] = cols + offset
            zz[rows, pos] = z[rows, cols]
            return ids, zz
    return _chunk_topk(z, k, offset)


def exact_topk(
    queries: np.ndarray,
    emb: np.ndarray,
    gterm: np.ndarray,
    labels: np.ndarray,
    query_labels,
    k: int,
    groups: tuple[str, ...],
    chunk: int = CHUNK,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact top-k of z = queries @ emb.T + gterm (without the query constant) per group ("all": every
    item, "same"/"other": items whose label equals/differs from the query's), a chunk of rows at a time.
    emb may be float16 (converted per chunk: the scores are exact for the stored values)."""
    n = len(queries)
    best = {g: (np.full((n, 0), -1, np.int64), np.zeros((n, 0), np.float32)) for g in groups}
    ql = None if query_labels is None else np.asarray(query_labels).reshape(-1, 1)
    if ql is None and any(g != "all" for g in groups):
        raise GalleryError("this ranking policy uses the query's category: pass query labels (or Detections)")
    for s in range(0, len(emb), chunk):
        e = emb[s : s + chunk]
        z = queries @ (e.T if e.dtype == np.float32 else e.astype(np.float32).T)
        z += gterm[s : s + chunk][None, :]
        for g in groups:
            if g == "all":
                zg = z
            else:
                same = ql == labels[s : s + chunk][None, :]
                zg = np.where(same if g == "same" else ~same, z, np.float32(-np.inf))
            bi, bz = best[g]
            ci, cz = _chunk_candidates(zg, k, s, bz[:, k - 1] if bz.shape[1] >= k else None)
            best[g] = topk_merge(np.concatenate([bi, ci], 1), np.concatenate([bz, cz], 1), k)
    return {g: topk_merge(*best[g], k) for g in groups}


class Gallery:
    """Gallery items and exact search by the model's similarity network (see module doc)."""

    def __init__(
        self,
        similarity: Similarity,
        *,
        dtype: str = "float32",
        policy: RankingPolicy = DEFAULT_POLICY,
        capacity: int = 1024,
        info: dict | None = None,
    ):
        if dtype not in DTYPES:
            raise GalleryError(f"gallery dtype {dtype!r}, expected one of {DTYPES}")
        self.similarity = similarity
        self.dtype = dtype
        self.policy = policy
        self.info: dict = dict(info or {})  # free-form provenance (model file, data folder), saved
        self._n = 0
        self._images: list = []  # image ids, in the order they were indexed
        self._image_rows: dict = {}  # image id -> its position in _images
        self._cols: dict[str, np.ndarray] = {}
        self._alloc(max(16, capacity))

    # ------------------------------------------------------------ storage
    def _alloc(self, cap: int) -> None:
        d = self.similarity.dim
        new = {
            "embeddings": np.empty((cap, d), self.dtype),
            "gallery_term": np.empty(cap, np.float32),
            "boxes": np.empty((cap, 4), np.float32),
            "labels": np.empty(cap, np.int32),
            "scores": np.empty(cap, np.float32),
            "image_index": np.empty(cap, np.int64),
            "pair_ids": np.empty(cap, np.int64),
            "styles": np.empty(cap, np.int32),
        }
        for name, a in self._cols.items():
            new[name][: self._n] = a[: self._n]
        self._cols = new

    def _col(self, name: str) -> np.ndarray:
        return self._cols[name][: self._n]

    @property
    def embeddings(self) -> np.ndarray:
        return self._col("embeddings")

    @property
    def boxes(self) -> np.ndarray:
        return self._col("boxes")

    @property
    def labels(self) -> np.ndarray:
        return self._col("labels")

    @property
    def scores(self) -> np.ndarray:
        return self._col("scores")

    @property
    def gallery_term(self) -> np.ndarray:
        return self._col("gallery_term")

    @property
    def pair_ids(self) -> np.ndarray:
        return self._col("pair_ids")

    @property
    def styles(self) -> np.ndarray:
        return self._col("styles")

    def image_ids(self) -> list:
        """Image id of every item."""
        return [self._images[i] for i in self._col("image_index")]

    @property
    def indexed_images(self) -> list:
        """Every image added (including images with no item above the score floor)."""
        return list(self._images)

    def has_image(self, image_id) -> bool:
        return image_id in self._image_rows

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"Gallery({self._n} items from {len(self._images)} images, D={self.similarity.dim}, {self.dtype}, policy {self.policy})"

    # ------------------------------------------------------------ adding
    def add(self, detections, image_id=None, *, pair_id: int | None = None, styles=None) -> int:
        """Add the items of one image's Detections whose score passes the policy's floor; returns the
        number added. image_id defaults to the Detections' path (or source index). `styles` (one per
        detection) and `pair_id` are stored when known (-1 otherwise)."""
        if detections.embeddings is None:
            raise GalleryError(f"detections of {detections.path or detections.source} carry no embeddings (predict with embeddings=True)")
        iid = image_id if image_id is not None else (detections.path if detections.path is not None else detections.source)
        return self.add_items(
            iid, detections.embeddings, detections.boxes, detections.labels, detections.scores, pair_id=pair_id, styles=styles
        )

    def add_items(self, image_id, embeddings, boxes, labels, scores, *, pair_id: int | None = None, styles=None) -> int:
        """Add one image's items from arrays (embeddings [n, D], boxes [n, 4], labels [n], scores [n])."""
        emb = (
            np.atleast_2d(np.asarray(embeddings, np.float32)).reshape(-1, self.similarity.dim)
            if np.size(embeddings)
            else np.zeros((0, self.similarity.dim), np.float32)
        )
        n = len(emb)
        boxes = np.asarray(boxes, np.float32).reshape(n, 4)
        labels = np.asarray(labels).reshape(n)
        scores = np.asarray(scores, np.float32).reshape(n)
        st = np.full(n, -1, np.int32) if styles is None else np.asarray(styles, np.int32).reshape(n)
        keep = self.policy.admit(scores)
        emb, boxes, labels, scores, st = emb[keep], boxes[keep], labels[keep], scores[keep], st[keep]
        if image_id not in self._image_rows:
            self._image_rows[image_id] = len(self._images)
            self._images.append(image_id)
        m = len(emb)
        if self._n + m > len(self._cols["labels"]):
            self._alloc(max(2 * len(self._cols["labels"]), self._n + m))
        sl = slice(self._n, self._n + m)
        c = self._cols
        c["embeddings"][sl] = emb
        # the gallery term of the stored (possibly float16-rounded) embedding: scores stay exact for it
        c["gallery_term"][sl] = self.similarity.gallery_term(c["embeddings"][sl]) if m else []
        c["boxes"][sl], c["labels"][sl], c["scores"][sl], c["styles"][sl] = boxes, labels, scores, st
        c["image_index"][sl] = self._image_rows[image_id]
        c["pair_ids"][sl] = -1 if pair_id is None else int(pair_id)
        self._n += m
        return m

    # ------------------------------------------------------------ search
    def _queries(self, queries, query_labels):
        if hasattr(queries, "embeddings"):
            if queries.embeddings is None:
                raise GalleryError("query detections carry no embeddings (predict with embeddings=True)")
            query_labels = queries.labels if query_labels is None else query_labels
            queries = queries.embeddings
        q = np.asarray(queries, np.float32)
        q = q.reshape(-1, self.similarity.dim) if q.size else np.zeros((0, self.similarity.dim), np.float32)
        if query_labels is not None:
            query_labels = np.asarray(query_labels).reshape(-1)
            if len(query_labels) != len(q):
                raise GalleryError(f"{len(query_labels)} query labels for {len(q)} queries")
        return q, query_labels

    def search_ids(
        self, queries, k: int = 20, *, query_labels=None, policy: RankingPolicy | None = None, index=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [n, k], logits float32 [n, k]) ranked by the policy; -1 / -inf where fewer items.
        `index` (a FaissIndex or anything with topk(queries_aug, labels, k, groups)) replaces the exact
        numpy scan."""
        q, ql = self._queries(queries, query_labels)
        policy = policy or self.policy
        if k < 1:
            raise GalleryError(f"k={k}, expected >= 1")
        qv, qc = self.similarity.query_vectors(q) if len(q) else (q, np.zeros(0, np.float32))
        if len(q) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        if index is not None:
            qa = np.concatenate([qv, np.ones((len(qv), 1), np.float32)], axis=1)
            ids, z = policy.rank(lambda kk, groups: index.topk(qa, ql, kk, groups), k)
        else:
            ids, z = policy.rank(lambda kk, groups: exact_topk(qv, self.embeddings, self.gallery_term, self.labels, ql, kk, groups), k)
        return ids, np.where(ids >= 0, z + qc[:, None], -np.inf).astype(np.float32)

    def search(self, queries, k: int = 20, *, query_labels=None, policy: RankingPolicy | None = None, index=None) -> list[list[Match]]:
        """Top-k gallery items per query, as Match lists. `queries`: Detections (labels taken from it)
        or embeddings [n, D] (pass query_labels for a category policy)."""
        ids, z = self.search_ids(queries, k, query_labels=query_labels, policy=policy, index=index)
        return self.matches(ids, z)

    def matches(self, ids: np.ndarray, z: np.ndarray) -> list[list[Match]]:
        c = self._cols

        def item(gi: int) -> tuple:
            return (
                self._images[int(c["image_index"][gi])],
                c["boxes"][gi].copy(),
                int(c["labels"][gi]),
                float(c["scores"][gi]),
                int(c["pair_ids"][gi]),
                int(c["styles"][gi]),
            )

        return matches_from(ids, z, item)

    # ------------------------------------------------------------ persistence
    def header(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "items": self._n,
            "images": len(self._images),
            "dim": self.similarity.dim,
            "dtype": self.dtype,
            "policy": self.policy.to_dict(),
            "similarity": {
                "weight": self.similarity.weight.tolist(),
                "bias": self.similarity.bias.tolist(),
                "fingerprint": self.similarity.fingerprint(),
            },
            "info": self.info,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the gallery to folder `path` (gallery.json + one .npy per column + images.json), each
        file replaced atomically and the header last. Items are only ever appended, so a save cut
        short leaves the previous header over columns that still start with its rows: the folder
        stays loadable (what resumable indexing relies on)."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)

        def replace(name: str, write) -> None:
            tmp = p / (name + ".tmp")
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, p / name)

        for name in self._cols:
            replace(f"{name}.npy", lambda f, name=name: np.save(f, self._col(name)))
        replace("images.json", lambda f: f.write(json.dumps(self._images).encode()))
        replace("gallery.json", lambda f: f.write(json.dumps(self.header(), indent=1).encode()))
        return p

    @classmethod
    def read_header(cls, path: str | os.PathLike) -> dict:
        p = Path(path) / "gallery.json"
        if not p.is_file():
            raise GalleryError(f"{path}: not a gallery folder (no gallery.json); make one with `df2infer index build`")
        try:
            h = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise GalleryError(f"{p}: not valid JSON ({e})") from None
        if h.get("format") != FORMAT or h.get("version") != VERSION:
            raise GalleryError(f"{p}: format {h.get('format')!r} version {h.get('version')!r}, expected {FORMAT!r} {VERSION}")
        return h

    @classmethod
    def load(cls, path: str | os.PathLike, similarity: Similarity | None = None, *, mmap: bool = False) -> Gallery:
        """Read a saved gallery. With `similarity` (the model's), refuse a gallery built for other
        weights; mmap=True maps the columns read-only instead of reading them (large catalogs)."""
        p = Path(path)
        h = cls.read_header(p)
        saved = Similarity(np.asarray(h["similarity"]["weight"]), np.asarray(h["similarity"]["bias"]))
        if similarity is not None and similarity.fingerprint() != saved.fingerprint():
            raise GalleryError(
                f"{p}: built for similarity weights {saved.fingerprint()}, but the model has "
                f"{similarity.fingerprint()}: rebuild the gallery with this model"
            )
        g = cls(saved, dtype=h["dtype"], policy=RankingPolicy.from_dict(h["policy"]), capacity=16, info=h.get("info"))
        n = int(h["items"])
        cols = {}
        for name in g._cols:
            f = p / f"{name}.npy"
            if not f.is_file():
                raise GalleryError(f"{p}: column file {f.name} is missing")
            a = np.load(f, mmap_mode="r" if mmap else None)
            if len(a) < n:
                raise GalleryError(f"{f}: {len(a)} rows, but gallery.json says {n} items")
            cols[name] = np.asarray(a[:n])  # plain ndarray over the mapped buffer: numpy.memmap indexing is slow
        g._cols, g._n = cols, n
        g._images = json.loads((p / "images.json").read_text())[: int(h["images"])]
        if len(g._images) != int(h["images"]):
            raise GalleryError(f"{p / 'images.json'}: {len(g._images)} images, but gallery.json says {h['images']}")
        g._image_rows = {iid: i for i, iid in enumerate(g._images)}
        if g._images and isinstance(g._images[0], list):  # JSON has no tuples
            raise GalleryError(f"{p}: image ids must be strings or numbers")
        return g

    @staticmethod
    def augmented(similarity: Similarity, embeddings: np.ndarray, gallery_term: np.ndarray) -> np.ndarray:
        """[b, w @ b^2] float32 [m, D + 1] for an inner-product index."""
        return np.concatenate([np.asarray(embeddings, np.float32), np.asarray(gallery_term, np.float32)[:, None]], 1)
