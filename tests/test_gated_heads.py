"""The deploy graph's CPU fast paths: gated heads, the packed-level RoiAlign, the sub-pixel mask predictor.

Gated heads (df2infer.contract, gated_heads): the mask/landmark/matching heads run only on the first
K detection rows, K = the most detections at or above `min_head_score` in any image of the batch.
Checked here: the default (no input fed) equals the static graph; with a threshold, every row at or
above it is unchanged and rows beyond K are zeros; the exported ONNX file carries the input as a real
graph input (not an initializer, which OpenVINO folds away), files of the older form (an overridable
initializer) still load and run, the runtime feeds its `conf`, and TensorRT paths refuse the graph.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from tiny_match_rcnn import SIZE, N, P  # noqa: E402

from df2infer.contract import HEAD_SCORE_INPUT, Contract, ContractError  # noqa: E402


@pytest.fixture(scope="module")
def model():
    from tiny_match_rcnn import build_tiny_model

    return build_tiny_model(score_thresh=0.05)  # a spread of scores for the gate to cut through


@pytest.fixture(scope="module")
def images():
    from df2infer_export.onnx_export import test_inputs

    return torch.from_numpy(test_inputs(SIZE, SIZE, batches=(3,), seed=2)[0])


@pytest.fixture(scope="module")
def gated_onnx(model, tmp_path_factory):
    from df2infer_export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("gated") / "model.fp32.onnx"
    export_onnx(model, path, max_detections=N, num_proposals=P, max_batch=4, gate_heads=True, trained_on="random init")
    return path


def _threshold_between_rows(scores: torch.Tensor) -> float:
    """A gate that keeps some valid rows and drops others in every image."""
    s = scores[scores > 0]
    return float(s.median())


def test_gated_deploy_default_equals_static(model, images):
    from df2infer_export.deploy import DeployMatchRCNN

    static = DeployMatchRCNN(model, max_detections=N, num_proposals=P)
    gated = DeployMatchRCNN(model, max_detections=N, num_proposals=P, gate_heads=True)
    with torch.no_grad():
        a, b = static(images), gated(images)
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, atol=0, rtol=0)


def test_gated_deploy_keeps_rows_above_the_gate_and_zeros_the_rest(model, images):
    from df2infer_export.deploy import DeployMatchRCNN

    static = DeployMatchRCNN(model, max_detections=N, num_proposals=P)
    gated = DeployMatchRCNN(model, max_detections=N, num_proposals=P, gate_heads=True)
    with torch.no_grad():
        ref = static(images)
        thr = _threshold_between_rows(ref[2])
        got = gated(images, torch.tensor([thr]))
    scores = ref[2]
    above = scores >= thr
    k = int(above.sum(1).max())
    assert 0 < k < N and bool((above.sum(1) < int(ref[0].max())).any()), "the gate must cut through the detections"
    for i in range(4):  # num_dets, boxes, scores, labels: not gated
        torch.testing.assert_close(got[i], ref[i], atol=0, rtol=0)
    for i in (4, 5, 6):  # masks, heatmaps, embeddings
        torch.testing.assert_close(got[i][above], ref[i][above], atol=1e-6, rtol=1e-6)
        assert not got[i][:, k:].any()
        assert ref[i][:, k:].any(), "the static graph computes those rows (else the test shows nothing)"


def test_gated_onnx_has_a_real_gate_input_and_matches(model, images, gated_onnx):
    import onnx
    import onnxruntime as ort

    from df2infer_export.deploy import DeployMatchRCNN
    from df2infer_export.onnx_export import ort_run

    m = onnx.load(str(gated_onnx))
    assert [i.name for i in m.graph.input] == ["images", HEAD_SCORE_INPUT]
    assert HEAD_SCORE_INPUT not in {t.name for t in m.graph.initializer}
    s = ort.InferenceSession(str(gated_onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["images", HEAD_SCORE_INPUT]
    assert s.get_overridable_initializers() == []
    static = DeployMatchRCNN(model, max_detections=N, num_proposals=P)
    with torch.no_grad():
        ref = [t.numpy() for t in static(images)]
    thr = _threshold_between_rows(torch.from_numpy(ref[2]))
    full = ort_run(str(gated_onnx), images.numpy())
    gated = ort_run(str(gated_onnx), images.numpy(), min_head_score=thr)
    np.testing.assert_allclose(full["masks"], ref[4], atol=1e-4)
    np.testing.assert_allclose(full["embeddings"], ref[6], atol=1e-4)
    above = ref[2] >= np.float32(thr)
    k = int(above.sum(1).max())
    for name, r in (("masks", ref[4]), ("landmark_heatmaps", ref[5]), ("embeddings", ref[6])):
        np.testing.assert_allclose(gated[name][above], r[above], atol=1e-4, rtol=1e-4, err_msg=name)
        assert not gated[name][:, k:].any(), name


def test_runtime_feeds_conf_to_a_gated_model(model, images, gated_onnx, tmp_path):
    """Predictor results at conf are the same from the gated graph (heads only on rows >= conf)
    as from the static graph (heads on every row)."""
    import df2infer
    from df2infer_export.onnx_export import export_onnx

    static_path = export_onnx(model, tmp_path / "static.onnx", max_detections=N, num_proposals=P, max_batch=4)
    frames = [np.ascontiguousarray(x.numpy().transpose(1, 2, 0)[:, :, ::-1]).astype(np.uint8) for x in images]
    pg, ps = df2infer.load(str(gated_onnx), device="cpu"), df2infer.load(str(static_path), device="cpu")
    assert pg.contract.gated_heads and not ps.contract.gated_heads
    from df2infer_export.deploy import DeployMatchRCNN

    with torch.no_grad():
        scores = DeployMatchRCNN(model, max_detections=N, num_proposals=P)(images)[2]
    conf = _threshold_between_rows(scores)
    calls = []
    run = pg.backend.run
    pg.backend.run = lambda batch, **kw: calls.append(kw) or run(batch, **kw)
    got, ref = pg.predict(frames, conf=conf), ps.predict(frames, conf=conf)
    assert calls and all(c == {"min_head_score": conf} for c in calls)
    assert sum(len(r) for r in ref) > 0
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g.boxes, r.boxes, atol=1e-3)
        np.testing.assert_allclose(g.embeddings, r.embeddings, atol=1e-4)
        for mg, mr in zip(g.masks, r.masks):
            assert (mg != mr).mean() < 1e-3
        for lg, lr in zip(g.landmarks, r.landmarks):
            np.testing.assert_allclose(lg, lr, atol=1e-2)


def _old_form(gated_onnx, tmp_path):
    """The gated file as exported before: min_head_score both a graph input and an initializer (default 0.0)."""
    import onnx

    m = onnx.load(str(gated_onnx))
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(1, np.float32), HEAD_SCORE_INPUT))
    path = tmp_path / "old_form.onnx"
    onnx.save(m, str(path))
    return path


def test_old_files_with_the_gate_as_an_initializer_still_load(images, gated_onnx, tmp_path):
    import onnxruntime as ort

    from df2infer.backends.onnxruntime_backend import OnnxRuntimeBackend

    old = _old_form(gated_onnx, tmp_path)
    assert [i.name for i in ort.InferenceSession(str(old), providers=["CPUExecutionProvider"]).get_overridable_initializers()] == [
        HEAD_SCORE_INPUT
    ]
    new_be, old_be = OnnxRuntimeBackend(gated_onnx), OnnxRuntimeBackend(old)
    x = images.numpy()
    scores = new_be.run(x)["scores"]
    thr = _threshold_between_rows(torch.from_numpy(scores))
    for gate in (None, thr):
        a, b = new_be.run(x, min_head_score=gate), old_be.run(x, min_head_score=gate)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{name} at gate {gate}")
    # the gate reaches the old file too (not its default): rows past K are zeros
    k = int((scores >= np.float32(thr)).sum(1).max())
    assert not old_be.run(x, min_head_score=thr)["masks"][:, k:].any() and old_be.run(x)["masks"][:, k:].any()


def test_contract_says_gated_but_graph_has_no_gate(model, tmp_path):
    """A static graph whose contract claims gated heads is refused by name."""
    import onnx

    from df2infer.artifact import read_onnx_contract, write_onnx_contract
    from df2infer.backends.onnxruntime_backend import OnnxRuntimeBackend
    from df2infer_export.onnx_export import export_onnx

    static = export_onnx(model, tmp_path / "static.onnx", max_detections=N, num_proposals=P, max_batch=4)
    m = onnx.load(str(static))
    c = read_onnx_contract(m)
    c.gated_heads = True
    write_onnx_contract(m, c)
    path = tmp_path / "broken.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ContractError, match=HEAD_SCORE_INPUT):
        OnnxRuntimeBackend(path)


def test_contract_rejects_a_non_bool_gate():
    c = Contract(input_height=64, input_width=64, max_detections=5, gated_heads="yes")  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="gated_heads"):
        c.check("m.onnx")


def test_tensorrt_refuses_gated_graphs(gated_onnx):
    from df2infer import artifact
    from df2infer.engine import builder

    info = artifact.read_onnx_info(gated_onnx)
    with pytest.raises(ContractError, match="static heads"):
        builder.check_buildable(info)


def test_export_cli_engine_needs_static_heads(tmp_path, capsys):
    """Refused for the gated heads themselves (exit 2 alone would also be "TensorRT is not installed")."""
    from df2infer.apps.main import main

    assert main(["export", str(tmp_path / "m.pt"), "--out", str(tmp_path), "--engine", "--heads", "gated"]) == 2
    err = capsys.readouterr().err
    assert "--engine needs --heads static" in err and "TensorRT cannot build gated heads" in err


# ---------------------------------------------------------------- packed-level RoiAlign, sub-pixel mask predictor


def test_packed_roi_align_equals_multiscale_roi_align():
    """One RoiAlign on the packed map == torchvision's MultiScaleRoIAlign (per-level pooling) for
    boxes inside the image, including boxes touching the right and bottom borders."""
    from torchvision.ops import MultiScaleRoIAlign

    from df2infer_export.deploy import RoILevels, pack_levels

    torch.manual_seed(0)
    H = W = 320
    names = ["0", "1", "2"]
    feats = {n: torch.randn(2, 8, H // s, W // s) for n, s in zip(names, (8, 16, 32))}
    xy = torch.rand(2, 40, 2) * 300
    wh = torch.rand(2, 40, 2) * 300 + 8
    boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor(float(W)))], -1)
    boxes[:, :5, 2:] = W  # flush with the right/bottom borders
    ref = MultiScaleRoIAlign(names, 7, 2)(feats, list(boxes), [(H, W)] * 2)
    scales = torch.tensor([1 / 8, 1 / 16, 1 / 32])
    rows = torch.tensor([0.0, H // 8 + 1, H // 8 + 1 + H // 16 + 1])
    rois = torch.cat([torch.arange(2.0).repeat_interleave(40)[:, None], boxes.reshape(-1, 4)], 1)
    packed_rois = RoILevels()(rois, scales, rows, 3, 5)
    got = torch.ops.torchvision.roi_align(pack_levels(list(feats.values())), packed_rois, 1.0, 7, 7, 2, False)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_subpixel_mask_predictor_equals_torchvision():
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    from df2infer_export.deploy import SubpixelMaskPredictor

    torch.manual_seed(0)
    ref = MaskRCNNPredictor(16, 16, 13).eval()
    x = torch.randn(5, 16, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(SubpixelMaskPredictor(ref)(x), ref(x), atol=1e-5, rtol=1e-5)


def test_subpixel_landmark_predictor_equals_the_deconv_predictor():
    """The 3x3-conv + DepthToSpace form equals LandmarkPredictor (ConvTranspose 4x4 stride 2 padding 1, ReLU,
    gathered scorer rows), on every category, with a non-zero deconv bias and scorer bias."""
    from df2infer_export.deploy import SubpixelLandmarkPredictor
    from df2infer_export.model.landmark_head import LandmarkPredictor

    torch.manual_seed(0)
    ref = LandmarkPredictor(6, deconvs=1).eval()
    with torch.no_grad():
        ref.upsample[0].bias.normal_()
        ref.score_weight.normal_()
        ref.score_bias.normal_()
    x = torch.randn(13, 6, 7, 9)
    labels = torch.arange(1, 14)
    with torch.no_grad():
        want = ref(x, labels)
        torch.testing.assert_close(SubpixelLandmarkPredictor(ref)(x, labels), want, atol=1e-5, rtol=1e-5)
    assert want.shape == (13, 39, 14, 18)


def test_lint_warns_that_gated_graphs_are_onnx_runtime_only(gated_onnx):
    from df2infer_export.lint import lint_onnx

    problems = lint_onnx(gated_onnx)
    assert not [p for p in problems if p.severity == "error"]
    assert [p.kind for p in problems if p.severity == "warning"] == ["runtime_length"]
