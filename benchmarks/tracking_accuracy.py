"""Tracking accuracy of `df2infer video --track` on synthetic videos with ground truth (df2infer.synth.video writes
video_gt.jsonl: every garment's box and its outfit's track id per frame), computed with py-motmetrics (IDF1,
MOTA, ID switches) for the IoU tracker without and with re-identification, plus the appear events
(df2infer.sinks.events) checked against the ground truth's entries.

The model runs once per frame (bundled model, embeddings on); both tracker settings then run on the same
detections, so they differ only in the tracker. A ground-truth identity is one garment: (outfit track id,
category id). A hypothesis matches a ground-truth box at IoU >= 0.5 (motmetrics' distance 1 - IoU < 0.5).

    python benchmarks/tracking_accuracy.py [--videos 3] [--frames 150] [--out benchmarks/results/tracking_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def iou_distance(a, b, max_d: float = 0.5) -> np.ndarray:
    """motmetrics' distance between xyxy boxes: 1 - IoU, NaN (no match) where it is >= max_d. (motmetrics 1.4's own
    iou_matrix calls np.asfarray, gone in NumPy 2.)"""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    d = 1 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.where(d < max_d, d, np.nan)


def run(videos: int, frames: int, size=(640, 360)) -> dict:
    import motmetrics as mm

    import df2infer
    from df2infer.results import FrameInfo, FrameResult
    from df2infer.sinks.events import EventBuilder
    from df2infer.stream import Pipeline
    from df2infer.stream.model import stream_options
    from df2infer.stream.tracking import Tracker
    from df2infer.synth.video import make_video

    model = df2infer.load(None)
    sim = model.similarity if model.has_similarity else None
    configs = {"iou": {"reid_threshold": float("inf")}, "iou+reid": {}}
    accs: dict[str, list] = {k: [] for k in configs}
    events: dict[str, dict[str, int]] = {k: {"gt_entries": 0, "appear_events": 0, "entries_found": 0} for k in configs}
    t_model = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(videos):
            clip, gt_path = make_video(Path(tmp) / f"v{seed}", frames=frames, seed=seed, size=size)
            gt = [json.loads(line) for line in Path(gt_path).read_text().splitlines()]
            t0 = time.perf_counter()
            with Pipeline([str(clip)], model, options=stream_options(embeddings=True)) as pipe:
                dets = [r.detections for r in pipe]
            t_model += time.perf_counter() - t0
            assert len(dets) == len(gt), f"{clip}: {len(dets)} frames decoded, {len(gt)} in the ground truth"
            entries: dict[tuple[int, int], int] = {}
            for f, g in enumerate(gt):
                for it in g["items"]:
                    entries.setdefault((it["track_id"], it["category_id"]), f)
            for name, kw in configs.items():
                tracker = Tracker(similarity=sim, **kw)
                acc = mm.MOTAccumulator(auto_id=True)
                builder = EventBuilder(leave_after=30, run_id=name)
                appear_frames: dict[int, int] = {}
                hyp_boxes: dict[int, dict[int, np.ndarray]] = {}
                for f, (d, g) in enumerate(zip(dets, gt)):
                    ids = tracker.update(d, f)
                    d.track_ids = ids
                    gt_ids = [it["track_id"] * 100 + it["category_id"] for it in g["items"]]
                    dist = iou_distance([it["bbox"] for it in g["items"]], d.boxes)
                    acc.update(gt_ids, [int(i) for i in ids], dist)
                    info = FrameInfo(source_id=0, display_name="synth", index=f, fps=30.0)
                    for e in builder.events(FrameResult(info, d, None)):
                        if e["type"] == "appear":
                            appear_frames[e["track_id"]] = f
                    hyp_boxes[f] = {int(i): b for i, b in zip(ids, d.boxes)}
                accs[name].append(acc)
                # an entry is found when a track appears within 15 frames of it, over that garment's box (IoU >= 0.5)
                ev = events[name]
                ev["gt_entries"] += len(entries)
                ev["appear_events"] += len(appear_frames)
                for (tid, cid), f0 in entries.items():
                    for hid, fa in appear_frames.items():
                        if abs(fa - f0) > 15:
                            continue
                        g_items = [it for it in gt[fa]["items"] if (it["track_id"], it["category_id"]) == (tid, cid)]
                        if g_items and hid in hyp_boxes[fa]:
                            if not np.isnan(iou_distance([g_items[0]["bbox"]], [hyp_boxes[fa][hid]])[0, 0]):
                                ev["entries_found"] += 1
                                break
    mh = mm.metrics.create()
    out = {"videos": videos, "frames_per_video": frames, "size": list(size), "model_seconds": round(t_model, 1), "trackers": {}}
    for name in configs:
        summary = mh.compute_many(
            accs[name],
            metrics=["idf1", "mota", "num_switches", "num_false_positives", "num_misses", "num_objects", "num_unique_objects"],
            names=[f"v{i}" for i in range(videos)],
            generate_overall=True,
        )
        row = summary.loc["OVERALL"]
        out["trackers"][name] = {
            "idf1": round(float(row["idf1"]), 4),
            "mota": round(float(row["mota"]), 4),
            "id_switches": int(row["num_switches"]),
            "false_positives": int(row["num_false_positives"]),
            "misses": int(row["num_misses"]),
            "gt_boxes": int(row["num_objects"]),
            "gt_identities": int(row["num_unique_objects"]),
            **events[name],
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--out", default="benchmarks/results/tracking_accuracy.json")
    a = p.parse_args()
    res = run(a.videos, a.frames)
    res["load_average"] = [round(x, 2) for x in os.getloadavg()]
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
