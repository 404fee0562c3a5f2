"""The bundled ONNX files are what a fresh export of the committed checkpoint produces.

If someone retrains or changes the exporter without running `make bundle`, the runtime's default
model would silently drift from the checkpoint the README's numbers describe; this catches it.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from df2infer.api import DEFAULT_MODEL  # noqa: E402
from df2infer.contract import Contract  # noqa: E402
from df2infer_export import bundle  # noqa: E402
from df2infer_export.onnx_export import ort_run  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    work = tmp_path_factory.mktemp("bundle")
    return bundle.build(bundle.CHECKPOINT, work / "out", work_dir=work)


@pytest.fixture(scope="module")
def images():
    """Three letterboxed synthetic images from the held-out-style generator, as a batch."""
    from df2infer.ops.letterbox import to_input_batch
    from df2infer.synth.generator import plan, render_image

    entries = plan(3, 9001)
    contract = _contract(DEFAULT_MODEL)
    imgs = [render_image(e, 9001, i)[0] for i, e in enumerate(entries)]
    batch, _ = to_input_batch(imgs, contract)
    return batch


def _contract(path) -> Contract:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return Contract.from_metadata({p.key: p.value for p in m.metadata_props}, source=str(path))


def test_bundled_files_exist_and_carry_the_contract():
    for name, precision in ((bundle.FP32_NAME, "fp32"), (bundle.INT8_NAME, "int8")):
        path = bundle.MODELS / name
        assert path.is_file(), f"{path} is missing: run `make bundle`"
        c = _contract(path)
        assert c.precision == precision
        assert c.model.get("checkpoint_sha256"), "the bundled model must name the checkpoint it came from"
        assert c.gated_heads, "the bundled CPU models are gated-head graphs"


def _compare(a: dict, b: dict, *, box_atol: float, prob_atol: float) -> None:
    np.testing.assert_array_equal(a["num_dets"], b["num_dets"])
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=box_atol)
    np.testing.assert_allclose(a["scores"], b["scores"], atol=prob_atol)
    np.testing.assert_allclose(a["masks"], b["masks"], atol=prob_atol)
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=prob_atol)


@pytest.mark.parametrize("name", [bundle.FP32_NAME, bundle.INT8_NAME])
def test_bundled_gate_is_a_real_graph_input(name):
    """min_head_score is a graph input and no initializer (OpenVINO folds an input that is also an initializer)."""
    import onnx

    m = onnx.load(str(bundle.MODELS / name), load_external_data=False)
    assert [i.name for i in m.graph.input] == ["images", "min_head_score"]
    assert "min_head_score" not in {t.name for t in m.graph.initializer}


def test_bundled_fp32_matches_fresh_export(fresh, images):
    fp32, _ = fresh
    assert _contract(fp32).model["checkpoint_sha256"] == _contract(bundle.MODELS / bundle.FP32_NAME).model["checkpoint_sha256"]
    _compare(ort_run(str(bundle.MODELS / bundle.FP32_NAME), images), ort_run(str(fp32), images), box_atol=1e-3, prob_atol=1e-4)


def test_bundled_int8_matches_fresh_export(fresh, images):
    _, int8 = fresh
    _compare(ort_run(str(bundle.MODELS / bundle.INT8_NAME), images), ort_run(str(int8), images), box_atol=1e-2, prob_atol=1e-3)


@pytest.mark.parametrize("name", [bundle.FP32_NAME, bundle.INT8_NAME])
def test_bundled_gate_keeps_the_rows_above_it(name, images):
    """With min_head_score fed, the rows at or above it have the same head outputs as with the
    default (every row), and the rows beyond the gated count are zeros."""
    path = str(bundle.MODELS / name)
    full = ort_run(path, images)
    gated = ort_run(path, images, min_head_score=0.3)
    for k in ("num_dets", "boxes", "scores", "labels"):
        np.testing.assert_array_equal(gated[k], full[k])
    keep = full["scores"] >= np.float32(0.3)
    k_rows = int(max(keep.sum(1).max(), 1))
    assert k_rows < full["scores"].shape[1], "the test images should leave some rows below the gate"
    for k in ("masks", "landmark_heatmaps", "embeddings"):
        np.testing.assert_allclose(gated[k][keep], full[k][keep], atol=1e-5, err_msg=k)
        assert not np.any(gated[k][:, k_rows:]), f"{k}: rows beyond the gate must be zeros"
        assert np.any(full[k][:, k_rows:]), f"{k}: without the gate those rows are computed"
