"""df2infer_export.torch_backend: the eager model as a df2infer Backend gives the runtime the same detections
as the ONNX FP32 export of the same checkpoint (the bundled model, N = 20)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import df2infer  # noqa: E402
from df2infer.api import DEFAULT_MODEL  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "export" / "checkpoints" / "match_rcnn_small_synth.pt"

# Both are committed: a checkout without them is broken, so their absence fails rather than skips.
assert CHECKPOINT.is_file() and Path(DEFAULT_MODEL).is_file(), f"{CHECKPOINT} or {DEFAULT_MODEL} is missing (both are committed)"


def test_torch_backend_matches_onnx_through_the_runtime():
    from df2infer.backends.base import Backend
    from df2infer.synth.generator import plan, render_image
    from df2infer_export.torch_backend import TorchBackend

    be = TorchBackend(CHECKPOINT, device="cpu", max_detections=20)
    assert isinstance(be, Backend) and be.name == "torch" and be.device == "cpu"
    onnx_pred = df2infer.load(DEFAULT_MODEL, device="cpu")
    c, o = be.contract, onnx_pred.contract
    assert (c.input_height, c.input_width, c.max_detections, c.mask_size, c.heatmap_size, c.embedding_dim) == (
        o.input_height,
        o.input_width,
        o.max_detections,
        o.mask_size,
        o.heatmap_size,
        o.embedding_dim,
    )
    np.testing.assert_allclose(c.similarity_weight, o.similarity_weight, atol=1e-6)
    torch_pred = df2infer.load(be)

    imgs = [render_image(e, 9001, i)[0] for i, e in enumerate(plan(2, 9001))]
    raw = be.run(np.zeros((1, 3, c.input_height, c.input_width), np.float32))
    for k, shape in c.output_shapes(1).items():
        assert raw[k].shape == shape, k
    assert raw["num_dets"].dtype == np.int32 and raw["labels"].dtype == np.int32

    a = torch_pred.predict(imgs, conf=0.05)
    b = onnx_pred.predict(imgs, conf=0.05)
    total = 0
    for da, db in zip(a, b):
        assert da.ok and db.ok
        assert len(da) == len(db)
        total += len(da)
        np.testing.assert_array_equal(da.labels, db.labels)
        np.testing.assert_allclose(da.boxes, db.boxes, atol=1e-2)
        np.testing.assert_allclose(da.scores, db.scores, atol=1e-4)
        for la, lb in zip(da.landmarks, db.landmarks):
            np.testing.assert_allclose(la[:, :2], lb[:, :2], atol=0.5)
        np.testing.assert_allclose(da.embeddings, db.embeddings, atol=1e-3)
    assert total > 0
