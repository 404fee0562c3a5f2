"""Runtime core: preprocess, backend loading checks, postprocess references, results, similarity,
drawing, load/predict, and the detect/info subcommands, on a fake contract-conforming ONNX model."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import cv2
import fake_model as fm
import numpy as np
import pytest

import df2infer
from df2infer.backends.base import DeviceError, ModelLoadError
from df2infer.contract import ContractError
from df2infer.data import spec
from df2infer.eval.results import df2_result_entries
from df2infer.images import ImageError, coerce_image, read_image
from df2infer.ops import boxes as box_ops
from df2infer.ops import landmarks as landmark_ops
from df2infer.ops import masks as mask_ops
from df2infer.ops.letterbox import letterbox, to_input_batch
from df2infer.results import Detections


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return fm.build(tmp_path_factory.mktemp("model") / "fake.onnx")


@pytest.fixture(scope="module")
def predictor(model_path):
    return df2infer.load(model_path, device="cpu")


# ---------------------------------------------------------------- preprocess


# The letterbox of an h x w image into the fake graph's 128 x 160 input, worked out by hand (not by the code
# under test): scale = min(128 / h, 160 / w); new_w, new_h = round(w * scale), round(h * scale); the pads are
# the floor halves of what is left, pad_x = (160 - new_w) // 2, pad_y = (128 - new_h) // 2.
LETTERBOX_BY_HAND = {
    # (h, w): (scale, new_w, new_h, pad_x, pad_y)
    (300, 200): (128 / 300, 85, 128, 37, 0),  # 200 * 0.4267 = 85.3 -> 85; (160 - 85) // 2 = 37
    (100, 400): (0.4, 160, 40, 0, 44),  # width-bound: 100 * 0.4 = 40; (128 - 40) // 2 = 44
    (128, 160): (1.0, 160, 128, 0, 0),
    (57, 33): (128 / 57, 74, 128, 43, 0),  # 33 * 2.2456 = 74.1 -> 74; (160 - 74) // 2 = 43
    (90, 120): (4 / 3, 160, 120, 0, 4),  # width-bound: 90 * 4/3 = 120; (128 - 120) // 2 = 4
    (100, 120): (1.28, 154, 128, 3, 0),  # 120 * 1.28 = 153.6 -> 154; (160 - 154) // 2 = 3
    (110, 120): (128 / 110, 140, 128, 10, 0),  # 120 * 1.1636 = 139.6 -> 140
    (120, 120): (128 / 120, 128, 128, 16, 0),
    (130, 120): (128 / 130, 118, 128, 21, 0),  # 120 * 0.9846 = 118.2 -> 118; (160 - 118) // 2 = 21
    (140, 120): (128 / 140, 110, 128, 25, 0),  # 120 * 0.9143 = 109.7 -> 110
}


@pytest.mark.parametrize("h,w", sorted(LETTERBOX_BY_HAND))
def test_letterbox_geometry_by_hand(h, w):
    scale, new_w, new_h, pad_x, pad_y = LETTERBOX_BY_HAND[(h, w)]
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    canvas, info = letterbox(img, (128, 160), pad_value=114)
    assert canvas.shape == (128, 160, 3) and canvas.dtype == np.uint8
    assert (info.scale, info.pad_x, info.pad_y, info.orig_h, info.orig_w) == (pytest.approx(scale), pad_x, pad_y, h, w)
    # the pads hold the fill value on every side, and the image region is the resized image
    region = np.zeros((128, 160), bool)
    region[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = True
    assert (canvas[~region] == 114).all()
    # OpenCV's bit-exact bilinear (the same on every CPU), called here directly
    resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR_EXACT) if (new_w, new_h) != (w, h) else img
    np.testing.assert_array_equal(canvas[region].reshape(new_h, new_w, 3), resized)
    # points: forward x * scale + pad, back (x - pad) / scale, with the hand numbers
    pts = np.array([[0, 0], [w, h], [w / 3, h / 2]], np.float32)
    fwd = pts * np.float32(scale) + np.array([pad_x, pad_y], np.float32)
    np.testing.assert_allclose(info.to_input(pts), fwd, atol=1e-4)
    np.testing.assert_allclose(info.to_original(fwd), pts, atol=1e-3)


def test_letterbox_points_by_hand():
    """Two cases written out in full: a 100 x 400 image (pads top and bottom) and a 300 x 200 one (left and right)."""
    _, wide = letterbox(np.zeros((100, 400, 3), np.uint8), (128, 160))
    # scale 0.4, pad_y 44: (10, 20) -> (4, 52); (400, 100) -> (160, 84)
    np.testing.assert_allclose(wide.to_input(np.array([[10, 20], [400, 100]], np.float32)), [[4, 52], [160, 84]], atol=1e-4)
    np.testing.assert_allclose(wide.to_original(np.array([[4, 52], [0, 44]], np.float32)), [[10, 20], [0, 0]], atol=1e-4)
    _, tall = letterbox(np.zeros((300, 200, 3), np.uint8), (128, 160))
    # scale 128/300, pad_x 37: (150, 75) -> (37 + 64, 32); (200, 300) -> (37 + 85.33, 128)
    np.testing.assert_allclose(tall.to_input(np.array([[150, 75], [200, 300]], np.float32)), [[101, 32], [122.3333, 128]], atol=1e-3)
    np.testing.assert_allclose(tall.to_original(np.array([[37, 0], [101, 32]], np.float32)), [[0, 0], [150, 75]], atol=1e-3)


def test_to_input_batch_rgb_float_and_pad():
    c = fm.contract()
    img = np.zeros((64, 160, 3), np.uint8)
    img[..., 0] = 10  # B
    img[..., 2] = 200  # R
    batch, infos = to_input_batch([img, img], c)
    assert batch.shape == (2, 3, fm.H, fm.W) and batch.dtype == np.float32
    mid = batch[0, :, fm.H // 2, fm.W // 2]
    np.testing.assert_array_equal(mid, [200, 0, 10])  # RGB order
    assert (batch[0, :, 0, 0] == 114).all()  # top padding
    assert infos[0].pad_y == (fm.H - 64 * 1) // 2 and infos[0].scale == 1.0


def test_coerce_image_conversions(caplog):
    gray = np.full((5, 6), 7, np.uint8)
    assert coerce_image(gray).shape == (5, 6, 3) and (coerce_image(gray) == 7).all()
    assert coerce_image(gray[..., None]).shape == (5, 6, 3)
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 50, 255
    out = coerce_image(bgra)
    assert out.shape == (4, 4, 3) and (out[..., 0] == 50).all()
    with caplog.at_level(logging.INFO):
        u16 = coerce_image(np.full((3, 3, 3), 65535, np.uint16), "x.png")
    assert u16.dtype == np.uint8 and (u16 == 255).all() and "16-bit" in caplog.text
    assert (coerce_image(np.full((2, 2, 3), 128.4, np.float32)) == 128).all()
    assert coerce_image(np.full((2, 2, 3), 9, np.int64)).dtype == np.uint8


@pytest.mark.parametrize(
    "arr,needle",
    [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.full((2, 2, 3), 300.0, np.float32), "0..255"),
        (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
        (np.zeros((2, 2, 3), bool), "dtype bool"),
        (np.zeros((2, 2, 3), np.complex64), "dtype complex64"),
        (np.zeros((2, 2, 3, 1), np.uint8), "4 dimensions"),
        (np.zeros((5,), np.uint8), "1 dimensions"),
        (np.zeros((4, 4, 2), np.uint8), "2 channels"),
        (np.full((2, 2), -1, np.int16), "0..255"),
        ("not an array", "numpy array"),
    ],
)
def test_coerce_image_refusals_name_the_input(arr, needle):
    with pytest.raises(ImageError) as e:
        coerce_image(arr, "images[3]")
    assert "images[3]" in str(e.value) and needle in str(e.value)


def test_read_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(ImageError, match="bad.jpg"):
        read_image(bad)
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((10, 12), 65535, np.uint16))  # 16-bit gray png
    assert read_image(good).shape == (10, 12, 3)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")


# ---------------------------------------------------------------- postprocess


def _grid_sample_reference(mask, box, h, w):
    """Per-pixel loop: detectron2 paste (grid_sample bilinear, align_corners=False, zeros padding)."""
    M = mask.shape[0]
    out = np.zeros((h, w), np.float64)
    x0, y0, x1, y1 = box
    for y in range(h):
        for x in range(w):
            u = (x + 0.5 - x0) / (x1 - x0) * M - 0.5
            v = (y + 0.5 - y0) / (y1 - y0) * M - 0.5
            iu, iv = int(np.floor(u)), int(np.floor(v))
            fu, fv = u - iu, v - iv
            val = 0.0
            for dy, wy in ((0, 1 - fv), (1, fv)):
                for dx, wx in ((0, 1 - fu), (1, fu)):
                    yy, xx = iv + dy, iu + dx
                    if 0 <= yy < M and 0 <= xx < M:
                        val += wy * wx * mask[yy, xx]
            out[y, x] = val
    return out


@pytest.mark.parametrize("box", [(3.2, 4.7, 17.9, 15.1), (-4.0, 2.5, 9.3, 30.0), (10.0, 10.0, 11.5, 12.0), (0, 0, 24, 20)])
def test_paste_masks_matches_grid_sample_reference(box):
    h, w, M = 22, 24, 7
    rng = np.random.default_rng(1)
    mask = rng.random((M, M)).astype(np.float32)
    ref = _grid_sample_reference(mask, box, h, w)
    compact, ext = mask_ops.paste_masks(mask[None], np.array([box], np.float32), (h, w), threshold=0.5)
    x0, y0, x1, y1 = ext[0]
    full = np.zeros((h, w), bool)
    full[y0:y1, x0:x1] = compact[0]
    # probabilities agree exactly over the extent, and nothing outside it reaches the threshold
    probs = mask_ops.paste_mask_probs(mask, np.array(box, np.float32), tuple(ext[0]))
    np.testing.assert_allclose(probs, ref[y0:y1, x0:x1], atol=1e-5)
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    assert (ref[outside] < 0.5).all()
    near = np.abs(ref - 0.5) < 1e-4  # float ties may go either way
    np.testing.assert_array_equal(full[~near], (ref >= 0.5)[~near])


# Compact mask extents by hand, in a 22 x 24 image: [floor(x1), ceil(x2)) x [floor(y1), ceil(y2)), clipped, so
# that every pixel whose centre lies in the box is in it and no column or row more.
EXTENTS_BY_HAND = [
    ((3.2, 4.7, 17.9, 15.1), (3, 4, 18, 16)),
    ((-4.0, 2.5, 9.3, 30.0), (0, 2, 10, 22)),  # clipped left and bottom
    ((10.0, 10.0, 11.5, 12.0), (10, 10, 12, 12)),
    ((5.0, 6.0, 9.0, 8.0), (5, 6, 9, 8)),  # integer edges: pixel centres 5.5 .. 8.5, no ninth column
    ((0, 0, 24, 20), (0, 0, 24, 20)),
]


@pytest.mark.parametrize("box,extent", EXTENTS_BY_HAND)
def test_mask_extent_by_hand(box, extent):
    mask = np.full((1, 7, 7), 0.9, np.float32)
    _, ext = mask_ops.paste_masks(mask, np.array([box], np.float32), (22, 24), threshold=0.5)
    assert tuple(int(v) for v in ext[0]) == extent


def _planted_heatmaps(peaks, K):
    yy, xx = np.mgrid[0:K, 0:K].astype(np.float32)
    return np.stack([8.0 - ((xx - px) ** 2 + (yy - py) ** 2) / (2 * 1.5**2) for px, py in peaks]).astype(np.float32)


@pytest.mark.parametrize("method", ["torchvision", "subpixel"])
def test_decode_landmarks_recovers_planted_peaks(method):
    K = 28
    rng = np.random.default_rng(2)
    boxes = np.array([[10.5, 20.0, 130.0, 220.5], [200.0, 40.0, 260.0, 90.0]], np.float32)
    labels = np.array([1, 8])  # 25 and 14 landmarks
    peaks = rng.uniform(2, K - 3, size=(2, 39, 2))
    maps = np.stack([_planted_heatmaps(p, K) for p in peaks])
    out = landmark_ops.decode_landmarks(maps, boxes, labels, method=method)
    assert [len(o) for o in out] == [25, 14] and all(o.dtype == np.float32 for o in out)
    for i, o in enumerate(out):
        bw, bh = boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1]
        k = len(o)
        want_x = boxes[i, 0] + (peaks[i, :k, 0] + 0.5) * bw / K
        want_y = boxes[i, 1] + (peaks[i, :k, 1] + 0.5) * bh / K
        # subpixel: a quadratic peak is recovered exactly. torchvision: integer argmax on the
        # box-sized map (+-0.5 px) plus the bicubic (a = -0.75) kernel's pull toward grid nodes.
        tol_x, tol_y = (0.05, 0.05) if method == "subpixel" else (0.5 + 0.2 * bw / K, 0.5 + 0.2 * bh / K)
        assert np.abs(o[:, 0] - want_x).max() < tol_x and np.abs(o[:, 1] - want_y).max() < tol_y
        assert (o[:, 2] > 7.5).all() and (o[:, 2] <= 8.1).all()  # bicubic may overshoot a little


def test_decode_landmarks_torchvision_by_hand():
    """torchvision semantics by hand: the K x K map is upsampled (bicubic, align_corners=False) to the
    ceil(w) x ceil(h) box, the argmax pixel d becomes the continuous c = d + 0.5 (Heckbert), scaled by w / ceil(w).
    K = 8 over a 24-pixel box is 3 pixels per cell: cell j's center is pixel 3 j + 1, a single maximum (no tie).
    A peak at cell (row 3, col 5) -> pixel (16, 10) -> (16.5, 10.5) from the box corner."""
    K = 8
    maps = np.full((2, 39, K, K), -5.0, np.float32)
    maps[:, :, 3, 5] = 5.0
    boxes = np.array([[0.0, 0.0, 24.0, 24.0], [100.0, 50.0, 124.0, 74.0]], np.float32)
    out = landmark_ops.decode_landmarks(maps, boxes, np.array([9, 9]), "torchvision")
    assert [len(o) for o in out] == [spec.category(9).num_landmarks] * 2
    np.testing.assert_allclose(out[0][:, :2], np.tile([16.5, 10.5], (len(out[0]), 1)), atol=1e-5)
    np.testing.assert_allclose(out[1][:, :2], np.tile([116.5, 60.5], (len(out[1]), 1)), atol=1e-5)


def test_decode_landmarks_torchvision_equals_torchvision():
    """The `torchvision` method against torchvision's own heatmaps_to_keypoints, on boxes with fractional sizes."""
    torch = pytest.importorskip("torch")
    roi_heads = pytest.importorskip("torchvision.models.detection.roi_heads")
    K = 14
    rng = np.random.default_rng(0)
    boxes = np.array([[3.3, 7.9, 40.2, 61.7], [100.0, 50.0, 124.0, 74.0], [0.5, 0.25, 9.75, 30.5], [12, 30, 13.2, 31.7]], np.float32)
    labels = np.array([1, 8, 9, 4])
    # one smooth maximum per map, so that the argmax does not hinge on float ties between the two bicubic codes
    yy, xx = np.mgrid[0:K, 0:K]
    peaks = rng.uniform(1, K - 2, (len(boxes), 39, 2))
    d2 = (xx - peaks[..., 0, None, None]) ** 2 + (yy - peaks[..., 1, None, None]) ** 2
    maps = (6 - d2 / 3.0 + 0.01 * rng.normal(size=d2.shape)).astype(np.float32)
    ours = landmark_ops.decode_landmarks(maps, boxes, labels, "torchvision")
    for i, o in enumerate(ours):
        xy, score = roi_heads.heatmaps_to_keypoints(torch.from_numpy(maps[i : i + 1, : len(o)]), torch.from_numpy(boxes[i : i + 1]))
        np.testing.assert_allclose(o[:, :2], xy[0, :, :2].numpy(), atol=1e-4)
        np.testing.assert_allclose(o[:, 2], score[0].numpy(), atol=1e-4)


def test_suppress_overlaps():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10.5], [20, 20, 30, 30]], np.float32)
    keep = box_ops.suppress_overlaps(boxes, np.array([0.5, 0.9, 0.4]), iou=0.85)
    assert keep.tolist() == [1, 2]


# ---------------------------------------------------------------- results


def _detections_with_masks():
    h, w = 40, 50
    masks = np.full((2, 6, 6), 0.05, np.float32)
    masks[:, 1:5, 1:5] = 0.95
    boxes = np.array([[5, 5, 25, 30], [20.5, 10.2, 48.0, 39.0]], np.float32)
    compact, ext = mask_ops.paste_masks(masks, boxes, (h, w))
    labels = np.array([1, 9], np.int32)
    lms = [
        np.column_stack(
            [
                np.arange(spec.category(int(c)).num_landmarks, dtype=np.float32) + 1,
                np.full(spec.category(int(c)).num_landmarks, 3.0, np.float32),
                np.ones(spec.category(int(c)).num_landmarks, np.float32),
            ]
        )
        for c in labels
    ]
    return Detections(
        boxes=boxes,
        scores=np.array([0.9, 0.4], np.float32),
        labels=labels,
        image_size=(h, w),
        masks=compact,
        mask_boxes=ext,
        landmarks=lms,
        embeddings=np.zeros((2, 3), np.float32),
        path="x.jpg",
    )


def test_detections_json_and_df2_formats():
    from pycocotools import mask as mask_util

    det = _detections_with_masks()
    assert det.names == ["short_sleeved_shirt", "skirt"]
    assert len(det.filter(0.5)) == 1 and len(det[1:]) == 1 and det[1].labels.tolist() == [9]
    full = det.full_masks()
    assert full.shape == (2, 40, 50) and full[0].any()
    for r, m in zip(det.rle(), full):
        assert isinstance(r["counts"], str)
        np.testing.assert_array_equal(mask_util.decode(r).astype(bool), m)
    d = json.loads(det.to_json(embeddings=True))
    assert d["image_size"] == [40, 50] and len(d["items"]) == 2 and len(d["items"][0]["embedding"]) == 3
    res = df2_result_entries(det, image_id=12)
    assert res["bbox"][0] == {"image_id": 12, "category_id": 1, "bbox": [5.0, 5.0, 20.0, 25.0], "score": 0.9}
    json.dumps(res)  # serializable as-is
    for k in res["keys"]:
        kp = np.array(k["keypoints"]).reshape(-1, 3)
        assert kp.shape == (294, 3)
        cat = spec.category(k["category_id"])
        assert (kp[cat.slot_start : cat.slot_end, 2] == 1).all()
        assert (np.delete(kp, list(cat.slots), axis=0) == 0).all()
        np.testing.assert_allclose(kp[cat.slot_start, :2], [1, 3])
    seg = res["segm"][1]
    np.testing.assert_array_equal(mask_util.decode(seg["segmentation"]).astype(bool), full[1])


def test_annotate_draws_and_keeps_input():
    det = _detections_with_masks()
    img = np.zeros((40, 50, 3), np.uint8)
    out = df2infer.annotate(img, det)
    assert out.shape == img.shape and out.any() and not img.any()


# ---------------------------------------------------------------- loading


def test_missing_truncated_and_non_onnx_files_are_named(tmp_path, model_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        df2infer.load(tmp_path / "nope.onnx", device="cpu")
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(model_path.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="trunc.onnx"):
        df2infer.load(trunc, device="cpu")
    text = tmp_path / "text.onnx"
    text.write_text("hello, I am not a model\n" * 10)
    with pytest.raises(ModelLoadError, match="text.onnx"):
        df2infer.load(text, device="cpu")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty.onnx"):
        df2infer.load(empty, device="cpu")


def test_contract_errors_name_the_file(tmp_path):
    p = fm.build(tmp_path / "v99.onnx", contract_json=fm.wrong_version_json())
    with pytest.raises(ContractError, match=r"v99\.onnx.*version 99"):
        df2infer.load(p, device="cpu")
    p = fm.build(tmp_path / "nometa.onnx", metadata=False)
    with pytest.raises(ContractError, match=r"nometa\.onnx.*no df2infer contract"):
        df2infer.load(p, device="cpu")
    p = fm.build(tmp_path / "renamed.onnx", rename={"masks": "mask_probs"})
    with pytest.raises(ContractError, match=r"renamed\.onnx.*lacks outputs \['masks'\]"):
        df2infer.load(p, device="cpu")


def test_device_errors(model_path, tmp_path):
    from df2infer.backends.onnxruntime_backend import cuda_available

    if cuda_available():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        df2infer.load(model_path, device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        df2infer.load(model_path, device="tpu")
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"x")
    with pytest.raises(DeviceError, match="GPU only"):
        df2infer.load(eng, device="cpu")
    assert df2infer.load(model_path, device="auto").device == "cpu"


def test_no_bundled_model_message(monkeypatch, tmp_path):
    """A checkout without the bundled model (it is committed, so this runs with the path pointed elsewhere)."""
    from df2infer import api

    missing = tmp_path / "models" / "default.onnx"
    monkeypatch.setattr(api, "DEFAULT_MODEL", missing)
    with pytest.raises(FileNotFoundError) as e:
        df2infer.load()
    assert str(missing) in str(e.value) and api.MAKE_DEFAULT_MODEL.split()[0] in str(e.value)


# ---------------------------------------------------------------- predict


def _expected_boxes(h, w):
    """The fake model's boxes (input pixels) in the h x w image, from the hand-derived letterbox: (x - pad) / scale, clipped."""
    scale, _, _, pad_x, pad_y = LETTERBOX_BY_HAND[(h, w)]
    b = (fm.BOXES[: fm.NUM_DETS].astype(np.float64) - [pad_x, pad_y, pad_x, pad_y]) / scale
    return np.clip(b, 0, [w, h, w, h])


# The fake model's first three boxes back in image pixels, written out: [10, 20, 70, 100], [80, 10, 150, 120],
# [30, 30, 60, 60] in the 128 x 160 input.
BOXES_BY_HAND = {
    # scale 1.28, pad_x 3
    (100, 120): [[5.46875, 15.625, 52.34375, 78.125], [60.15625, 7.8125, 114.84375, 93.75], [21.09375, 23.4375, 44.53125, 46.875]],
    (90, 120): [[7.5, 12.0, 52.5, 72.0], [60.0, 4.5, 112.5, 87.0], [22.5, 19.5, 45.0, 42.0]],  # scale 4/3, pad_y 4
}


@pytest.mark.parametrize("h,w", sorted(BOXES_BY_HAND))
def test_boxes_masks_landmarks_back_in_image_pixels_by_hand(predictor, h, w):
    """A non-square image (100 x 120 pads x by 3, 90 x 120 pads y by 4): boxes, mask centres and landmarks in
    image pixels, against numbers worked out by hand from the fake model's planted outputs."""
    r = predictor.predict(np.full((h, w, 3), 90, np.uint8), conf=0.3, landmark_method="subpixel")[0]
    want = np.array(BOXES_BY_HAND[(h, w)])
    np.testing.assert_allclose(r.boxes, want, atol=1e-3)
    # the fake mask is a disk at the box centre (radius 0.4 of the box): the pasted pixels' centroid is the box centre
    for m, (x0, y0, _, _), b in zip(r.masks, r.mask_boxes, want):
        ys, xs = np.nonzero(m)
        centroid = [x0 + xs.mean() + 0.5, y0 + ys.mean() + 0.5]  # pixel centres
        np.testing.assert_allclose(centroid, [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2], atol=0.3)
    # planted heatmap peaks (quadratic, on cell centres): x = x1 + (col + 0.5) * box width / K, exactly for subpixel
    pk = fm.peak_cells()
    for i, lm in enumerate(r.landmarks):
        k = len(lm)
        bw, bh = want[i, 2] - want[i, 0], want[i, 3] - want[i, 1]
        np.testing.assert_allclose(lm[:, 0], want[i, 0] + (pk[i, :k, 1] + 0.5) * bw / fm.K, atol=0.01)
        np.testing.assert_allclose(lm[:, 1], want[i, 1] + (pk[i, :k, 0] + 0.5) * bh / fm.K, atol=0.01)


def test_predict_paths_arrays_generators_with_a_corrupt_file(predictor, tmp_path, caplog):
    rng = np.random.default_rng(4)
    imgs = [np.full((90 + 10 * i, 120, 3), 20 * (i + 1), np.uint8) for i in range(6)]
    paths = []
    for i, im in enumerate(imgs[:3]):
        paths.append(str(tmp_path / f"im{i}.png"))
        cv2.imwrite(paths[-1], im)
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(bytes(rng.integers(0, 255, 300, dtype=np.uint8)))
    inputs = [paths[0], imgs[3], str(bad), paths[1], imgs[4][..., 0], paths[2], imgs[5]]  # 6 good: two batches of <= 4
    with caplog.at_level(logging.WARNING):
        res = predictor.predict(inputs, conf=0.3)
    assert len(res) == 7 and len(res.failures) == 1 and len(res.ok) == 6
    f = res[2]
    assert not f.ok and f.index == 2 and "corrupt.jpg" in f.message
    assert "1 of 7 images failed" in caplog.text and "corrupt.jpg" in caplog.text
    means = [imgs[0], imgs[3], None, imgs[1], imgs[4], imgs[2], imgs[5]]
    for i, r in enumerate(res):
        if i == 2:
            continue
        h, w = means[i].shape[:2]
        assert r.image_size == (h, w)
        assert r.labels.tolist() == [1, 8, 9]  # score 0.2 dropped at conf 0.3
        np.testing.assert_allclose(r.boxes, _expected_boxes(h, w)[:3], atol=1e-3)
        # embeddings carry each image's own mean (letterboxed: image and padding), so batch order is kept
        _, info = letterbox(means[i] if means[i].ndim == 3 else cv2.cvtColor(means[i], cv2.COLOR_GRAY2BGR), (fm.H, fm.W))
        np.testing.assert_allclose(r.embeddings, _[...].mean() * fm.EMB_BASIS[[0, 1, 2]], rtol=1e-4, atol=1e-5)
        assert len(r.masks) == 3 and all(m.any() for m in r.masks)
        assert [len(l) for l in r.landmarks] == [25, 14, 8]
    assert res[0].path == paths[0] and res[1].path is None
    # generators and single inputs
    gen = predictor.predict((im for im in imgs[:2]), conf=0.9)
    assert [len(r) for r in gen] == [1, 1]
    one = predictor.predict(paths[0])
    assert len(one) == 1 and one[0].ok
    batch4d = predictor.predict(np.stack([imgs[0], imgs[0]]))
    assert len(batch4d) == 2
    t = predictor.timings.summary()
    assert set(t) == {"read", "preprocess", "inference", "postprocess"} and t["inference"]["images"] >= 6


def test_predict_on_error_raise_and_options(predictor, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageError, match="bad.png"):
        predictor.predict([bad], on_error="raise")
    img = np.full((128, 160, 3), 90, np.uint8)
    r = predictor.predict(img, conf=0.0, masks=False, landmarks=False, embeddings=False)[0]
    assert len(r) == 4 and r.masks is None and r.landmarks is None and r.embeddings is None
    r = predictor.predict(img, conf=0.0, suppress_iou=0.5, landmark_method="subpixel")[0]
    assert len(r) == 4  # the planted boxes do not overlap by IoU > 0.5
    # planted heatmap peaks decode to the planted cells (fake model: image = input, scale 1)
    pk = fm.peak_cells()
    for i, lm in enumerate(r.landmarks):
        b = fm.BOXES[i]
        k = len(lm)
        want_x = b[0] + (pk[i, :k, 1] + 0.5) * (b[2] - b[0]) / fm.K
        want_y = b[1] + (pk[i, :k, 0] + 0.5) * (b[3] - b[1]) / fm.K
        assert np.abs(lm[:, 0] - want_x).max() < 1.0 and np.abs(lm[:, 1] - want_y).max() < 1.0


def test_similarity_from_contract(predictor):
    from df2infer.retrieval.similarity import match_probability

    a = np.random.default_rng(5).normal(size=(3, fm.D))
    np.testing.assert_allclose(predictor.similarity(a, a[:2]), match_probability(a, a[:2], fm.SIM_W, fm.SIM_B), rtol=1e-5)


# ---------------------------------------------------------------- CLI and the no-torch rule


def _run_cli(*args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(df2infer.__file__)))
    return subprocess.run([sys.executable, "-m", "df2infer", *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def test_detect_and_info_cli(model_path, tmp_path):
    img = tmp_path / "in" / "a.jpg"
    img.parent.mkdir()
    cv2.imwrite(str(img), np.full((100, 150, 3), 60, np.uint8))
    (tmp_path / "in" / "b.jpg").write_bytes(b"junk")
    out = tmp_path / "out"
    p = _run_cli("detect", img.parent, "--model", model_path, "--out", out, "--device", "cpu")
    assert p.returncode == 1, p.stderr  # one image failed
    assert "b.jpg" in p.stderr and (out / "a.jpg").is_file()
    lines = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and len(lines[0]["items"]) == 3 and "error" in lines[1]
    p = _run_cli("info", model_path, "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["contract"]["max_detections"] == fm.N
    assert {o["name"] for o in info["outputs"]} == set(df2infer.contract.OUTPUT_NAMES)


def test_runtime_never_imports_torch(model_path):
    code = (
        "import sys, numpy as np, df2infer\n"
        "from df2infer.eval.results import df2_result_entries\n"
        f"m = df2infer.load({str(model_path)!r}, device='auto')\n"
        "r = m.predict(np.zeros((50, 60, 3), np.uint8))\n"
        "df2infer.annotate(np.zeros((50, 60, 3), np.uint8), r[0]); df2_result_entries(r[0], 1)\n"
        "import df2infer.apps.main, df2infer.retrieval, df2infer.stream, df2infer.sinks.video\n"
        "bad = [k for k in sys.modules if k == 'torch' or k.startswith('torch.')]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(df2infer.__file__)))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr


def test_paste_masks_two_threads_equal_one(monkeypatch):
    """Large pastes split over a worker thread give exactly the single-threaded result, in order."""
    rng = np.random.default_rng(3)
    masks = rng.random((7, 28, 28)).astype(np.float32)
    xy = rng.uniform(0, 500, (7, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 400, (7, 2))], 1).astype(np.float32)
    monkeypatch.setattr(mask_ops, "_PARALLEL_PASTE_PIXELS", 10**12)
    serial, ext_s = mask_ops.paste_masks(masks, boxes, (720, 1280))
    monkeypatch.setattr(mask_ops, "_PARALLEL_PASTE_PIXELS", 0)
    if mask_ops._paste_pool() is None:
        pytest.skip("one usable CPU: paste_masks never uses the worker thread")
    threaded, ext_t = mask_ops.paste_masks(masks, boxes, (720, 1280))
    np.testing.assert_array_equal(ext_s, ext_t)
    assert len(serial) == len(threaded) == 7
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
