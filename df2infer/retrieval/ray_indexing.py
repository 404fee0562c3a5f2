"""Catalog indexing on Ray Data (needs `ray[data]`: pip install 'df2infer[retrieval]'): the images are
a Ray dataset, `map_batches` runs a callable class that loads one Predictor per worker (an actor
pool) and turns each batch of image paths into per-item rows (image row, box, category, score,
embedding); the driver adds them to the Gallery in input order, so the gallery is the same as
`index_images` makes in one process. On a cluster, `ray.init(address=...)` before calling (the
model file and the images must be readable by every worker).

    index_with_ray("model.onnx", gallery, images, num_workers=4)
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from .catalog import CatalogImage, images_to_index, styles_of

log = logging.getLogger(__name__)

NO_ITEM, FAILED = -1, -2  # label of the one row an image with no detection / an unreadable image yields


class _EmbedBatch:
    """One Predictor per Ray worker; called on batches {"row": [B], "path": [B]}."""

    def __init__(self, model: str, device: str = "cpu", conf: float = 0.05, threads: int = 1):
        import df2infer

        self.predictor = df2infer.load(model, device=device, **({"threads": threads} if threads else {}))
        self.conf = conf
        self.dim = int(self.predictor.contract.embedding_dim)

    def __call__(self, batch: dict) -> dict:
        cols: dict[str, list] = {k: [] for k in ("row", "label", "score", "box", "embedding", "error")}

        def put(r, label, score, box, emb, error=""):
            for k, v in zip(cols, (r, label, score, box, emb, error)):
                cols[k].append(v)

        none_box, none_emb = np.zeros(4, np.float32), np.zeros(self.dim, np.float32)
        paths = [str(p) for p in batch["path"]]
        for r, det in zip(batch["row"], self.predictor.stream(paths, conf=self.conf, masks=False, landmarks=False, embeddings=True)):
            if not det.ok:
                put(r, FAILED, 0.0, none_box, none_emb, det.message)
            elif len(det) == 0:
                put(r, NO_ITEM, 0.0, none_box, none_emb)
            for i in range(len(det) if det.ok else 0):
                put(r, int(det.labels[i]), float(det.scores[i]), det.boxes[i], det.embeddings[i])
        return {
            "row": np.asarray(cols["row"], np.int64),
            "label": np.asarray(cols["label"], np.int32),
            "score": np.asarray(cols["score"], np.float32),
            "box": np.asarray(cols["box"], np.float32).reshape(-1, 4),
            "embedding": np.asarray(cols["embedding"], np.float32).reshape(-1, self.dim),
            "error": np.asarray(cols["error"], dtype=object),
        }


def _ensure_ray(num_workers: int):
    try:
        import ray
    except ImportError as e:
        raise ImportError("indexing on Ray needs ray[data]: pip install 'df2infer[retrieval]'") from e
    if not ray.is_initialized():
        ray.init(num_cpus=max(1, num_workers), include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def index_with_ray(
    model: str | os.PathLike,
    gallery,
    images: list[CatalogImage],
    *,
    num_workers: int = 2,
    conf: float = 0.05,
    batch_size: int = 8,
    device: str = "cpu",
    threads: int = 1,
    save_to: str | os.PathLike | None = None,
) -> dict:
    """Index the images not yet in `gallery` on Ray Data (see module doc); returns the same counts
    as catalog.index_images. A running Ray (ray.init before) is used as it is; otherwise a local
    one with num_workers CPUs is started."""
    ray = _ensure_ray(num_workers)
    todo, stats = images_to_index(gallery, images)
    stats["ray_workers"] = num_workers
    if not todo:
        return stats
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"row": i, "path": c.path} for i, c in enumerate(todo)])
    out = ds.map_batches(
        _EmbedBatch,
        fn_constructor_kwargs={"model": str(model), "device": device, "conf": conf, "threads": threads},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=1,
    )
    parts = list(out.iter_batches(batch_size=None, batch_format="numpy"))
    stats["ray_seconds"] = round(time.perf_counter() - t0, 2)
    if parts:
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        cat = {"row": np.zeros(0, np.int64)}
    order = np.argsort(cat["row"], kind="stable")
    cat = {k: v[order] for k, v in cat.items()}
    bounds = np.searchsorted(cat["row"], np.arange(len(todo) + 1))
    for i, c in enumerate(todo):
        s, e = bounds[i], bounds[i + 1]
        if e == s:
            raise RuntimeError(f"Ray indexing returned nothing for {c.path} (row {i})")
        lab = cat["label"][s:e]
        if lab[0] == FAILED:
            stats["failed"] += 1
            stats["failures"].append(str(cat["error"][s]))
            log.warning("index: %s", cat["error"][s])
            continue
        keep = slice(s, s) if lab[0] == NO_ITEM else slice(s, e)
        boxes = cat["box"][keep]
        n = gallery.add_items(
            c.image_id,
            cat["embedding"][keep],
            boxes,
            cat["label"][keep],
            cat["score"][keep],
            pair_id=c.pair_id,
            styles=styles_of(boxes, c.gt_boxes, c.gt_styles),
        )
        stats["indexed"] += 1
        stats["items_added"] += n
    if save_to is not None:
        gallery.save(save_to)
    return stats
