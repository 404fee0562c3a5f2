"""The OpenVINO backend (df2infer.backends.openvino_backend) behind the same Backend protocol and Predictor
contract as ONNX Runtime: the same outputs as ONNX Runtime on the same gated-head file (the reference), the gate
fed as a real input, the checks that name the file, `load(..., backend=...)` and the CPU rule of `backend="auto"`.

OpenVINO is installed by `make setup` (extra `openvino`); under CI=true its absence fails these tests.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from df2infer.contract import HEAD_SCORE_INPUT, ContractError

if os.environ.get("CI") == "true":
    import openvino  # noqa: F401  (the Makefile installs it: its absence is a failure in CI)
else:
    pytest.importorskip("openvino", reason="install OpenVINO: pip install df2infer[openvino] (make setup does)")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from tiny_match_rcnn import SIZE, N, P  # noqa: E402

import df2infer  # noqa: E402
from df2infer.backends import Backend  # noqa: E402
from df2infer.backends.cpu_choice import choose_cpu_backend  # noqa: E402
from df2infer.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from df2infer.backends.openvino_backend import OpenVinoBackend  # noqa: E402


@pytest.fixture(scope="module")
def gated_onnx(tmp_path_factory):
    from tiny_match_rcnn import build_tiny_model

    from df2infer_export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("ov") / "model.fp32.onnx"
    export_onnx(build_tiny_model(score_thresh=0.05), path, max_detections=N, num_proposals=P, max_batch=4, gate_heads=True)
    return path


@pytest.fixture(scope="module")
def images():
    from df2infer_export.onnx_export import test_inputs

    return test_inputs(SIZE, SIZE, batches=(3,), seed=2)[0]


@pytest.fixture(scope="module")
def ov_backend(gated_onnx):
    return OpenVinoBackend(gated_onnx)


def _gate_between_rows(scores: np.ndarray) -> float:
    return float(np.median(scores[scores > 0]))


def test_openvino_equals_onnxruntime_with_and_without_the_gate(gated_onnx, ov_backend, images):
    ov_be, ort_be = ov_backend, OnnxRuntimeBackend(gated_onnx)
    assert isinstance(ov_be, Backend) and ov_be.name == "openvino" and ov_be.device == "cpu"
    ref0 = ort_be.run(images)
    thr = _gate_between_rows(ref0["scores"])
    for gate in (None, thr):
        got, ref = ov_be.run(images, min_head_score=gate), ort_be.run(images, min_head_score=gate)
        assert set(got) == set(ref)
        for name in ("num_dets", "labels"):
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
        for name in ("boxes", "scores", "masks", "landmark_heatmaps", "embeddings"):
            assert got[name].dtype == ref[name].dtype and got[name].shape == ref[name].shape, name
            np.testing.assert_allclose(got[name], ref[name], atol=2e-3, rtol=1e-3, err_msg=f"{name} at gate {gate}")
    # the gate reaches OpenVINO: rows past K have no heads
    k = int((ref0["scores"] >= np.float32(thr)).sum(1).max())
    gated = ov_be.run(images, min_head_score=thr)
    assert not gated["masks"][:, k:].any() and ov_be.run(images)["masks"][:, k:].any()


def test_outputs_are_owned_by_the_caller(ov_backend, images):
    be = ov_backend
    first = be.run(images[:1])
    keep = first["boxes"].copy()
    be.run(images[1:2])  # a second call must not overwrite the first call's arrays
    np.testing.assert_array_equal(first["boxes"], keep)


def test_old_files_with_the_gate_as_an_initializer_run_ungated(gated_onnx, images, tmp_path, caplog):
    import onnx

    m = onnx.load(str(gated_onnx))
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(1, np.float32), HEAD_SCORE_INPUT))
    old = tmp_path / "old.onnx"
    onnx.save(m, str(old))
    be = OpenVinoBackend(old)
    assert "folds away" in caplog.text
    ref = OnnxRuntimeBackend(gated_onnx).run(images)
    got = be.run(images, min_head_score=0.9)  # ignored: heads on every row, as with the gate at 0
    np.testing.assert_allclose(got["masks"], ref["masks"], atol=2e-3)


def test_refusals_name_the_file(gated_onnx, tmp_path):
    import onnx

    from df2infer.artifact import read_onnx_contract, write_onnx_contract
    from df2infer.backends.base import DeviceError

    with pytest.raises(DeviceError, match="CPU only"):
        OpenVinoBackend(gated_onnx, "cuda")
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        OpenVinoBackend(tmp_path / "nothing.onnx")
    m = onnx.load(str(gated_onnx))
    c = read_onnx_contract(m)
    c.gated_heads = False  # a contract without gates: the second input is not in it
    write_onnx_contract(m, c)
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(ContractError, match="bad.onnx"):
        OpenVinoBackend(bad)


def test_load_backend_parameter_and_predictor(gated_onnx, images):
    p = df2infer.load(str(gated_onnx), device="cpu", backend="openvino")
    q = df2infer.load(str(gated_onnx), device="cpu", backend="onnxruntime")
    assert p.backend.name == "openvino" and q.backend.name == "onnxruntime"
    frames = [np.ascontiguousarray(x.transpose(1, 2, 0)[:, :, ::-1]).astype(np.uint8) for x in images]
    a, b = p.predict(frames, conf=0.05), q.predict(frames, conf=0.05)
    assert sum(len(d) for d in b) > 0
    for x, y in zip(a, b):
        assert len(x) == len(y)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=0.05)
    with pytest.raises(ValueError, match="backend='tflite'"):
        df2infer.load(str(gated_onnx), device="cpu", backend="tflite")
    with pytest.raises(ValueError, match="tensorrt_ep"):
        df2infer.load(str(gated_onnx), device="cpu", backend="openvino", tensorrt_ep=True)


def test_cpu_rule(gated_onnx, monkeypatch):
    """The measured rule: ONNX Runtime for every file when both are installed (OpenVINO FP32 no faster beyond the
    spread, OpenVINO INT8 faster but 0.24 box AP points from ONNX Runtime's); OpenVINO only when asked, or when ONNX
    Runtime is missing; the table is read per precision; off x86 always ONNX Runtime."""
    from df2infer.backends import cpu_choice

    monkeypatch.setattr(cpu_choice, "is_x86", lambda: True)
    for precision in ("fp32", "fp16", "int8"):
        assert choose_cpu_backend(gated_onnx, precision=precision, openvino=True) == "onnxruntime"
    assert choose_cpu_backend(gated_onnx, openvino=True) == "onnxruntime"  # the file's contract says fp32
    monkeypatch.setattr(cpu_choice, "X86_RULE", {"fp32": "openvino"})
    assert choose_cpu_backend(gated_onnx, openvino=True) == "openvino"  # the rule is read from the table
    assert choose_cpu_backend(gated_onnx, openvino=False) == "onnxruntime"
    monkeypatch.setattr(cpu_choice, "is_x86", lambda: False)
    assert choose_cpu_backend(gated_onnx, openvino=True) == "onnxruntime"  # ARM: not measured
    monkeypatch.setattr(cpu_choice, "is_x86", lambda: True)
    assert df2infer.load(str(gated_onnx), device="cpu").backend.name == "openvino"  # auto follows the rule
    monkeypatch.setattr(cpu_choice, "_onnxruntime_available", lambda: False)
    monkeypatch.setattr(cpu_choice, "X86_RULE", {})
    assert choose_cpu_backend(gated_onnx, openvino=True) == "openvino"  # the only backend installed


def test_cli_backend_option_reaches_load(gated_onnx):
    """`--backend` of the verbs (df2infer.apps.common) picks the library; argparse refuses an unknown one by name."""
    import argparse

    from df2infer.apps.common import add_model_arguments, load_model

    p = argparse.ArgumentParser(prog="df2infer detect")
    add_model_arguments(p)
    for name in ("openvino", "onnxruntime"):
        args = p.parse_args(["--model", str(gated_onnx), "--device", "cpu", "--backend", name])
        assert load_model(args, "detect").backend.name == name
    with pytest.raises(SystemExit):
        p.parse_args(["--backend", "tflite"])
