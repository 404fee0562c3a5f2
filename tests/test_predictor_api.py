"""The Predictor's public surface beyond predict: predict_batch (what streaming builds on), close() and
context-manager use, the complete Backend protocol, ops.decode, and Detections' shape validation."""

from __future__ import annotations

import fake_model as fm
import numpy as np
import pytest

import df2infer
from df2infer.backends.base import Backend, resolve_device
from df2infer.images import ImageError
from df2infer.ops.decode import decode_detections
from df2infer.ops.letterbox import to_input_batch
from df2infer.ops.options import DecodeOptions
from df2infer.results import Detections


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return fm.build(tmp_path_factory.mktemp("model") / "fake.onnx")


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (120 + 10 * i, 160, 3), dtype=np.uint8) for i in range(n)]


def _same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b) and a.image_size == b.image_size
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.mask_boxes, b.mask_boxes)
    for x, y in zip(a.masks, b.masks):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.landmarks, b.landmarks):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_predict_batch_equals_predict_and_splits_beyond_max_batch(model_path):
    with df2infer.load(model_path, device="cpu") as model:
        frames = _frames(model.backend.max_batch + 3)  # two backend calls
        got = model.predict_batch(frames, conf=0.3)
        want = model.predict(frames, conf=0.3)
        assert len(got) == len(frames)
        for g, w in zip(got, want):
            _same(g, w)
        assert len(got[0]) == int((fm.SCORES[: fm.NUM_DETS] >= 0.3).sum())


def test_predict_batch_names_a_bad_frame(model_path):
    with df2infer.load(model_path, device="cpu") as model:
        frames = _frames(3)
        frames[2] = np.zeros((0, 5, 3), np.uint8)
        with pytest.raises(ImageError, match=r"frames\[2\]"):
            model.predict_batch(frames)


def test_close_and_context_manager_release_the_backend(model_path):
    model = df2infer.load(model_path, device="cpu")
    with model as m:
        assert m is model and len(m.predict(_frames(1))[0]) > 0
    assert model.backend.session is None  # closed on leaving the block
    with pytest.raises(RuntimeError, match="closed"):
        model.predict_batch(_frames(1))
    model.close()  # idempotent


def test_backends_implement_the_complete_protocol(model_path):
    be = df2infer.load(model_path, device="cpu").backend
    assert isinstance(be, Backend)
    for name in ("run", "close", "contract", "max_batch", "name", "device"):
        assert hasattr(be, name), name
    out = be.run(np.zeros((1, 3, be.contract.input_height, be.contract.input_width), np.float32), min_head_score=0.5)
    assert set(out) == set(df2infer.contract.OUTPUT_NAMES)


def test_decode_detections_is_what_the_predictor_returns(model_path):
    model = df2infer.load(model_path, device="cpu")
    frame = _frames(1)[0]
    batch, infos = to_input_batch([frame], model.contract)
    outputs = model.backend.run(batch)
    _same(decode_detections(outputs, 0, infos[0], DecodeOptions(conf=0.3)), model.predict(frame, conf=0.3)[0])
    _same(decode_detections(outputs, 0, infos[0], DecodeOptions(conf=0.3)), model.predict(frame, DecodeOptions(conf=0.3))[0])


def test_resolve_device_is_the_one_auto_rule():
    assert resolve_device("auto", lambda: True) == "cuda:0"
    assert resolve_device("auto", False) == "cpu"
    assert resolve_device("cuda:1", lambda: pytest.fail("probe must run only for auto")) == "cuda:1"
    assert resolve_device("CPU", True) == "cpu"
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu", True)


def _dets(n=2, **kw) -> Detections:
    base = dict(boxes=np.zeros((n, 4), np.float32), scores=np.ones(n, np.float32), labels=np.ones(n, np.int32), image_size=(10, 20))
    base.update(kw)
    return Detections(**base)


def test_detections_validate_shapes_and_carry_track_ids():
    d = _dets(3, path="a.jpg", track_ids=np.array([4, 5, 6]))
    sub = d[[0, 2]]
    assert sub.path == "a.jpg" and sub.track_ids.tolist() == [4, 6]
    for bad, match in [
        (dict(boxes=np.zeros((3, 4), np.float32)), "boxes"),
        (dict(labels=np.ones(3, np.int32)), "labels"),
        (dict(masks=[np.zeros((1, 1), bool)] * 2), "masks / mask_boxes"),
        (dict(masks=[np.zeros((1, 1), bool)], mask_boxes=np.zeros((1, 4), np.int32)), "masks"),
        (dict(landmarks=[np.zeros((1, 3), np.float32)]), "landmarks"),
        (dict(embeddings=np.zeros((2,), np.float32)), "embeddings"),
        (dict(track_ids=np.array([1])), "track_ids"),
        (dict(image_size=(0, 5)), "image_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            _dets(2, **bad)
