"""The TensorRT backend's GPU pre/postprocessing through the Predictor, run on the CPU.

The real TensorRTBackend and Predictor run with: the recording fake `tensorrt` (tests/fake_gpu.py) whose engine
copies fixed outputs into the addresses TensorRT was given, cuda-python's runtime with host memory standing in
for device memory (fake_gpu.HostMemoryCudart), and the CUDA kernels compiled for the CPU (ShimDriver). So the
whole path frames -> GPU letterbox into the engine input -> engine outputs -> GPU mask pasting / landmark
decoding -> Detections runs here, and must equal the CPU path's Detections on the same engine outputs: masks
bit for bit, landmarks within the kernels' stated tolerances (docs/cuda_kernels.md). Nothing here touches a GPU.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed (make setup installs it)")
shim = pytest.importorskip("df2infer.ops.cuda.shim")

from df2infer.api import Predictor  # noqa: E402
from df2infer.backends import tensorrt_backend as tb  # noqa: E402
from df2infer.backends.base import DevicePipelineBackend  # noqa: E402
from df2infer.contract import INPUT_NAME, OUTPUT_NAMES, Contract  # noqa: E402
from df2infer.data import spec  # noqa: E402
from df2infer.gpu.cuda_check import CudaError  # noqa: E402
from df2infer.ops.cuda import selfcheck  # noqa: E402
from df2infer.ops.letterbox import to_input_batch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_gpu import HostMemoryCudart, fake_tensorrt, names, write_fake_engine  # noqa: E402

CONTRACT = Contract(input_height=96, input_width=128, max_detections=6, heatmap_size=16, embedding_dim=8, max_batch=4)
H, W, N = CONTRACT.input_height, CONTRACT.input_width, CONTRACT.max_detections
FRAME_SHAPES = [(120, 200), (300, 150), (77, 91), (5, 300)]
NUM_DETS = [N, 0, 4, N]  # the second image has no detections


def engine_outputs(seed: int = 3) -> dict[str, np.ndarray]:
    """Engine-like padded outputs for len(FRAME_SHAPES) images: boxes in the input canvas (crossing and touching
    its borders, sub-pixel, degenerate), scores on both sides of conf=0.3, smooth mask probabilities, heatmaps."""
    rng = np.random.default_rng(seed)
    B = len(FRAME_SHAPES)
    assert CONTRACT.max_landmarks == spec.MAX_CATEGORY_LANDMARKS
    masks, heat, _ = selfcheck.realistic_batch(
        rng, [(H, W)] * B, detections=N, per_image=1, mask_size=CONTRACT.mask_size, heatmap_size=CONTRACT.heatmap_size
    )
    return {
        "num_dets": np.array(NUM_DETS, np.int32),
        "boxes": np.stack([selfcheck.random_boxes(rng, N, (H, W), edge_cases=True) for _ in range(B)]).astype(np.float32),
        "scores": -np.sort(-rng.uniform(0.1, 1.0, (B, N)), axis=1).astype(np.float32),
        "labels": rng.integers(1, spec.NUM_CATEGORIES + 1, (B, N)).astype(np.int32),
        "masks": masks,
        "landmark_heatmaps": heat,
        "embeddings": rng.normal(size=(B, N, CONTRACT.embedding_dim)).astype(np.float32),
    }


def frames(seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in FRAME_SHAPES]


def write_engine(tmp_path: Path) -> Path:
    return write_fake_engine(tmp_path, CONTRACT)


class HostBackend:
    """The CPU path's backend: run() returns the same engine outputs for the batch it is given."""

    name, device = "host", "cpu"

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.contract, self.max_batch, self.outputs = CONTRACT, CONTRACT.max_batch, outputs

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        return {k: v[: len(batch)].copy() for k, v in self.outputs.items()}

    def close(self) -> None:
        pass


class MappedShimDriver(shim.ShimDriver):
    """The shim as an integrated GPU (Jetson): host staging buffers are "mapped", the kernels read them in place."""

    integrated = True

    def host_buffer(self, nbytes: int) -> np.ndarray:
        buf = np.zeros(max(int(nbytes), 1), np.uint8)
        self._buffers[buf.ctypes.data] = buf
        return buf

    def mapped_pointer(self, host: np.ndarray) -> int | None:
        return int(host.ctypes.data)


@pytest.fixture(scope="module")
def shim_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shim")
    try:
        shim.build(directory)
    except shim.ShimBuildError as e:
        pytest.skip(f"the CUDA kernel shim cannot be built here: {e}")
    return directory


@pytest.fixture
def gpu(monkeypatch, tmp_path, shim_dir):
    """Fake TensorRT + host-memory cudart + the kernels on the shim. Returns a namespace of what was recorded."""
    outputs = engine_outputs()
    log: list = []
    cudart = HostMemoryCudart(log)
    seen_inputs: list[np.ndarray] = []

    def execute(addresses: dict[str, int], batch: int) -> None:
        x = np.empty((batch, 3, H, W), np.float32)
        ctypes.memmove(x.ctypes.data, addresses[INPUT_NAME], x.nbytes)
        seen_inputs.append(x)
        for name in OUTPUT_NAMES:
            src = np.ascontiguousarray(outputs[name][:batch])
            ctypes.memmove(addresses[name], src.ctypes.data, src.nbytes)

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(log, contract=CONTRACT, max_batch=CONTRACT.max_batch, execute=execute))
    monkeypatch.setattr(tb, "import_cudart", lambda: cudart)
    monkeypatch.setattr(tb, "_environment", lambda index: ("10.3.0.30", "Orin", "8.7"))
    state = {"driver_cls": shim.ShimDriver, "drivers": [], "streams": []}

    def kernel_driver(index: int, stream: int):
        drv = state["driver_cls"](shim_dir)
        close = drv.close

        def logged_close() -> None:
            log.append(("kernels.close",))
            close()

        drv.close = logged_close
        state["drivers"].append(drv)
        state["streams"].append(stream)
        return drv

    monkeypatch.setattr(tb, "kernel_driver", kernel_driver)
    state.update(log=log, cudart=cudart, outputs=outputs, seen=seen_inputs, engine=write_engine(tmp_path))
    return state


def assert_same_detections(got, ref, method: str) -> int:
    """The GPU path's Detections against the CPU path's; returns how many detections were compared.
    Landmarks: subpixel exact; torchvision as docs/cuda_kernels.md states it: scores within 1e-4 and >= 99% of
    the points at identical xy over the batch (the others: argmax ties, one pixel apart at the same score)."""
    total, same_xy, points = 0, 0, 0
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.image_size == r.image_size and g.path == r.path
        for field in ("boxes", "scores", "labels", "embeddings", "mask_boxes"):
            assert np.array_equal(getattr(g, field), getattr(r, field)), field
        assert len(g.masks) == len(r.masks) == len(g.landmarks) == len(r.landmarks) == len(r.boxes)
        for a, b in zip(g.masks, r.masks):
            assert a.dtype == b.dtype == bool and np.array_equal(a, b)  # bit for bit
        for a, b in zip(g.landmarks, r.landmarks):
            assert a.shape == b.shape
            if method == "subpixel":
                assert np.array_equal(a, b)
            else:
                assert np.abs(a[:, 2] - b[:, 2]).max(initial=0.0) <= 1e-4
                assert np.abs(a[:, :2] - b[:, :2]).max(initial=0.0) <= 1.0
                same_xy += int((a[:, :2] == b[:, :2]).all(axis=1).sum())
                points += len(a)
        total += len(r.boxes)
    if method == "torchvision":
        assert points and same_xy / points >= 0.99, f"{same_xy} of {points} landmarks at identical xy"
    return total


@pytest.mark.parametrize("method", ["subpixel", "torchvision"])
def test_predictor_on_the_gpu_path_equals_the_cpu_path(gpu, method):
    imgs = frames()
    ref = Predictor(HostBackend(gpu["outputs"])).predict_batch(imgs, conf=0.3, landmark_method=method)
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        assert isinstance(backend, DevicePipelineBackend) and backend.frames_on_device and backend.device_postprocessing
        got = Predictor(backend).predict_batch(imgs, conf=0.3, landmark_method=method)
    n = assert_same_detections(got, ref, method)
    assert n >= 8 and len(ref[1].boxes) == 0  # detections were compared; an image without any
    assert sum(len(m) for d in ref for m in d.masks) and any(len(d.boxes) < NUM_DETS[i] for i, d in enumerate(ref))
    # What the engine read is the GPU letterbox: the CPU letterbox within the kernels' tolerance (1 grey level).
    (seen,) = gpu["seen"]
    expect, _ = to_input_batch(imgs, CONTRACT)
    diff = np.abs(seen - expect)
    assert diff.max() <= 1.0 and (diff > 0).mean() < 0.005


def test_frames_go_up_once_and_only_compact_results_come_back(gpu):
    log, cudart = gpu["log"], gpu["cudart"]
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        stream = int(backend._stream)
        buffers = {name: backend._buffers[name].device_ptr for name in OUTPUT_NAMES}
        log.clear()
        cudart.copies.clear()
        Predictor(backend).predict_batch(frames(), conf=0.3)
        (drv,) = gpu["drivers"]
        assert gpu["streams"] == [stream]  # the kernels run on the backend's stream
    # cuda runtime: no host->device copy (the kernels' driver uploads the frames); device->host only the compact outputs
    assert [k for k, _ in cudart.copies if k != "cudaMemcpyDeviceToHost"] == []
    sources = {e[2] for e in log if e[0] == "cuda.cudaMemcpyAsync"}
    assert sources == {buffers[n] for n in tb.COMPACT_OUTPUTS}
    assert all(e[-1] == stream for e in log if e[0] == "trt.execute_async_v3")
    ops = [c for c in drv.calls if c[0] in ("launch", "upload", "download")]
    assert ops == [
        ("upload", ops[0][1]),
        ("launch", "letterbox_kernel"),  # frames + tables: one upload, one launch
        ("upload", ops[2][1]),
        ("launch", "paste_masks_weights"),
        ("launch", "paste_masks_compact"),
        ("launch", "landmarks_subpixel"),
        ("download", ops[6][1]),
    ]  # one table upload, one download
    frame_bytes = sum(h * w * 3 for h, w in FRAME_SHAPES)
    assert ops[0][1] >= frame_bytes


def test_integrated_gpu_reads_the_frames_in_place(gpu):
    gpu["driver_cls"] = MappedShimDriver
    imgs = frames()
    ref = Predictor(HostBackend(gpu["outputs"])).predict_batch(imgs, conf=0.3)
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        got = Predictor(backend).predict_batch(imgs, conf=0.3)
        (drv,) = gpu["drivers"]
    assert_same_detections(got, ref, "subpixel")
    uploads = [c for c in drv.calls if c[0] == "upload"]
    assert len(uploads) == 1  # only the postprocessing tables; the frames were read from mapped memory


def test_close_releases_the_kernels_before_the_stream(gpu):
    log = gpu["log"]
    backend = tb.TensorRTBackend(gpu["engine"])
    backend.close()
    calls = names(log)
    assert calls.index("kernels.close") < calls.index("cuda.cudaStreamDestroy")
    assert backend.gpu_pre is None and backend.gpu_post is None and not backend.frames_on_device
    backend.close()  # idempotent
    assert names(log).count("kernels.close") == 1


def test_without_the_kernels_the_predictor_preprocesses_on_the_cpu(gpu, monkeypatch, caplog):
    def no_driver(index: int, stream: int):
        raise CudaError("cuInit failed: CUDA_ERROR_NO_DEVICE")

    monkeypatch.setattr(tb, "kernel_driver", no_driver)
    imgs = frames()
    ref = Predictor(HostBackend(gpu["outputs"])).predict_batch(imgs, conf=0.3)
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        assert not backend.frames_on_device
        with pytest.raises(RuntimeError, match="GPU preprocessing is not available"):
            backend.run_frames(imgs)
        got = Predictor(backend).predict_batch(imgs, conf=0.3)
    assert "CUDA_ERROR_NO_DEVICE" in caplog.text
    assert_same_detections(got, ref, "subpixel")
    assert ("cudaMemcpyHostToDevice", len(imgs) * 3 * H * W * 4) in gpu["cudart"].copies  # the CPU-letterboxed batch


def test_without_masks_and_landmarks_nothing_runs_after_the_engine(gpu):
    imgs = frames()
    ref = Predictor(HostBackend(gpu["outputs"])).predict_batch(imgs, conf=0.3, masks=False, landmarks=False)
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        got = Predictor(backend).predict_batch(imgs, conf=0.3, masks=False, landmarks=False)
        (drv,) = gpu["drivers"]
    assert [c[1] for c in drv.calls if c[0] == "launch"] == ["letterbox_kernel"]
    for g, r in zip(got, ref):
        assert g.masks is None and g.landmarks is None
        assert np.array_equal(g.boxes, r.boxes) and np.array_equal(g.embeddings, r.embeddings)


def test_postprocess_device_needs_the_outputs_of_run_frames(gpu):
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        backend.run(np.zeros((1, 3, H, W), np.float32))
        with pytest.raises(RuntimeError, match="needs the outputs of run_frames"):
            backend.postprocess_device([])


def test_kernel_driver_is_a_cuda_driver_on_the_given_stream(monkeypatch):
    from df2infer.ops.cuda import launch

    made = []
    monkeypatch.setattr(launch, "CudaDriver", lambda index, stream=None: made.append((index, stream)) or "driver")
    assert tb.kernel_driver(1, 0x1234) == "driver" and made == [(1, 0x1234)]


def test_a_kernel_compile_failure_at_load_falls_back_and_releases_the_driver(gpu, monkeypatch, caplog):
    from df2infer.ops.cuda.compiler import KernelCompileError

    class NoNvrtc(shim.ShimDriver):
        closed = False

        def load_kernels(self) -> None:
            raise KernelCompileError("NVRTC cannot be loaded (libnvrtc.so.13: not found)")

        def close(self) -> None:
            NoNvrtc.closed = True
            super().close()

    gpu["driver_cls"] = NoNvrtc
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        assert not backend.frames_on_device and backend._kdrv is None
    assert NoNvrtc.closed and "KernelCompileError" in caplog.text and "libnvrtc" in caplog.text
