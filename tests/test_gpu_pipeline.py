"""The TensorRT backend's GPU pre/postprocessing through the Predictor, on the strict CUDA/TensorRT stand-ins.

The real TensorRTBackend, CudaDriver and Predictor run on one simulated GPU (tests/strict_gpu.py): cuda-python's
driver and runtime with per-thread contexts, device memory in its own address space, copies and launches queued
per stream (run at synchronization or at seeded random points), and a TensorRT engine that copies fixed outputs
into the addresses it was given; the CUDA kernels run through their CPU shim. So the whole path frames -> GPU
letterbox into the engine input -> engine outputs -> GPU mask pasting / landmark decoding -> Detections runs
here, and must equal the CPU path's Detections on the same engine outputs: masks bit for bit, landmarks within
the kernels' stated tolerances (docs/cuda_kernels.md). Nothing here touches a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed (make setup installs it)")

from fake_gpu import names, write_fake_engine  # noqa: E402
from strict_gpu import Device, engine_blob  # noqa: E402

from df2infer.api import Predictor  # noqa: E402
from df2infer.backends import tensorrt_backend as tb  # noqa: E402
from df2infer.backends.base import DevicePipelineBackend  # noqa: E402
from df2infer.contract import INPUT_NAME, OUTPUT_NAMES, Contract  # noqa: E402
from df2infer.data import spec  # noqa: E402
from df2infer.ops.cuda import selfcheck  # noqa: E402
from df2infer.ops.cuda.cuda_check import CudaError  # noqa: E402
from df2infer.ops.cuda.engine_pipeline import COMPACT_OUTPUTS  # noqa: E402
from df2infer.ops.letterbox import to_input_batch  # noqa: E402

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


class HostBackend:
    """The CPU path's backend: run() returns the same engine outputs for the batch it is given."""

    name, device = "host", "cpu"

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.contract, self.max_batch, self.outputs = CONTRACT, CONTRACT.max_batch, outputs

    def run(self, batch: np.ndarray, min_head_score: float | None = None) -> dict[str, np.ndarray]:
        return {k: v[: len(batch)].copy() for k, v in self.outputs.items()}

    def close(self) -> None:
        pass


@pytest.fixture
def gpu(strict_gpu, tmp_path):
    """One simulated GPU (an Orin-like discrete device; pass devices= to make_gpu for others) whose engine
    returns engine_outputs(); returns a dict with the SimGpu, the outputs, and the engine file."""
    outputs = engine_outputs()
    state: dict = {"outputs": outputs}

    def make_gpu(**kw):
        sim = strict_gpu(devices=kw.pop("devices", [Device(0, name="Orin")]), **kw)
        sim.engine_fn = lambda inputs: {k: v[: len(inputs[INPUT_NAME])] for k, v in outputs.items()}
        state["sim"] = sim
        return sim

    make_gpu()
    state["make"] = make_gpu
    state["engine"] = write_fake_engine(tmp_path, CONTRACT, payload=engine_blob(CONTRACT))
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
    # What the engine read is the GPU letterbox: the CPU letterbox, bit for bit.
    (seen,) = [x[INPUT_NAME] for x in gpu["sim"].engine_inputs]
    expect, _ = to_input_batch(imgs, CONTRACT)
    np.testing.assert_array_equal(seen, expect)


def test_frames_go_up_once_and_only_compact_results_come_back(gpu):
    sim = gpu["sim"]
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        stream = int(backend._stream)
        buffers = {name: backend._buffers[name].device_ptr for name in OUTPUT_NAMES}
        sim.log.clear()
        Predictor(backend).predict_batch(frames(), conf=0.3)
    log = sim.log
    # cuda runtime: no host->device copy (the kernels' driver uploads the frames); device->host only the compact outputs
    runtime_copies = [e for e in log if e[0] == "cuda.cudaMemcpyAsync"]
    assert {int(e[4]) for e in runtime_copies} == {2}  # cudaMemcpyDeviceToHost
    assert {e[2] for e in runtime_copies} == {buffers[n] for n in COMPACT_OUTPUTS}
    # every enqueue is on the backend's stream: the driver's copies and launches, and the engine
    assert {int(e[-1]) for e in log if e[0] == "trt.execute_async_v3"} == {stream}
    driver = [e for e in log if e[0] in ("cuda.cuMemcpyHtoDAsync", "cuda.cuLaunchKernel", "cuda.cuMemcpyDtoHAsync")]
    assert {int(e[9] if e[0] == "cuda.cuLaunchKernel" else e[4]) for e in driver} == {stream}
    ops = [e[0].removeprefix("cuda.") for e in driver]
    assert ops == ["cuMemcpyHtoDAsync", "cuLaunchKernel", "cuMemcpyHtoDAsync", *["cuLaunchKernel"] * 3, "cuMemcpyDtoHAsync"]
    assert sim.launches == ["letterbox_kernel", "paste_masks_weights", "paste_masks_compact", "landmarks_subpixel"]
    frame_bytes = sum(h * w * 3 for h, w in FRAME_SHAPES)
    assert driver[0][3] >= frame_bytes  # frames and tables in one upload


def test_integrated_gpu_reads_the_frames_in_place(gpu):
    sim = gpu["make"](devices=[Device(0, name="Orin", integrated=True)], driver_version=12060, runtime_version=12060)
    imgs = frames()
    ref = Predictor(HostBackend(gpu["outputs"])).predict_batch(imgs, conf=0.3)
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        got = Predictor(backend).predict_batch(imgs, conf=0.3)
    assert_same_detections(got, ref, "subpixel")
    uploads = names(sim.log, "cuda.cuMemcpyHtoDAsync")
    assert len(uploads) == 1  # only the postprocessing tables; the frames were read from mapped memory


def test_close_releases_the_kernels_before_the_stream(gpu):
    log = gpu["sim"].log
    backend = tb.TensorRTBackend(gpu["engine"])
    backend.close()
    calls = names(log)
    assert calls.index("cuda.cuModuleUnload") < calls.index("cuda.cudaStreamDestroy")
    assert backend.gpu_pre is None and backend.gpu_post is None and not backend.frames_on_device
    backend.close()  # idempotent
    assert names(log).count("cuda.cudaStreamDestroy") == 1


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
    assert ("HtoD", len(imgs) * 3 * H * W * 4) in gpu["sim"].copies  # the CPU-letterboxed batch


def test_without_masks_and_landmarks_nothing_runs_after_the_engine(gpu):
    imgs = frames()
    ref = Predictor(HostBackend(gpu["outputs"])).predict_batch(imgs, conf=0.3, masks=False, landmarks=False)
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        got = Predictor(backend).predict_batch(imgs, conf=0.3, masks=False, landmarks=False)
    assert gpu["sim"].launches == ["letterbox_kernel"]
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
    from df2infer.ops.cuda import compiler

    def no_nvrtc(source_name, arch, **kw):
        raise compiler.KernelCompileError("NVRTC cannot be loaded (libnvrtc.so.13: not found)")

    monkeypatch.setattr(compiler, "compiled_kernel", no_nvrtc)
    with tb.TensorRTBackend(gpu["engine"]) as backend:
        assert not backend.frames_on_device and backend._kdrv is None
    assert "KernelCompileError" in caplog.text and "libnvrtc" in caplog.text
    # the driver it had made is released at once (the stand-in's leak check covers its stream and retain)
    assert gpu["sim"].contexts[0].driver_retains == 0


# ------------------------------------------------------------------ the GPU pipeline wraps any runner with device outputs
class ShimRunner:
    """A DeviceRunner that is not TensorRT: its 'device' memory is the shim driver's, its 'engine' copies fixed
    outputs into its device output buffers and keeps the input it was given."""

    path = "shim-runner"
    input_dtype = np.dtype(np.float32)

    def __init__(self, driver, outputs: dict[str, np.ndarray]) -> None:
        self.contract, self.driver, self.outputs = CONTRACT, driver, outputs
        self.input_device_ptr = driver.alloc(CONTRACT.max_batch * 3 * H * W * 4)
        self.device = {k: driver.alloc(v.nbytes) for k, v in outputs.items()}
        self.seen: np.ndarray | None = None

    def output_dtype(self, name: str) -> np.dtype:
        return self.outputs[name].dtype

    def check_batch(self, batch: int) -> None:
        assert 1 <= batch <= CONTRACT.max_batch

    def run_device_outputs(self, inputs, batch=None):
        assert inputs == self.input_device_ptr
        self.seen = np.empty((batch, 3, H, W), np.float32)
        self.driver.download(self.seen, inputs)
        for k, v in self.outputs.items():
            self.driver.upload(self.device[k], np.ascontiguousarray(v))
        return dict(self.device)

    def copy_outputs_and_sync(self, batch, names):
        return {n: self.outputs[n][:batch].copy() for n in names}

    def close(self) -> None:
        for ptr in (self.input_device_ptr, *self.device.values()):
            self.driver.free(ptr)


def test_gpu_pipeline_wraps_a_runner_that_is_not_tensorrt(shim_dir):
    """GpuPipeline on a non-TensorRT runner: the runner reads the CPU letterbox's batch bit for bit, and the masks of
    the kept detections equal the CPU decode's."""
    from df2infer.ops.cuda import shim
    from df2infer.ops.cuda.engine_pipeline import GpuPipeline
    from df2infer.ops.decode import decode_detections, keep_detections
    from df2infer.ops.options import DecodeOptions

    driver = shim.ShimDriver(shim_dir)
    outputs = engine_outputs()
    runner = ShimRunner(driver, outputs)
    pipe = GpuPipeline(runner, driver)
    try:
        imgs = frames()
        host, infos = pipe.run_frames(imgs)
        ref_batch, ref_infos = to_input_batch(imgs, CONTRACT)
        assert runner.seen is not None and np.array_equal(runner.seen, ref_batch)
        assert infos == ref_infos
        assert set(host) == set(COMPACT_OUTPUTS)  # masks and heatmaps stayed on the "device"
        opts = DecodeOptions(conf=0.3, landmarks=False)
        kept = [keep_detections(host, b, infos[b], conf=0.3) for b in range(len(imgs))]
        got = pipe.postprocess_device(kept, opts)
        n = 0
        for b, res in enumerate(got):
            ref = decode_detections(outputs, b, ref_infos[b], opts)
            assert np.array_equal(res.mask_boxes, ref.mask_boxes)
            assert len(res.masks) == len(ref.masks)
            for a, r in zip(res.masks, ref.masks):
                assert np.array_equal(a, r)
            n += len(ref.masks)
        assert n > 0
    finally:
        runner.close()
        pipe.close()  # closes the driver last
