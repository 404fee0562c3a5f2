"""The lent machine's case, a GPU without TensorRT or onnxruntime-gpu: the bundled model on the CPU backend
(ONNX Runtime), with the GPU kernels (df2infer/ops/cuda) doing the letterbox, the mask pasting and the landmark
decoding through the real CUDA driver, compared with the CPU path on the same frames and the same model outputs.

`gpu`-marked and run by benchmarks/gpu_check.py on a GPU machine (`pytest -m gpu tests/test_gpu_smoke.py`);
skipped where no CUDA device answers. The same comparison runs through the CPU shim of the kernels on every
machine (the `shim` case), so the test's own logic is checked where there is no GPU."""

from __future__ import annotations

import numpy as np
import pytest
from known_scene import dressed_people

import df2infer
from df2infer.ops.cuda import selfcheck
from df2infer.ops.cuda.pipeline import PostItem
from df2infer.ops.decode import keep_detections
from df2infer.ops.letterbox import to_input_batch

# non-square frames: the letterbox pads x on the portrait ones and y on the landscape ones
FRAME_SHAPES = [(360, 640), (480, 200), (333, 517)]


def _driver(kind: str, tmp_path):
    if kind == "shim":
        from df2infer.ops.cuda import shim

        try:
            return shim.ShimDriver(tmp_path)
        except shim.ShimBuildError as e:
            from system_deps import require

            require(False, "a C++ compiler for the CUDA kernel shim", f"apt-get install g++ ({e})")
    from df2infer.ops.cuda.launch import CudaDriver

    try:
        return CudaDriver(0)
    except Exception as e:  # no driver library, no device, cuda-python missing: not a GPU machine
        pytest.skip(f"no CUDA device: {type(e).__name__}: {e}")


@pytest.mark.parametrize("kind", ["shim", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_cpu_backend_with_the_gpu_kernels_equals_the_cpu_path(kind, tmp_path):
    drv = _driver(kind, tmp_path)
    pred = df2infer.load(device="cpu")
    c = pred.contract
    frames = [dressed_people(w, h, i)[0] for i, (h, w) in enumerate(FRAME_SHAPES)]
    try:
        # letterbox on the GPU == the CPU's (OpenCV's INTER_LINEAR_EXACT) bit for bit, same geometry
        lb = selfcheck.check_letterbox(drv, frames, (c.input_height, c.input_width), pad_value=c.pad_value)
        assert lb["max_abs_diff"] == 0.0, lb
        # the CPU backend's outputs, then masks and landmarks on the GPU == the CPU path's
        batch, infos = to_input_batch(frames, c)
        outputs = pred.backend.run(batch)
        items = []
        for b, info in enumerate(infos):
            k = keep_detections(outputs, b, info, conf=0.3)
            items.append(PostItem(b, k.idx, k.boxes, k.labels, k.image_size))
        assert all(len(it.idx) for it in items), "the bundled model finds garments in every scene"
        st = selfcheck.check_postprocess(
            drv, np.ascontiguousarray(outputs["masks"]), np.ascontiguousarray(outputs["landmark_heatmaps"]), items
        )
    finally:
        drv.close()
    assert st["detections"] == sum(len(it.idx) for it in items)
    assert st["mask_mismatches_unexplained"] == 0 and st["mask_mismatches"] <= 2, st
    assert st["landmarks_subpixel_xy_max_diff"] <= 1e-4, st
    assert st["landmarks_torchvision_score_max_diff"] <= 1e-4 and st["landmarks_torchvision_exact_fraction"] >= 0.99, st
    # and the CPU path itself (Predictor.predict) decodes the same detections from these frames
    res = pred.predict(frames, conf=0.3)
    assert [len(r) for r in res] == [len(it.idx) for it in items]
