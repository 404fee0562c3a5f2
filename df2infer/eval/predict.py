"""Predictions -> official DeepFashion2 result lists, through the runtime.

    predict_results(predictor, dataset, conf=0.05) -> {"bbox": [...], "segm": [...], "keys": [...],
                                                       "retrieval": [...]}

`predictor` is anything with `stream(paths, conf=..., batch_size=...)` (or `predict`) yielding one
Detections (or PredictionFailure) per path, and a `similarity` (df2infer.retrieval.Similarity):
a df2infer Predictor, or the benchmark's PyTorch comparison wrapper. `df2infer eval --model`, the
benchmark's accuracy column and the tests all use this one function.

Retrieval (docs/deepfashion2.md, "Evaluation protocol"): every detection in a consumer ("user") image with score >= `conf` is a query;
the gallery is every detection in the shop images with score >= `gallery_score`. Each query gets
up to `gallery_size` (20) gallery items ranked by the model's similarity network
(df2infer.retrieval.Gallery) under the ranking policy (df2infer.retrieval.policy, category "first"):
items of the query's predicted category first, then the others. `df2infer search` writes the same
entries from a saved gallery.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..data.annotations import Dataset, ImageAnnotation
from ..ops.options import DecodeOptions
from .results import df2_result_entries, retrieval_entries

log = logging.getLogger(__name__)


def _images(dataset: Dataset, max_images: int | None) -> list[ImageAnnotation]:
    ims = list(dataset.images)
    return ims[:max_images] if max_images else ims


EVAL_OPTIONS = DecodeOptions(conf=0.05)  # low conf for AP; every detection kept


def predict_results(
    predictor: Any,
    dataset: Dataset,
    options: DecodeOptions | None = None,
    *,
    batch_size: int | None = None,
    max_images: int | None = None,
    gallery_score: float = 0.3,
    gallery_size: int = 20,
    retrieval: bool = True,
    progress: bool = False,
    **changes: Any,
) -> dict[str, list[dict]]:
    """Run `predictor` on the data set's images (the first `max_images`) and return the official
    result lists. options: the DecodeOptions (default EVAL_OPTIONS: conf 0.05, duplicates kept); `changes`
    replace fields of it (conf=..., landmark_method=...). Images that cannot be read are logged and skipped
    (they score as misses)."""
    from ..retrieval import Gallery, RankingPolicy

    images = _images(dataset, max_images)
    paths = [str(dataset.image_path(a)) for a in images]
    out: dict[str, list[dict]] = {"bbox": [], "segm": [], "keys": []}
    queries: list[tuple[int, Any]] = []  # (image_id, Detections without masks)
    gallery = Gallery(predictor.similarity, policy=RankingPolicy("first", gallery_score)) if retrieval else None
    # evaluation keeps every detection the graph reports above conf (no duplicate suppression)
    opts = DecodeOptions.of(options if options is not None else EVAL_OPTIONS, **changes).replace(embeddings=retrieval)
    it = predictor.stream(paths, opts, batch_size=batch_size)
    failures = 0
    bar = None
    if progress:
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]

            bar = tqdm(total=len(paths), desc="predict", leave=False)
        except ImportError:
            bar = None
    has_masks = has_landmarks = True
    for ann, det in zip(images, it):
        if bar is not None:
            bar.update(1)
        if not det.ok:
            failures += 1
            log.warning("eval: %s", det.message)
            continue
        r = df2_result_entries(det, ann.image_id)
        for k in out:
            out[k] += r[k]
        has_masks = has_masks and det.masks is not None
        has_landmarks = has_landmarks and det.landmarks is not None
        if gallery is not None and det.embeddings is not None:
            # keep only what retrieval needs (boxes, scores, labels, embeddings), not the masks
            slim = det[np.arange(len(det))]
            slim.masks = slim.landmarks = None
            slim.mask_boxes = None
            if ann.source == "user":
                queries.append((ann.image_id, slim))
            elif ann.source == "shop":
                gallery.add(slim, image_id=ann.image_id)  # the policy keeps score >= gallery_score
    if bar is not None:
        bar.close()
    if failures:
        log.warning("eval: %d of %d images could not be used", failures, len(paths))
    if not has_masks:
        out.pop("segm")
    if not has_landmarks:
        out.pop("keys")
    if gallery is not None:
        out["retrieval"] = retrieval_results(queries, gallery, gallery_size)
    return out


def retrieval_results(queries: list[tuple[Any, Any]], gallery, k: int = 20, index=None) -> list[dict]:
    """Official retrieval entries: per query detection its top-k gallery items, ranked by the
    gallery's policy (same category first for DeepFashion2). `index`: see Gallery.search."""
    return retrieval_entries(
        [(iid, det, gallery.search(det, k=k, index=index) if len(gallery) else [[]] * len(det)) for iid, det in queries if len(det)]
    )


def summarize(report: dict, retrieval_ks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float | None]:
    """The headline numbers of an evaluate_predictions report: {box,mask,landmarks_visible,landmarks_all}_AP
    and retrieval_top{k} (for the kinds scored); the one definition for bench, training logs and the studies."""
    s: dict[str, float | None] = {}
    for m in ("box", "mask", "landmarks_visible", "landmarks_all"):
        if m in report:
            s[f"{m}_AP"] = report[m]["overall"].get("AP")
    r = report.get("retrieval")
    if r:
        for k in retrieval_ks:
            s[f"retrieval_top{k}"] = r.get(f"top{k}")
    return s


__all__ = ["predict_results", "retrieval_results", "summarize"]
