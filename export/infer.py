"""PyTorch eager inference writing the official DeepFashion2 result files (`df2infer predict-torch`:
df2infer/apps/predict_torch.py).

bbox.json ([x, y, w, h], original image pixels), segm.json (COCO RLE of the mask pasted into the
original image, threshold 0.5), keys.json (294 * 3 values: the predicted category's landmarks),
retrieval.json (per consumer detection the top-20 shop detections by the similarity network, same
predicted category first). The eager model runs as a df2infer Backend (df2infer_export.torch_backend), so
the result files are built by the runtime's own postprocessing (df2infer.eval.predict), exactly as
for the exported artifacts: the columns of every comparison differ only by the network.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

# the runtime's headline numbers of an evaluation, re-exported for `df2infer predict-torch`
from df2infer.eval.predict import summarize as summary  # noqa: F401


def predictor_for(model, device: str = "cpu", threads: int | None = None):
    """A df2infer Predictor for `model`: a MatchRCNN module or checkpoint path (eager PyTorch, through
    df2infer_export.torch_backend.TorchBackend), a df2infer Backend, an artifact path (.onnx / .engine), or
    an already loaded Predictor (returned as is)."""
    import df2infer
    from df2infer.backends.base import Backend

    from .torch_backend import TorchBackend

    if hasattr(model, "stream") and hasattr(model, "similarity"):
        return model
    if isinstance(model, Backend):
        return df2infer.load(model)
    if isinstance(model, torch.nn.Module) or str(model).endswith(".pt"):
        return df2infer.load(TorchBackend(model, device=device, threads=threads))
    return df2infer.load(model, device=device)


def predict(
    model,
    folder,
    device="cpu",
    batch_size: int = 4,
    max_images: int | None = None,
    gallery_score: float = 0.3,
    progress: bool = True,
    landmark_method: str | None = None,
) -> tuple[dict, dict]:
    """Run `model` (see predictor_for) on a load_dataset() folder through the runtime's pre- and
    postprocessing (df2infer.eval.predict.predict_results); returns (results by kind, timing).
    Every detection the graph keeps (score >= the model's box_score_thresh) is reported."""
    from df2infer.eval.predict import predict_results

    pred = predictor_for(model, device)
    anns = folder.images[:max_images] if max_images else folder.images
    pred.timings.reset()
    t0 = time.perf_counter()
    results = predict_results(
        pred,
        folder,
        conf=float(pred.contract.score_threshold),
        batch_size=batch_size,
        max_images=max_images,
        gallery_score=gallery_score,
        progress=progress,
        **({"landmark_method": landmark_method} if landmark_method else {}),
    )
    total = time.perf_counter() - t0
    t_model = float(sum(pred.timings.samples["inference"]))
    n = max(1, len(anns))
    timing = {
        "images": len(anns),
        "model_s": t_model,
        "total_s": total,
        "model_ms_per_image": 1000 * t_model / n,
        "total_ms_per_image": 1000 * total / n,
    }
    return results, timing


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
