"""The seams every layer shares: DecodeOptions (validated once), FrameInfo + the one JSONL record, the sink
protocol (write/close, Tee, PerSource), and the error family (Df2inferError, old builtin bases kept,
the stream worker's own exception re-raised)."""

from __future__ import annotations

import json

import cv2
import fake_model as fm
import numpy as np
import pytest

import df2infer
from df2infer.apps.main import main
from df2infer.errors import Df2inferError, InputError, MissingPartError, ModelError, OptionError
from df2infer.ops.options import DEFAULT_LANDMARK_METHOD, DecodeOptions
from df2infer.results import JSONL_SCHEMA, Detections, FrameInfo, FrameResult, PredictionFailure, record
from df2infer.sinks.base import PerSource, Sink, Tee, close_all
from df2infer.stream import Pipeline


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return fm.build(tmp_path_factory.mktemp("model") / "fake.onnx")


# ---------------------------------------------------------------- DecodeOptions


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("conf", 1.5, "[0, 1]"),
        ("conf", -0.1, "[0, 1]"),
        ("conf", float("nan"), "[0, 1]"),
        ("conf", "0.3", "[0, 1]"),
        ("mask_threshold", 0.0, "(0, 1]"),
        ("mask_threshold", 2, "(0, 1]"),
        ("suppress_iou", 0.0, "(0, 1]"),
        ("suppress_iou", 1.01, "(0, 1]"),
        ("landmark_method", "nearest", "('torchvision', 'subpixel')"),
        ("masks", 1, "True or False"),
    ],
)
def test_decode_options_name_the_option_the_value_and_the_range(field, value, allowed):
    with pytest.raises(OptionError) as e:
        DecodeOptions(**{field: value})
    msg = str(e.value)
    assert f"{field}={value!r}" in msg and allowed in msg, msg
    assert isinstance(e.value, ValueError) and isinstance(e.value, InputError)  # old `except ValueError` still catches it


def test_decode_options_are_frozen_and_replace_validates():
    o = DecodeOptions()
    assert (o.conf, o.masks, o.landmarks, o.embeddings, o.mask_threshold, o.landmark_method, o.suppress_iou) == (
        0.3,
        True,
        True,
        True,
        0.5,
        "subpixel",
        None,
    )
    assert DEFAULT_LANDMARK_METHOD == "subpixel"  # the method the held-out pin is measured with
    with pytest.raises(AttributeError):
        o.conf = 0.5  # type: ignore[misc]
    assert o.replace(conf=0.5).conf == 0.5 and o.conf == 0.3
    with pytest.raises(OptionError, match="suppress_iou=0"):
        o.replace(suppress_iou=0)
    with pytest.raises(OptionError, match=r"unknown option\(s\) \['threshold'\]"):
        o.replace(threshold=0.5)
    with pytest.raises(OptionError, match="expected a DecodeOptions"):
        DecodeOptions.of(0.5)  # type: ignore[arg-type]  # predict(images, 0.5): conf must be named


def test_the_predictor_validates_before_reading_anything(model_path):
    with df2infer.load(model_path, device="cpu") as model:
        with pytest.raises(OptionError, match="landmark_method='nearest'"):
            model.predict(np.zeros((20, 20, 3), np.uint8), landmark_method="nearest")
        # the load-time default applies when a call passes none; a call's keywords replace fields of it
        strict = df2infer.load(model_path, device="cpu", options=DecodeOptions(conf=0.9))
        frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        assert len(strict.predict(frame)[0]) == int((fm.SCORES[: fm.NUM_DETS] >= 0.9).sum()) == 1
        assert len(strict.predict(frame, conf=0.3)[0]) == int((fm.SCORES[: fm.NUM_DETS] >= 0.3).sum()) == 3


def test_cli_decode_options_exit_2_naming_the_option(model_path, tmp_path, capsys):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((40, 50, 3), np.uint8))
    assert main(["detect", str(img), "--model", str(model_path), "--conf", "7", "--out", str(tmp_path / "o")]) == 2
    assert "conf=7.0" in capsys.readouterr().err


# ---------------------------------------------------------------- FrameInfo and the JSONL record


def _two_items(**kw) -> Detections:
    return Detections(
        boxes=np.array([[1.004, 2.0, 30.5, 40.25], [5, 6, 7, 8]], np.float32),
        scores=np.array([0.912345678, 0.5], np.float32),
        labels=np.array([1, 9], np.int32),
        image_size=(48, 64),
        landmarks=[np.array([[3.14159, 4.0, 0.123456]], np.float32), np.zeros((0, 3), np.float32)],
        **kw,
    )


def test_a_video_frame_record_field_by_field():
    info = FrameInfo(source_id=3, display_name="rtsp://cam/1", index=17, wall_time=1700000000.1234567, pts=None, live=True, fps=25.0)
    det = _two_items(track_ids=np.array([7, 8]))
    want = {
        "schema": 2,
        "source": "rtsp://cam/1",
        "source_id": 3,
        "frame_index": 17,
        "timestamp": 1700000000.123457,
        "pts": None,
        "path": None,
        "image_size": [48, 64],
        "items": [
            {
                "category_id": 1,
                "category": "short_sleeved_shirt",
                "score": 0.91235,
                "box": [1.0, 2.0, 30.5, 40.25],
                "landmarks": [[3.14, 4.0, 0.1235]],
                "track_id": 7,
            },
            {"category_id": 9, "category": "skirt", "score": 0.5, "box": [5.0, 6.0, 7.0, 8.0], "landmarks": [], "track_id": 8},
        ],
    }
    got = record(info, det, masks=False)
    assert list(got) == list(want)  # the field order too: readers of the JSONL see it
    for key in want:
        assert got[key] == want[key], key
    assert JSONL_SCHEMA == 2
    # the FrameResult a sink gets writes the same record
    assert FrameResult(info, det).record(masks=False) == want


def test_an_image_record_and_a_failure_record_field_by_field():
    det = _two_items(path="shots/a.jpg")
    got = record(FrameInfo.of_input(4, "shots/a.jpg"), det, masks=False, landmarks=False)
    want_head = {
        "schema": 2,
        "source": "shots/a.jpg",
        "source_id": 4,
        "frame_index": 0,
        "timestamp": None,
        "pts": None,
        "path": "shots/a.jpg",
    }
    assert {k: got[k] for k in want_head} == want_head and "landmarks" not in got["items"][0]
    fail = PredictionFailure(index=2, source="shots/bad.jpg", error=OSError("shots/bad.jpg: cannot decode"), path="shots/bad.jpg")
    assert record(fail.info, fail) == {
        "schema": 2,
        "source": "shots/bad.jpg",
        "source_id": 2,
        "frame_index": 0,
        "timestamp": None,
        "pts": None,
        "path": "shots/bad.jpg",
        "error": "shots/bad.jpg: cannot decode",
    }


def test_detect_writes_schema_2_with_the_name_in_source(model_path, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for p in (a, b):
        cv2.imwrite(str(p), np.full((60, 80, 3), 128, np.uint8))
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    rc = main(["detect", str(a), str(missing), str(b), "--model", str(model_path), "--device", "cpu", "--out", str(out)])
    assert rc == 1  # one image failed, the others were written
    recs = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    heads = [(r["schema"], r["source"], r["source_id"], r["frame_index"], r["path"], "error" in r) for r in recs]
    assert heads == [
        (2, str(a), 0, 0, str(a), False),
        (2, str(missing), 1, 0, str(missing), True),
        (2, str(b), 2, 0, str(b), False),
    ]
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a.jpg", "b.jpg"]


# ---------------------------------------------------------------- sinks


class Recorder(Sink):
    def __init__(self, name: str, log: list):
        self.name, self.log, self.closed = name, log, False

    def write(self, result: FrameResult) -> None:
        self.log.append((self.name, result.info.source_id, result.info.index))

    def close(self) -> None:
        self.closed = True


def _result(sid: int, index: int) -> FrameResult:
    return FrameResult(FrameInfo(sid, f"cam{sid}", index), _two_items(), np.zeros((48, 64, 3), np.uint8))


def test_per_source_fans_out_one_sink_per_source_and_tee_writes_all():
    log: list = []
    made: list = []

    def make(info: FrameInfo) -> Recorder:
        made.append(info.display_name)
        return Recorder(f"video-{info.source_id}", log)

    per_source = PerSource(make)
    jsonl = Recorder("all", log)
    with Tee([jsonl, per_source]) as sink:
        for sid, idx in [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1)]:
            sink.write(_result(sid, idx))
    assert made == ["cam0", "cam1", "cam2"]  # one sink per source, made on its first frame
    assert [e for e in log if e[0] == "all"] == [("all", 0, 0), ("all", 1, 0), ("all", 0, 1), ("all", 2, 0), ("all", 1, 1)]
    assert [e for e in log if e[0] == "video-0"] == [("video-0", 0, 0), ("video-0", 0, 1)]
    assert [e for e in log if e[0] == "video-1"] == [("video-1", 1, 0), ("video-1", 1, 1)]
    assert [e for e in log if e[0] == "video-2"] == [("video-2", 2, 0)]
    assert jsonl.closed and all(s.closed for s in per_source.sinks.values())  # the context manager closed them all


def test_close_all_closes_every_sink_then_raises_the_first_failure():
    class Broken(Recorder):
        def close(self) -> None:
            raise OSError(f"{self.name}: disk full")

    log: list = []
    sinks = [Broken("a", log), Recorder("b", log), Broken("c", log)]
    with pytest.raises(OSError, match="a: disk full"):
        close_all(sinks)
    assert sinks[1].closed


def test_jsonl_and_image_folder_sinks_write_what_they_get(tmp_path):
    from df2infer.sinks.image_folder import ImageFolderSink
    from df2infer.sinks.jsonl import JsonlSink

    r = FrameResult(FrameInfo.of_input(0, "x/a.png"), _two_items(path="x/a.png"), np.zeros((48, 64, 3), np.uint8))
    fail = PredictionFailure(1, "x/b.png", OSError("x/b.png: gone"))
    with JsonlSink(tmp_path / "d.jsonl") as j, ImageFolderSink(tmp_path / "img") as f:
        for res in (r, FrameResult(fail.info, fail)):
            j.write(res)
            f.write(res)
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert lines == [record(r.info, r.detections, masks=False), record(fail.info, fail, masks=False)]
    assert [p.name for p in f.paths] == ["a.jpg"]  # the failure has no picture


# ---------------------------------------------------------------- the error family


def test_public_errors_are_in_the_family_and_keep_their_builtin_base():
    from df2infer.artifact import EngineCompatibilityError
    from df2infer.data.annotations import AnnotationError
    from df2infer.eval.results import ResultFormatError
    from df2infer.retrieval.gallery import GalleryError

    for cls, branch, builtin in [
        (df2infer.ImageError, InputError, ValueError),
        (df2infer.SourceError, InputError, RuntimeError),
        (AnnotationError, InputError, ValueError),
        (ResultFormatError, InputError, ValueError),
        (GalleryError, InputError, ValueError),
        (OptionError, InputError, ValueError),
        (df2infer.ModelLoadError, ModelError, RuntimeError),
        (EngineCompatibilityError, ModelError, RuntimeError),
        (df2infer.ContractError, ModelError, ValueError),
        (df2infer.DeviceError, ModelError, RuntimeError),
        (MissingPartError, ModelError, ValueError),
    ]:
        err = cls("x")
        assert isinstance(err, Df2inferError) and isinstance(err, branch) and isinstance(err, builtin), cls.__name__
    assert not issubclass(InputError, ModelError) and not issubclass(ModelError, InputError)
    assert df2infer.Df2inferError is Df2inferError


def test_a_missing_similarity_head_is_asked_not_caught(model_path, tmp_path):
    no_sim = fm.build(tmp_path / "nosim.onnx", contract_json=fm.contract(similarity_weight=[], similarity_bias=[]).to_json())
    with df2infer.load(no_sim, device="cpu") as model:
        assert model.has_similarity is False
        with pytest.raises(MissingPartError, match="similarity"):
            _ = model.similarity
    with df2infer.load(model_path, device="cpu") as model:
        assert model.has_similarity is True and model.similarity is not None


class _Cause(Exception):
    pass


class _FailingPredictor:
    """A Predictor stand-in whose batch call fails like a broken backend: a ModelLoadError raised from a cause."""

    class backend:
        max_batch = 2

    def predict_batch(self, images, options=None):
        try:
            raise _Cause("driver went away")
        except _Cause as c:
            raise df2infer.ModelLoadError("engine.plan: the CUDA context is lost") from c


def test_the_pipeline_reraises_the_workers_own_error(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((30, 40, 3), 50, np.uint8))
    with pytest.raises(df2infer.ModelLoadError, match="CUDA context is lost") as e:
        for _ in Pipeline([str(folder)], _FailingPredictor()):
            pass
    assert type(e.value) is df2infer.ModelLoadError and isinstance(e.value.__cause__, _Cause)


def test_load_or_exit_is_one_path(tmp_path, capsys):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((40, 50, 3), np.uint8))
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    for verb in ("detect", "video"):
        rc = main([verb, str(img), "--model", str(bad), "--device", "cpu", "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and f"df2infer {verb}: " in err and "bad.onnx" in err, (verb, rc, err)
