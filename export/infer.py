"""`df2infer predict-torch`: PyTorch eager inference writing the official DeepFashion2 result files.

bbox.json ([x, y, w, h], original image pixels), segm.json (COCO RLE of the mask pasted into the
original image, threshold 0.5), keys.json (294 * 3 values: the predicted category's landmarks,
v = 1, zeros elsewhere; argmax of each heatmap at the cell centre), retrieval.json (per consumer
detection the top-20 shop detections by the similarity network's match probability, detections of
the same predicted category ranked first). This is the accuracy reference and speed baseline.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from df2infer.data import load_dataset, spec

from .data import letterbox, read_rgb


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="df2infer checkpoint (.pt)")
    p.add_argument("--data", required=True, help="DeepFashion2-format folder (image/, annos/)")
    p.add_argument("--out", required=True, help="folder for bbox/segm/keys/retrieval.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--gallery-score", type=float, default=0.3, help="min score of shop detections in the gallery")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval", action="store_true", help="also score the results (df2infer.eval) and print them")


def paste_mask(prob: np.ndarray, box, h: int, w: int) -> np.ndarray:
    """Resize a box-relative mask probability map into an h x w uint8 mask (threshold 0.5)."""
    x1, y1, x2, y2 = box
    out = np.zeros((h, w), np.uint8)
    bw, bh = max(1, int(round(x2 - x1))), max(1, int(round(y2 - y1)))
    m = cv2.resize(prob, (bw, bh), interpolation=cv2.INTER_LINEAR) >= 0.5
    ox, oy = int(round(x1)), int(round(y1))
    sx, sy = max(0, -ox), max(0, -oy)
    ex, ey = min(bw, w - ox), min(bh, h - oy)
    if ex > sx and ey > sy:
        out[oy + sy:oy + ey, ox + sx:ox + ex] = m[sy:ey, sx:ex]
    return out


def decode_landmarks(logits: np.ndarray, box) -> np.ndarray:
    """[L, K, K] heatmap logits -> [L, 3] (x, y, max logit) in the box's coordinate frame."""
    L, K, _ = logits.shape
    flat = logits.reshape(L, -1)
    idx = flat.argmax(1)
    iy, ix = idx // K, idx % K
    x1, y1, x2, y2 = box
    x = x1 + (ix + 0.5) / K * (x2 - x1)
    y = y1 + (iy + 0.5) / K * (y2 - y1)
    return np.stack([x, y, flat.max(1)], 1)


def match_probability(q: np.ndarray, g: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(fc((q - g)^2))[1] for all pairs, [Q, G], via matrix products (no Q x G x D tensor)."""
    logits = ((q * q) @ weight.T)[:, None, :] + ((g * g) @ weight.T)[None, :, :] + bias
    logits -= 2 * np.stack([(q * weight[k]) @ g.T for k in range(2)], -1)
    d = logits[..., 1] - logits[..., 0]
    return 1.0 / (1.0 + np.exp(-d))


def retrieve(queries, gallery, weight, bias, top: int = 20, same_class_first: bool = True) -> list[dict]:
    """retrieval.json entries. queries/gallery: (image_id, [x1, y1, x2, y2], cls, score, embedding)."""
    out: list[dict] = []
    if not queries or not gallery:
        return out
    G = np.stack([g[4] for g in gallery])
    gcls = np.array([g[2] for g in gallery])
    for s in range(0, len(queries), 256):
        qs = queries[s:s + 256]
        p = match_probability(np.stack([q[4] for q in qs]), G, weight, bias)
        for q, row in zip(qs, p):
            rank = row + (gcls == q[2]) if same_class_first else row
            best = np.argsort(-rank, kind="stable")[:top]
            out.append({"query_image_id": q[0], "query_bbox": q[1], "query_cls": q[2], "query_score": q[3],
                        "gallery_image_id": [int(gallery[i][0]) for i in best],
                        "gallery_bbox": [gallery[i][1] for i in best]})
    return out


@torch.no_grad()
def predict(model, folder, device="cpu", batch_size: int = 4, max_images: int | None = None,
            gallery_score: float = 0.3, progress: bool = True, records: dict | None = None) -> tuple[dict, dict]:
    """Run the model on a load_dataset() folder; returns (results by kind, timing).
    `records` (a dict), when given, receives the query and gallery detections with embeddings."""
    from pycocotools import mask as mask_utils
    from tqdm import tqdm

    model.eval().to(device)
    S = model.input_size
    anns = folder.images[:max_images] if max_images else folder.images
    bbox, segm, keys = [], [], []
    queries, gallery = [], []  # (image_id, box, cls, score, emb)
    t_model = 0.0
    t0 = time.perf_counter()
    for s in tqdm(range(0, len(anns), batch_size), desc="predict", disable=not progress, leave=False):
        chunk = anns[s:s + batch_size]
        ims, metas = [], []
        for a in chunk:
            img = read_rgb(folder.image_path(a))
            canvas, scale, px, py = letterbox(img, S)
            ims.append(torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1))))
            metas.append((scale, px, py, img.shape[1], img.shape[0]))
        x = torch.stack(ims).float().to(device)
        tm = time.perf_counter()
        out = model(x)
        t_model += time.perf_counter() - tm
        for a, o, (scale, px, py, w, h) in zip(chunk, out, metas):
            boxes = o["boxes"].cpu().numpy()
            boxes = (boxes - [px, py, px, py]) / scale
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
            scores, labels = o["scores"].cpu().numpy(), o["labels"].cpu().numpy()
            masks, heat = o["masks"].cpu().numpy(), o["landmark_logits"].cpu().numpy()
            emb = o["embeddings"].cpu().numpy()
            for j in range(len(scores)):
                b, c, sc = boxes[j], int(labels[j]), round(float(scores[j]), 5)
                bl = [round(float(v), 2) for v in b]
                bbox.append({"image_id": a.image_id, "category_id": c, "bbox": [bl[0], bl[1], round(bl[2] - bl[0], 2), round(bl[3] - bl[1], 2)], "score": sc})
                # mask: paste in letterbox frame box, then map: the box in original pixels is b
                m = paste_mask(masks[j], b, h, w)
                rle = mask_utils.encode(np.asfortranarray(m))
                rle["counts"] = rle["counts"].decode("ascii")
                segm.append({"image_id": a.image_id, "category_id": c, "segmentation": rle, "score": sc})
                cat = spec.category(c)
                lm = decode_landmarks(heat[j, : cat.num_landmarks], b)
                kp = np.zeros((spec.NUM_LANDMARKS, 3))
                kp[cat.slot_start:cat.slot_end, :2] = lm[:, :2]
                kp[cat.slot_start:cat.slot_end, 2] = 1
                keys.append({"image_id": a.image_id, "category_id": c, "keypoints": [round(float(v), 2) for v in kp.reshape(-1)], "score": sc})
                rec = (a.image_id, bl, c, sc, emb[j])
                if a.source == "user":
                    queries.append(rec)
                elif sc >= gallery_score:
                    gallery.append(rec)
    if records is not None:
        records.update(queries=queries, gallery=gallery)
    sim = model.roi_heads.similarity.fc
    retrieval = retrieve(queries, gallery, sim.weight.detach().cpu().numpy(), sim.bias.detach().cpu().numpy())
    total = time.perf_counter() - t0
    timing = {"images": len(anns), "model_s": t_model, "total_s": total,
              "model_ms_per_image": 1000 * t_model / max(1, len(anns)), "total_ms_per_image": 1000 * total / max(1, len(anns))}
    return {"bbox": bbox, "segm": segm, "keys": keys, "retrieval": retrieval}, timing


def write_results(results: dict, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for kind, entries in results.items():
        (out / f"{kind}.json").write_text(json.dumps(entries))
    return out


def evaluate(folder, results: dict, max_images: int | None = None) -> dict | None:
    """Score with df2infer.eval when it is installed; None (and a message) otherwise."""
    try:
        from df2infer.eval import evaluate_predictions
    except ImportError as e:
        print(f"evaluation skipped: df2infer.eval not available ({e})")
        return None
    images = folder.images[:max_images] if max_images else folder.images
    return evaluate_predictions(images, results, breakdown=False)


def summary(metrics: dict) -> dict:
    out = {}
    for k in ("box", "mask", "landmarks_visible", "landmarks_all"):
        if k in metrics:
            out[f"{k}_AP"] = metrics[k]["overall"].get("AP")
    if "retrieval" in metrics:
        for k in ("top1", "top10", "top20"):
            out[f"retrieval_{k}"] = metrics["retrieval"].get(k)
    return out


def run(args) -> int:
    from .checkpoint import load_model

    torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.checkpoint, args.device)
    folder = load_dataset(args.data)
    results, timing = predict(model, folder, args.device, args.batch_size, args.max_images, args.gallery_score)
    out = write_results(results, args.out)
    (out / "timing.json").write_text(json.dumps(timing, indent=1))
    print(f"wrote {out}/{{bbox,segm,keys,retrieval}}.json: {len(results['bbox'])} detections on {timing['images']} images, "
          f"{timing['model_ms_per_image']:.1f} ms/image in the model, {timing['total_ms_per_image']:.1f} ms/image total")
    if args.eval:
        m = evaluate(folder, results, args.max_images)
        if m is not None:
            (out / "metrics.json").write_text(json.dumps(m, indent=1))
            print(json.dumps(summary(m), indent=1))
    return 0
