"""Deploy graph parity: eager MatchRCNN == DeployMatchRCNN == ONNX Runtime, lint, contract, runtime load.

Tiny config (small backbone, 128x128 input, random init). Tolerances observed on this machine:
eager vs deploy module: identical (0.0) for boxes/scores/labels/masks/heatmaps/embeddings when
both keep the same number of proposals (the deploy graph does the same per-level top-k, NMS and
per-class NMS as torchvision; only ties could order differently); deploy module vs ONNX Runtime:
boxes <= ~3e-5 px, scores <= ~3e-8, masks <= ~2e-6, heatmaps/embeddings <= ~2e-7, counts and
labels exact. The asserts leave an order of magnitude of headroom.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from tiny_match_rcnn import SIZE, N, P  # noqa: E402

from df2infer.contract import METADATA_KEY, OUTPUT_NAMES, Contract  # noqa: E402


@pytest.fixture(scope="module")
def model():
    from tiny_match_rcnn import build_tiny_model

    return build_tiny_model(score_thresh=0.3)


@pytest.fixture(scope="module")
def deploy(model):
    from df2infer_export.deploy import DeployMatchRCNN

    return DeployMatchRCNN(model, max_detections=N, num_proposals=P)


@pytest.fixture(scope="module")
def images():
    from df2infer_export.onnx_export import test_inputs

    return test_inputs(SIZE, SIZE, batches=(1, 3), seed=1)


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    from df2infer_export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("export") / "model.fp32.onnx"
    report: dict = {}
    export_onnx(model, path, max_detections=N, num_proposals=P, max_batch=4, trained_on="random init", report=report)
    assert "RoiAlign" in report["ops"] and "NonMaxSuppression" in report["ops"]
    return path


def test_deploy_matches_eager(model, deploy, images):
    x = torch.from_numpy(images[1])
    with torch.no_grad():
        ref = model(x)
        got = deploy.predict(x)
    counts = []
    for r, g in zip(ref, got):
        counts.append(len(r["boxes"]))
        assert len(r["boxes"]) == len(g["boxes"])
        for k in ("boxes", "scores", "labels", "masks", "landmark_logits", "embeddings"):
            torch.testing.assert_close(g[k].to(r[k].dtype), r[k], atol=1e-4, rtol=1e-4, msg=k)
    assert any(0 < c < N for c in counts), counts


def _deploy_outputs(deploy, x: np.ndarray) -> dict:
    with torch.no_grad():
        return {n: v.numpy() for n, v in zip(OUTPUT_NAMES, deploy(torch.from_numpy(x)))}


@pytest.mark.parametrize("batch_index", [0, 1], ids=["batch1", "batch3"])
def test_onnx_matches_deploy(deploy, onnx_path, images, batch_index):
    from df2infer_export.onnx_export import ort_run

    x = images[batch_index]
    got, ref = ort_run(str(onnx_path), x), _deploy_outputs(deploy, x)
    for n in OUTPUT_NAMES:
        assert got[n].shape == ref[n].shape, n
        assert got[n].dtype == ref[n].dtype, n
    np.testing.assert_array_equal(got["num_dets"], ref["num_dets"])
    np.testing.assert_array_equal(got["labels"], ref["labels"])
    np.testing.assert_allclose(got["boxes"], ref["boxes"], atol=1e-3)
    np.testing.assert_allclose(got["scores"], ref["scores"], atol=1e-5)
    np.testing.assert_allclose(got["masks"], ref["masks"], atol=1e-4)
    np.testing.assert_allclose(got["landmark_heatmaps"], ref["landmark_heatmaps"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got["embeddings"], ref["embeddings"], atol=1e-4)
    # padding rows are zeros
    for b, k in enumerate(got["num_dets"]):
        assert not got["scores"][b, k:].any() and not got["labels"][b, k:].any() and not got["masks"][b, k:].any()


def test_lint_and_names(onnx_path):
    from df2infer_export.lint import check_onnx

    check_onnx(onnx_path)
    m = onnx.load(str(onnx_path))
    ops = {n.op_type for n in m.graph.node}
    assert not ops & {"Loop", "If", "NonZero"}
    names = [n.name for n in m.graph.node]
    for prefix in ("box_decode/", "nms/", "postproc/"):
        assert any(nm.startswith(prefix) for nm in names), prefix
    assert any(n.op_type == "NonMaxSuppression" and n.name.startswith("nms/") for n in m.graph.node)


def test_contract_metadata(model, onnx_path):
    m = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in m.metadata_props}
    c = Contract.from_json(meta[METADATA_KEY])
    assert (c.input_height, c.input_width, c.max_detections) == (SIZE, SIZE, N)
    assert c.mask_size == model.mask_size and c.heatmap_size == model.heatmap_size
    assert c.embedding_dim == 256 and c.precision == "fp32" and c.max_batch == 4
    np.testing.assert_allclose(c.similarity_weight, model.roi_heads.similarity.fc.weight.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(c.similarity_bias, model.roi_heads.similarity.fc.bias.detach().numpy(), rtol=1e-6)
    assert c.model["backbone"] == "small" and c.model["num_proposals"] == P and c.model["trained_on"] == "random init"
    assert json.loads(c.to_json()) == json.loads(meta[METADATA_KEY])


def test_runtime_predicts_what_the_deploy_graph_outputs(onnx_path, deploy, images):
    """The exported file through df2infer.load().predict equals the PyTorch deploy graph's own outputs on the
    same frames (square input: the letterbox is the identity): the same detections, boxes, scores and labels,
    a mask per detection and its category's landmarks. A decoder that drops or moves detections fails."""
    import df2infer
    from df2infer.data import spec

    pred = df2infer.load(str(onnx_path), device="cpu")
    frames = [np.ascontiguousarray(np.rint(im.transpose(1, 2, 0)[:, :, ::-1])).astype(np.uint8) for im in images[1]]  # BGR HWC
    ref = _deploy_outputs(deploy, np.stack([f[:, :, ::-1].transpose(2, 0, 1) for f in frames]).astype(np.float32))
    res = pred.predict(frames, conf=0.0, suppress_iou=None)
    assert sum(len(r) for r in res) > 0, "the random-init model detects something in these frames (test_deploy_matches_eager)"
    for b, r in enumerate(res):
        n = int(ref["num_dets"][b])
        assert len(r) == n
        np.testing.assert_array_equal(r.labels, ref["labels"][b, :n])
        np.testing.assert_allclose(r.scores, ref["scores"][b, :n], atol=1e-4)
        np.testing.assert_allclose(r.boxes, np.clip(ref["boxes"][b, :n], 0, SIZE), atol=1e-2)
        assert len(r.masks) == n and [len(lm) for lm in r.landmarks] == [spec.category(int(c)).num_landmarks for c in r.labels]


def test_export_cli_rejects_bad_precision(tmp_path):
    from df2infer.apps.main import main

    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path), "--precision", "fp8"]) == 2


def test_failing_lint_during_export_raises_the_lint_report(model, tmp_path, monkeypatch):
    """A lint error in the exported graph surfaces as OnnxLintError carrying every problem (it was a
    TypeError from a wrong constructor call), and no file is written."""
    from df2infer_export import lint
    from df2infer_export.lint import LintProblem, OnnxLintError
    from df2infer_export.onnx_export import export_onnx

    problems = [
        LintProblem("unsupported_op", "made-up problem for the test", node="n0", op_type="FancyOp"),
        LintProblem("type", "a warning rides along", severity="warning"),
    ]
    monkeypatch.setattr(lint, "lint_onnx", lambda m, **kw: problems)
    out = tmp_path / "m.onnx"
    with pytest.raises(OnnxLintError) as e:
        export_onnx(model, out, max_detections=N, num_proposals=P, max_batch=2, simplify=False)
    assert e.value.problems == problems
    assert "made-up problem for the test" in str(e.value) and "FancyOp" in str(e.value) and str(out) in str(e.value)
    assert not out.exists()
