"""`df2infer search QUERY_IMAGES --gallery GALLERY [--topk 20] [--out DIR] [--index exact|flat|flat16|ivf|hnsw]`

Detects the clothing items in consumer photos and retrieves each item's top-k shop items from a
gallery made by `df2infer index build`, ranked by the model's similarity network under the ranking
policy (--policy; default: the gallery's, same category first).

- image files / folders: DIR/search.json (per image, per item: box, category, score and its matches
  with image id, box, category, probability, pair id and style when known);
- a DeepFashion2 folder: its consumer images are the queries; DIR/retrieval.json is the official
  retrieval result file (the same entries `df2infer eval --model` writes), scored with the
  official protocol when the folder has annotations (top-1/5/10/15/20, DIR/retrieval_report.json);
- pictures: DIR/pictures/<image>.jpg, each drawn item (score >= --draw-score, up to 3 per image)
  followed by its top 5 matches, for the first --draw images.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from df2infer.apps.common import CliExit, add_model_arguments, load_model

INDEX_KINDS = ("exact", "flat", "flat16", "ivf", "hnsw")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("queries", nargs="+", help="consumer photos: image files / folders, or a DeepFashion2 folder")
    p.add_argument("--gallery", required=True, help="gallery folder made by `df2infer index build`")
    p.add_argument("--topk", type=int, default=20, help="gallery items per query item (default: %(default)s)")
    p.add_argument("--out", default="df2infer_search", help="output folder (default: %(default)s)")
    add_model_arguments(p, model_help="model artifact; default: the one the gallery was built with")
    p.add_argument(
        "--conf", type=float, default=0.05, help="query items: detections with score >= this (default %(default)s, as `df2infer eval`)"
    )
    p.add_argument(
        "--policy",
        default=None,
        choices=("first", "only", "any"),
        help="category rule (default: the gallery's): first = same category first, only, any",
    )
    p.add_argument(
        "--index",
        default="exact",
        choices=INDEX_KINDS,
        help="exact numpy scan, or a FAISS index (built once, saved in the gallery folder; needs faiss-cpu)",
    )
    p.add_argument("--batch", type=int, default=None, help="images per model call")
    p.add_argument("--draw", type=int, default=20, help="pictures for the first N query images (0: none)")
    p.add_argument("--draw-score", type=float, default=0.3, help="items drawn have score >= this (default: %(default)s)")


def _faiss_index(gallery, folder: Path, kind: str):
    from df2infer.retrieval.faiss_index import FaissIndex

    path = folder / f"faiss_{kind}.index"
    try:
        return FaissIndex.load(path, gallery)
    except (FileNotFoundError, ValueError):
        idx = FaissIndex.build(gallery, kind)
        idx.save(path)
        return idx


def _picture(img, det, matches, gallery, cache: dict, draw_score: float):
    import cv2

    from df2infer.data.spec import category
    from df2infer.retrieval.catalog import image_path
    from df2infer.retrieval.strip import blank_tile, crop_tile, label_tile, outline_tile, strip

    rows = []
    order = [i for i in range(len(det)) if det.scores[i] >= draw_score][:3]
    for i in order:
        tiles = [
            outline_tile(
                label_tile(crop_tile(img, det.boxes[i]), [f"query {category(int(det.labels[i])).name[:18]}", f"score {det.scores[i]:.2f}"])
            )
        ]
        for r, m in enumerate(matches[i][:5], 1):
            if m.image_id not in cache:
                p = image_path(gallery.info, m.image_id)
                cache[m.image_id] = cv2.imread(str(p)) if p is not None else None
            gimg = cache[m.image_id]
            lines = [f"#{r} p={m.probability:.3f}", f"{str(m.image_id)[-18:]}"]
            tiles.append(label_tile(crop_tile(gimg, m.box), lines) if gimg is not None else blank_tile(lines))
        while len(tiles) < 6:
            tiles.append(blank_tile([]))
        rows.append(strip(tiles))
    if len(cache) > 200:
        cache.clear()
    return None if not rows else np.concatenate(rows, axis=0)


def _listing_entry(c, det, matches: list) -> dict:
    """search.json's entry for one query image: its items, each with its ranked matches."""
    return {
        "image_id": c.image_id,
        "path": c.path,
        "items": [
            {
                "box": [round(float(v), 2) for v in det.boxes[i]],
                "category_id": int(det.labels[i]),
                "category": det.names[i],
                "score": round(float(det.scores[i]), 5),
                "matches": [
                    {
                        "rank": r,
                        "image_id": m.image_id,
                        "box": [round(float(v), 2) for v in m.box],
                        "category_id": m.label,
                        "probability": round(m.probability, 6),
                        "score": round(m.score, 5),
                        **({"pair_id": m.pair_id} if m.pair_id >= 0 else {}),
                        **({"style": m.style} if m.style >= 0 else {}),
                    }
                    for r, m in enumerate(matches[i], 1)
                ],
            }
            for i in range(len(det))
        ],
    }


def run(args: argparse.Namespace) -> int:
    import cv2

    from df2infer.errors import Df2inferError
    from df2infer.ops.options import DecodeOptions
    from df2infer.retrieval import Gallery, RankingPolicy
    from df2infer.retrieval.catalog import catalog_images

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.topk < 1:
        print(f"df2infer search: --topk {args.topk}, expected >= 1", file=sys.stderr)
        return 2
    try:
        header = Gallery.read_header(args.gallery)
    except (FileNotFoundError, ValueError) as e:
        raise CliExit(2, f"df2infer search: {e}") from e
    args.model = args.model or header.get("info", {}).get("model")
    model = load_model(args, "search")
    try:
        gallery = Gallery.load(args.gallery, model.similarity, mmap=True)
        images, _, ds = catalog_images(args.queries, "user")
    except (FileNotFoundError, Df2inferError, ValueError) as e:
        raise CliExit(2, f"df2infer search: {e}") from e
    policy = RankingPolicy(args.policy, gallery.policy.min_gallery_score) if args.policy else gallery.policy
    index = None
    if args.index != "exact":
        try:
            index = _faiss_index(gallery, Path(args.gallery), args.index)
        except ImportError as e:
            print(f"df2infer search: {e}", file=sys.stderr)
            return 2
    out = Path(args.out)
    (out / "pictures").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    queries: list = []
    listing: list = []
    cache: dict = {}
    failures = 0
    n_items = 0
    from tqdm import tqdm  # type: ignore[import-untyped]

    options = DecodeOptions(conf=args.conf, masks=False, landmarks=False, embeddings=True)
    stream = model.stream([c.path for c in images], options, batch_size=args.batch, with_images=True)
    for k, (c, (det, img)) in enumerate(tqdm(zip(images, stream), total=len(images), desc="search", unit="img")):
        if not det.ok:
            failures += 1
            print(f"df2infer search: skipped: {det.message}", file=sys.stderr)
            continue
        matches = (
            gallery.search(det, k=args.topk, policy=policy, index=index) if len(det) and len(gallery) else [[] for _ in range(len(det))]
        )
        n_items += len(det)
        if ds is not None:
            queries.append((c.image_id, det, matches))
        listing.append(_listing_entry(c, det, matches))
        if k < args.draw and img is not None:
            pic = _picture(img, det, matches, gallery, cache, args.draw_score)
            if pic is not None:
                cv2.imwrite(str(out / "pictures" / (Path(str(c.image_id)).stem + ".jpg")), pic)
    dt = time.perf_counter() - t0
    (out / "search.json").write_text(
        json.dumps({"gallery": str(args.gallery), "topk": args.topk, "policy": policy.to_dict(), "index": args.index, "images": listing})
    )
    print(
        f"searched {len(listing)} images ({n_items} items, conf {args.conf}) against {len(gallery)} gallery items "
        f"({args.index}, policy {policy.category}) in {dt:.1f} s -> {out}/search.json, {out}/pictures/"
    )
    if ds is not None:
        from df2infer.eval.results import retrieval_entries, write_results
        from df2infer.eval.retrieval import evaluate_retrieval

        entries = retrieval_entries(queries)
        write_results({"retrieval": entries}, out)
        rep = evaluate_retrieval(ds.images, entries)
        (out / "retrieval_report.json").write_text(json.dumps(rep, indent=1))
        print(f"official retrieval result file: {out}/retrieval.json ({len(entries)} query items)")
        print(
            "retrieval (official protocol): "
            + ", ".join(f"top-{k} {rep[f'top{k}']:.4f}" for k in (1, 5, 10, 15, 20) if rep.get(f"top{k}") is not None)
            + f" over {rep['num_queries']} queries ({rep['num_queries_detected']} detected)"
        )
    return 1 if failures else 0
