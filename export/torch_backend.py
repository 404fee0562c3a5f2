"""The PyTorch eager model as a df2infer Backend, so that it shares the runtime's postprocessing.

    predictor = df2infer.load(TorchBackend("model.pt", device="cpu"))
    results = df2infer.eval.predict.predict_results(predictor, dataset)

`run(batch)` runs the eager MatchRCNN (export/model/match_rcnn.py) under torch.inference_mode() and packs
its per-image outputs into the contract's padded arrays (df2infer.contract: num_dets int32 [B],
boxes [B, N, 4], scores [B, N], labels int32 [B, N], masks [B, N, M, M], landmark_heatmaps
[B, N, 39, K, K], embeddings [B, N, D]; rows >= num_dets are zeros). Everything downstream (box
scaling, mask pasting, landmark decoding, retrieval) is then the runtime's own code, exactly as for
the ONNX Runtime and TensorRT backends. The eager model keeps the top N detections per image
(its RoI heads' detections_per_img is set to N while it runs), as the deploy graph does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from df2infer.backends.base import DeviceError, parse_device, resolve_device
from df2infer.contract import OUTPUT_NAMES

from .contract_builder import build_contract


def _resolve_device(device: str) -> str:
    resolved = resolve_device(device, torch.cuda.is_available)
    if resolved == "cpu":
        return "cpu"
    if not torch.cuda.is_available() or parse_device(resolved)[1] >= torch.cuda.device_count():
        raise DeviceError(f"device={device!r}: no usable CUDA device for PyTorch")
    return resolved


class TorchBackend:
    """df2infer Backend running the eager MatchRCNN (a checkpoint path or a module)."""

    name = "torch"

    def __init__(
        self, model_or_checkpoint, device: str = "cpu", threads: int | None = None, max_detections: int | None = None, max_batch: int = 8
    ):
        if threads:
            torch.set_num_threads(int(threads))
        self.device = _resolve_device(device)
        self.iteration: int | None = None
        if isinstance(model_or_checkpoint, torch.nn.Module):
            model = model_or_checkpoint.to(self.device)
            info: dict = {"checkpoint": None}
        else:
            from .checkpoint import load_model

            path = Path(model_or_checkpoint)
            model, ckpt = load_model(path, self.device)
            self.iteration = int(ckpt.get("iteration", 0))
            info = {"checkpoint": path.name, "iterations": self.iteration}
        self.model = model.float().eval()
        self.max_batch = int(max_batch)
        n = int(max_detections or model.cfg["max_detections"])
        info["exporter"] = f"torch {torch.__version__} (eager, df2infer_export.torch_backend)"
        self.contract = build_contract(self.model, max_detections=n, max_batch=self.max_batch, model_info=info)

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        c = self.contract
        B, N = int(batch.shape[0]), c.max_detections
        M, K, L, D = c.mask_size, c.heatmap_size, c.max_landmarks, c.embedding_dim
        rh = self.model.roi_heads
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        saved = rh.detections_per_img
        rh.detections_per_img = N
        try:
            with torch.inference_mode():  # the matched eager baseline: no autograd bookkeeping at all
                outs = self.model(x)
        finally:
            rh.detections_per_img = saved
        self._sync()
        res = {
            "num_dets": np.zeros((B,), np.int32),
            "boxes": np.zeros((B, N, 4), np.float32),
            "scores": np.zeros((B, N), np.float32),
            "labels": np.zeros((B, N), np.int32),
            "masks": np.zeros((B, N, M, M), np.float32),
            "landmark_heatmaps": np.zeros((B, N, L, K, K), np.float32),
            "embeddings": np.zeros((B, N, D), np.float32),
        }
        for b, o in enumerate(outs):
            k = min(int(len(o["scores"])), N)
            res["num_dets"][b] = k
            if k == 0:
                continue
            res["boxes"][b, :k] = o["boxes"][:k].cpu().numpy()
            res["scores"][b, :k] = o["scores"][:k].cpu().numpy()
            res["labels"][b, :k] = o["labels"][:k].cpu().numpy()
            res["masks"][b, :k] = o["masks"][:k].cpu().numpy()
            res["landmark_heatmaps"][b, :k] = o["landmark_logits"][:k].cpu().numpy()
            res["embeddings"][b, :k] = o["embeddings"][:k].cpu().numpy()
        assert set(res) == set(OUTPUT_NAMES)
        return res

    def close(self) -> None:
        """Nothing to release beyond the module (kept for the Backend protocol)."""


class DeployBackend(TorchBackend):
    """df2infer_export.deploy.DeployMatchRCNN (the static-shape graph before export) in PyTorch, as a Backend."""

    name = "torch-deploy"

    def __init__(
        self, model_or_checkpoint, device: str = "cpu", threads: int | None = None, max_detections: int | None = None, max_batch: int = 8
    ):
        super().__init__(model_or_checkpoint, device, threads, max_detections, max_batch)
        from .deploy import DeployMatchRCNN

        self.deploy = DeployMatchRCNN(self.model, max_detections=self.contract.max_detections)

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.no_grad():
            outs = self.deploy(x)
        self._sync()
        res = {k: v.cpu().numpy() for k, v in zip(OUTPUT_NAMES, outs)}
        for k in ("num_dets", "labels"):
            res[k] = res[k].astype(np.int32)
        return res


__all__ = ["DeployBackend", "TorchBackend"]
