"""The CUDA kernels (df2infer/ops/cuda), checked without a GPU on every CI run:

- NVRTC compiles every kernel for sm_75 / sm_87 / sm_90 (CUDA 13's NVRTC) and sm_72 (CUDA 12's NVRTC,
  since CUDA 13 dropped Volta / Jetson Xavier), without a single warning;
- nvcc compiles every kernel for sm_87 and sm_90 (and sm_72 when nvcc is CUDA 12) with warnings as errors;
- the same sources, compiled for the CPU through the host shim, match the numpy references on random
  and edge inputs (docs/cuda_kernels.md gives the tolerances).
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from system_deps import require, require_cxx

from df2infer.images import ImageError
from df2infer.ops.cuda import compiler, selfcheck
from df2infer.ops.cuda.launch import KERNEL_SIGNATURES, pack_params
from df2infer.ops.cuda.pipeline import GpuPostprocessor, GpuPreprocessor, PostItem
from df2infer.ops.landmarks import decode_landmarks
from df2infer.ops.letterbox import to_input_batch
from df2infer.ops.masks import paste_masks

shim = pytest.importorskip("df2infer.ops.cuda.shim")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    require_cxx()  # missing: skip, or fail under CI; a compiler that fails on our sources fails the tests
    return shim.ShimDriver(tmp_path_factory.mktemp("shim"))


# ---------------------------------------------------------------- compilation
@pytest.mark.parametrize("arch", [75, 87, 90])
@pytest.mark.parametrize("source", sorted(compiler.KERNELS))
def test_nvrtc_compiles_without_warnings(source, arch):
    k = compiler.compile_source(compiler.kernel_source(source), source, arch)
    assert k.kind == "cubin" and len(k.image) > 1000
    assert k.log == "", f"NVRTC warnings for {source} sm_{arch}:\n{k.log}"


def test_nvrtc_ptx_for_a_gpu_newer_than_nvrtc_and_clear_error_for_an_older_one():
    newest = max(compiler.supported_archs())
    k = compiler.compile_source(compiler.kernel_source("paste_masks.cu"), "paste_masks.cu", newest + 10)
    assert k.kind == "ptx" and b"paste_masks_compact" in k.image
    oldest = min(compiler.supported_archs())
    with pytest.raises(compiler.KernelCompileError, match=r"cannot compile for compute capability"):
        compiler.compile_source("", "x.cu", oldest - 10 if oldest >= 60 else 30)


def test_compiling_leaves_python_bytes_intact():
    """NVRTC writes its log and image into the buffers it is given; an empty log is one byte, and a one-byte
    `b" " * 1` is CPython's shared b" ": writing into it corrupted every b" " in the process (seen as torch.load
    failing later in the same process). The compiler must give NVRTC buffers of its own."""
    kernel = compiler.compile_source(compiler.kernel_source("letterbox.cu"), "letterbox.cu", max(compiler.supported_archs()))
    assert kernel.log == ""
    assert b" " == bytes([32]) and b"a b".split(b" ") == [b"a", b"b"]


def test_nvrtc_error_carries_the_log():
    with pytest.raises(compiler.KernelCompileError, match=r"(?s)broken\.cu.*undefined"):
        compiler.compile_source('extern "C" __global__ void k(float* a) { a[0] = nope; }', "broken.cu", 87)


def test_compiled_kernel_is_cached_per_arch_and_source(tmp_path):
    a = compiler.compiled_kernel("landmarks.cu", 87, directory=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("landmarks-sm87-") and files[0].endswith(".cubin")
    b = compiler.compiled_kernel("landmarks.cu", 87, directory=tmp_path)
    assert a.image == b.image
    compiler.compiled_kernel("landmarks.cu", 90, directory=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2


def _nvrtc12() -> ctypes.CDLL | None:
    try:
        import nvidia.cuda_nvrtc as pkg  # nvidia-cuda-nvrtc-cu12
    except ImportError:
        return None
    for d in pkg.__path__:
        lib = Path(d) / "lib" / "libnvrtc.so.12"
        if lib.is_file():
            return ctypes.CDLL(str(lib))
    return None


@pytest.mark.parametrize("source", sorted(compiler.KERNELS))
def test_nvrtc12_compiles_for_sm72_xavier(source):
    """CUDA 13 cannot target sm_72 (Jetson Xavier, JetPack 5 = CUDA 11.4/12): CUDA 12's NVRTC (pip
    nvidia-cuda-nvrtc-cu12, a dev dependency) compiles the same source, with the same options, warning-free."""
    lib = _nvrtc12()
    require(
        lib is not None,
        "CUDA 12's NVRTC (nvidia-cuda-nvrtc-cu12, a dev dependency)",
        "pip install nvidia-cuda-nvrtc-cu12 (make setup does)",
    )
    prog = ctypes.c_void_p()
    src = compiler.kernel_source(source).encode()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, source.encode(), 0, None, None) == 0
    opts = [b"--gpu-architecture=sm_72", *[o.encode() for o in compiler.NVRTC_OPTIONS]]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    cubin = ctypes.c_size_t()
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(cubin))
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    text = log.value.decode(errors="replace").strip()
    # sm_72 is deprecated in CUDA 12 and NVRTC 12 says so on every compile (it has no option to silence
    # it); that one notice is dropped, any other line is a warning about our code.
    text = "\n".join(line for line in text.splitlines() if "Architectures prior to '<compute/sm>_75' are deprecated" not in line).strip()
    assert rc == 0, f"NVRTC 12 failed on {source} for sm_72:\n{text}"
    assert text == "", f"NVRTC 12 warnings for {source} sm_72:\n{text}"
    assert cubin.value > 1000


def _nvcc_major(nvcc: str) -> int:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.", out)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("source", sorted(compiler.KERNELS))
def test_nvcc_compiles_with_warnings_as_errors(source, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:  # comes with a machine's CUDA toolkit, not from `make setup`: a skip in CI too (docs/testing.md)
        pytest.skip("nvcc not found on PATH (install the CUDA toolkit's nvcc to run this check)")
    archs = [87, 90] + ([72] if _nvcc_major(nvcc) < 13 else [])  # CUDA 13 dropped sm_72 (see the NVRTC 12 test)
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    cmd = [
        nvcc,
        "-cubin" if len(archs) == 1 else "-fatbin",
        *gencode,
        *compiler.NVRTC_OPTIONS,
        "-Werror",
        "all-warnings",
        "-Xptxas",
        "-warn-spills",
        "-o",
        str(tmp_path / "k.bin"),
        str(compiler.KERNEL_DIR / source),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}"
    assert (tmp_path / "k.bin").stat().st_size > 1000


# ---------------------------------------------------------------- signatures and the shim itself
_KINDS = {
    "const unsigned char*": "ptr",
    "const long long*": "ptr",
    "const int*": "ptr",
    "const double*": "ptr",
    "void*": "ptr",
    "const float*": "ptr",
    "float*": "ptr",
    "int*": "ptr",
    "unsigned char*": "ptr",
    "short*": "ptr",
    "int": "i32",
    "long long": "i64",
    "float": "f32",
}


def test_python_signatures_match_the_cu_sources(driver):
    found = {}
    for source in compiler.KERNELS:
        text = compiler.kernel_source(source)
        for name, params in re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', text):
            kinds = []
            for p in params.split(","):
                p = re.sub(r"\s+", " ", p.replace("__restrict__", "")).strip()
                ctype = p.rsplit(" ", 1)[0].replace(" *", "*").strip()
                assert ctype in _KINDS, f"{source}:{name}: parameter type {ctype!r} has no launch kind"
                kinds.append(_KINDS[ctype])
            found[name] = tuple(kinds)
    assert found == KERNEL_SIGNATURES
    assert sorted(shim.kernel_names(driver.lib)) == sorted(found)
    assert {k for ks in compiler.KERNELS.values() for k in ks} == set(found)


def test_pack_params_checks_count_and_range():
    with pytest.raises(TypeError, match="3 arguments given"):
        pack_params("landmarks_cubic_tables", (1, 2, 3))
    with pytest.raises(OverflowError):
        pack_params("landmarks_cubic_tables", (0, 0, 2**31, 1, 1, 0))
    with pytest.raises(TypeError, match="__cuda_array_interface__"):
        pack_params("landmarks_cubic_tables", (np.zeros(3), 0, 1, 1, 1, 0))


def test_f16_conversion_matches_numpy(driver):
    rng = np.random.default_rng(0)
    bits = np.concatenate(
        [
            rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32),
            np.arange(0x33000000 - 64, 0x33000000 + 64, dtype=np.uint32),  # 2^-25 (ties)
            np.arange(0x38800000 - 4096, 0x38800000 + 4096, dtype=np.uint32),  # smallest normal
            np.arange(0x477FE000, 0x47800000 + 16, dtype=np.uint32),  # largest half, overflow
            np.array([0, 0x80000000, 0x7F800000, 0xFF800000], np.uint32),
        ]
    )
    f = bits.view(np.float32)
    finite = ~np.isnan(f)
    with np.errstate(over="ignore"):
        want = f[finite].astype(np.float16).view(np.uint16)
    conv = driver.lib.shim_f32_to_f16_bits
    got = np.array([conv(float(v)) for v in f[finite]], np.uint16)
    assert np.array_equal(got, want), f"{int((got != want).sum())} conversions differ"
    nan = conv(float("nan"))
    assert (nan & 0x7C00) == 0x7C00 and (nan & 0x3FF) != 0


# ---------------------------------------------------------------- the kernels against the references
LETTERBOX_SHAPES = [
    (1, 1),
    (1, 7),
    (9, 1),
    (2, 2),
    (480, 640),
    (720, 1280),
    (333, 517),
    (640, 640),
    (1280, 320),
    (5, 3000),
    (320, 320),
    (161, 97),
]


# (source h, w) -> (resized h, w): up- and downscales, odd sizes, 1-pixel sources and targets, one axis unchanged,
# exact 2x down on both axes (OpenCV's INTER_AREA path) and up, and 2 -> 512 / 3 -> 768 where every weight is a
# tie (fraction * 256 = k + 0.5: OpenCV rounds half to even).
RESIZE_PAIRS = [
    ((64, 96), (32, 48)),
    ((65, 97), (32, 48)),
    ((32, 48), (64, 96)),
    ((2, 3), (512, 768)),
    ((1, 1), (5, 7)),
    ((1, 9), (4, 3)),
    ((9, 1), (3, 5)),
    ((7, 5), (1, 1)),
    ((100, 37), (100, 80)),
    ((37, 100), (80, 100)),
    ((1000, 13), (7, 61)),
    ((3, 1000), (77, 9)),
    ((123, 77), (124, 76)),
]


def test_letterbox_kernel_resizes_as_opencv_linear_exact(driver):
    """letterbox_kernel with linear_taps == cv2.resize(INTER_LINEAR_EXACT) itself, bit for bit, on the pairs above
    and 40 random ones (1..240 pixels each way, independently per axis)."""
    rng = np.random.default_rng(25)
    pairs = RESIZE_PAIRS + [(tuple(rng.integers(1, 241, 2)), tuple(rng.integers(1, 241, 2))) for _ in range(40)]
    for (h, w), (nh, nw) in pairs:
        frame = rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)  # uniform noise: every rounding shows
        assert selfcheck.check_resize(driver, frame, int(nh), int(nw)) == 0, ((h, w), (nh, nw))


@pytest.mark.parametrize("size", [(640, 640), (320, 416), (1, 1)])
def test_letterbox_kernel_equals_the_cpu_letterbox(driver, size):
    """The whole GPU letterbox (geometry, padding, BGR -> RGB planes) == to_input_batch, bit for bit; (320, 416) takes
    640 x 640 and 1280 x 320 frames down exactly 2x on both axes."""
    rng = np.random.default_rng(sum(size))
    frames = selfcheck.random_frames(rng, LETTERBOX_SHAPES[:6] if size == (1, 1) else LETTERBOX_SHAPES)
    stats = selfcheck.check_letterbox(driver, frames, size)
    assert stats["max_abs_diff"] == 0.0, stats


def test_letterbox_fp16_and_normalization(driver):
    rng = np.random.default_rng(3)
    frames = selfcheck.random_frames(rng, [(100, 200), (50, 30), (1, 1)])
    stats = selfcheck.check_letterbox(driver, frames, (128, 128), out_dtype=np.float16, pad_value=0.0)
    assert stats["max_abs_diff"] == 0.0, stats
    # mean/std normalization: out = v * alpha + beta per RGB channel, pad included
    H, W = 64, 96
    alpha, beta = (1 / 58.4, 1 / 57.1, 1 / 57.4), (-123.7 / 58.4, -116.3 / 57.1, -103.5 / 57.4)
    gp = GpuPreprocessor(driver, (H, W), 114.7, alpha=alpha, beta=beta)  # 114.7 fills as uint8 114, as letterbox()
    out = driver.alloc(3 * 3 * H * W * 4)
    gp(frames, out)
    got = selfcheck.from_device(driver, out, (3, 3, H, W), np.float32)
    ref, _ = to_input_batch(frames, SimpleNamespace(input_height=H, input_width=W, pad_value=114.7))
    want = ref * np.array(alpha, np.float32)[:, None, None] + np.array(beta, np.float32)[:, None, None]
    assert np.abs(got - want).max() <= 1e-5  # the same grey levels; fmaf rounds once, numpy twice
    assert np.allclose(got[2, :, 0, 0], want[2, :, 0, 0], atol=1e-6)  # the 1x1 frame's pad corner


def test_letterbox_empty_batch_and_bad_input(driver):
    gp = GpuPreprocessor(driver, (32, 32))
    n_calls = len(driver.calls)
    assert gp([], 0) == []
    assert len(driver.calls) == n_calls  # nothing launched, nothing copied
    with pytest.raises(ImageError, match=r"images\[1\]"):
        gp([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)], 0)
    with pytest.raises(ValueError, match="float32 or float16"):
        GpuPreprocessor(driver, (32, 32), out_dtype=np.int8)


@pytest.mark.parametrize("seed", [0, 1])
def test_masks_and_landmarks_match_the_references(driver, seed):
    rng = np.random.default_rng(seed)
    sizes = [(120, 160), (1, 1), (97, 61), (2, 300)]
    masks, heat, items = selfcheck.realistic_batch(rng, sizes, detections=12, per_image=10, heatmap_size=24, edge_cases=True)
    stats = selfcheck.check_postprocess(driver, masks, heat, items)
    assert stats["mask_pixels"] > 50_000 and stats["landmarks"] > 500
    assert stats["mask_mismatches_unexplained"] == 0, stats
    assert stats["mask_mismatches"] <= 2, stats  # only pixels within 1e-6 of the threshold may flip
    assert stats["instance_map_mismatches"] <= stats["mask_mismatches"], stats  # same pixels, same arithmetic
    assert stats["landmarks_subpixel_xy_max_diff"] <= 1e-4 and stats["landmarks_subpixel_score_max_diff"] == 0.0, stats
    assert stats["landmarks_torchvision_score_max_diff"] <= 1e-4, stats
    assert stats["landmarks_torchvision_exact_fraction"] >= 0.99, stats


def test_masks_random_uniform_probabilities_and_thresholds(driver):
    """Uniform random maps (every pixel near some threshold somewhere) and thresholds other than 0.5."""
    rng = np.random.default_rng(7)
    masks = rng.random((2, 6, 14, 14), dtype=np.float32)
    heat = rng.normal(size=(2, 6, 39, 8, 8)).astype(np.float32)
    items = [
        PostItem(0, np.arange(6), selfcheck.random_boxes(rng, 6, (50, 70), True), np.arange(1, 7), (50, 70)),
        PostItem(1, np.array([5, 0]), selfcheck.random_boxes(rng, 2, (33, 9)), np.array([13, 4]), (33, 9)),
    ]
    for thr in (0.5, 0.25, 0.9):
        stats = selfcheck.check_postprocess(driver, masks, heat, items, threshold=thr)
        assert stats["mask_mismatches_unexplained"] == 0 and stats["mask_mismatches"] <= 2, (thr, stats)


def test_postprocess_empty_batch_and_images_without_detections(driver):
    gp = GpuPostprocessor(driver, detections=4, mask_size=8, heatmap_size=8)
    assert gp([], 0, 0) == []
    empty = PostItem(0, np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.int32), (5, 6))
    res = gp([empty, empty], 0, 0, instance_maps=True)
    assert [len(r.masks) for r in res] == [0, 0] and [len(r.landmarks) for r in res] == [0, 0]
    assert res[0].mask_boxes.shape == (0, 4) and res[1].instance_map.shape == (5, 6) and not res[1].instance_map.any()
    with pytest.raises(ValueError, match="labels must be"):
        gp([PostItem(0, np.array([0]), np.zeros((1, 4), np.float32), np.array([0]), (5, 6))], 0, 0)


def test_one_launch_per_kernel_one_copy_each_way(driver):
    """The whole batch: one upload of the tables, one launch per kernel, one download, one sync."""
    rng = np.random.default_rng(5)
    masks, heat, items = selfcheck.realistic_batch(rng, [(40, 50), (30, 20), (64, 64)], detections=6, per_image=5, heatmap_size=16)
    mp, hp = selfcheck.to_device(driver, masks), selfcheck.to_device(driver, heat)
    gp = GpuPostprocessor(driver, detections=6, mask_size=28, heatmap_size=16)
    gp(items, mp, hp, landmark_method="torchvision")  # warm: buffers are allocated (and grown) here
    driver.calls.clear()
    gp(items, mp, hp, landmark_method="torchvision")
    ops = [c[0] for c in driver.calls]
    assert ops == ["upload"] + ["launch"] * 5 + ["download", "synchronize"], driver.calls
    assert [c[1] for c in driver.calls if c[0] == "launch"] == [
        "paste_masks_weights",
        "paste_masks_compact",
        "landmarks_cubic_tables",
        "landmarks_torchvision_columns",
        "landmarks_torchvision",
    ]
    compact = sum(int(np.prod(r.shape)) for r in gp(items, mp, hp)[0].masks)
    assert compact > 0
    full = masks.nbytes + heat.nbytes
    assert driver.calls[-2][1] < full / 4  # compact results only, not the engine outputs

    pre_gp = GpuPreprocessor(driver, (64, 64))
    frames = selfcheck.random_frames(rng, [(30, 40), (100, 10)])
    out = driver.alloc(2 * 3 * 64 * 64 * 4)
    driver.calls.clear()
    pre_gp(frames, out)
    assert [c[0] for c in driver.calls if c[0] != "alloc"] == ["synchronize", "upload", "launch"]


# ---------------------------------------------------------------- CudaDriver on the strict stand-in GPU
def test_cuda_driver_on_the_strict_stand_in(strict_gpu, monkeypatch, tmp_path):
    """CudaDriver's real code (NVRTC compile + cache, module load, cuLaunchKernel argument layout, copies on its
    stream) on the simulated GPU (tests/strict_gpu.py: device memory of its own, stream-ordered queues); the
    launches run on the shim and must give the reference."""
    from df2infer.ops.cuda.launch import CudaDriver

    sim = strict_gpu()
    monkeypatch.setenv(compiler.CACHE_ENV, str(tmp_path))
    drv = CudaDriver(0)
    assert drv.arch == 87 and not drv.integrated
    rng = np.random.default_rng(11)
    masks, heat, items = selfcheck.realistic_batch(rng, [(30, 40), (17, 9)], detections=5, per_image=4, heatmap_size=12)
    mp, hp = selfcheck.to_device(drv, masks), selfcheck.to_device(drv, heat)
    post = GpuPostprocessor(drv, detections=5, mask_size=28, heatmap_size=12)
    res = post(items, mp, hp, landmark_method="subpixel")
    for it, r in zip(items, res):
        ref_m, ref_e = paste_masks(masks[it.row, it.idx], it.boxes, it.image_size)
        assert np.array_equal(ref_e, r.mask_boxes) and all(np.array_equal(a, b) for a, b in zip(ref_m, r.masks))
        ref_l = decode_landmarks(heat[it.row, it.idx], it.boxes, it.labels, "subpixel")
        assert all(np.array_equal(a, b) for a, b in zip(ref_l, r.landmarks))
    assert sim.launches == ["paste_masks_weights", "paste_masks_compact", "landmarks_subpixel"]
    on_stream = [e for e in sim.log if e[0] in ("cuda.cuLaunchKernel", "cuda.cuMemcpyHtoDAsync", "cuda.cuMemcpyDtoHAsync")]
    assert {int(e[9] if e[0] == "cuda.cuLaunchKernel" else e[4]) for e in on_stream} == {drv.stream}
    assert [e[0] for e in sim.log].count("cuda.cuModuleLoadData") == 2  # paste_masks.cu, landmarks.cu: loaded at first use
    assert len(list(tmp_path.iterdir())) == 2 and all(p.suffix == ".cubin" for p in tmp_path.iterdir())
    for ptr in (mp, hp):
        drv.free(ptr)
    post.close()
    drv.close()


# ---------------------------------------------------------------- NV12 -> letterbox in one pass
def _random_nv12(rng, h, w, matrix, legal=True):
    from df2infer.ops.nv12 import Nv12Image

    lo_y, hi_y, lo_c, hi_c = (16, 236, 16, 241) if legal else (0, 256, 0, 256)
    y = rng.integers(lo_y, hi_y, (h, w), dtype=np.uint8)
    uv = rng.integers(lo_c, hi_c, ((h + 1) // 2, (w + 1) // 2, 2), dtype=np.uint8)
    return Nv12Image(y, uv, matrix)


def test_nv12_reference_agrees_with_opencv_and_the_standards():
    from df2infer.ops.nv12 import Nv12Image, nv12_to_bgr

    rng = np.random.default_rng(5)
    img = _random_nv12(rng, 64, 96, "bt601")
    # OpenCV's NV12 conversion (BT.601, limited range, its own fixed point): within one level on legal values
    cvb = cv2.cvtColorTwoPlane(img.y, img.uv, cv2.COLOR_YUV2BGR_NV12)
    diff = np.abs(nv12_to_bgr(img).astype(int) - cvb)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.1
    # Each matrix's encoding of pure colours (Kr, Kb from BT.601 / BT.709, limited range) decodes back
    for matrix, (kr, kb) in {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}.items():
        for bgr in [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255), (0, 0, 0), (40, 160, 90)]:
            b, g, r = (v / 255 for v in bgr)
            yy = kr * r + (1 - kr - kb) * g + kb * b
            code = (16 + 219 * yy, 128 + 112 * (b - yy) / (1 - kb), 128 + 112 * (r - yy) / (1 - kr))
            y_, u_, v_ = (int(round(c)) for c in code)
            px = Nv12Image(np.full((2, 2), y_, np.uint8), np.array([[[u_, v_]]], np.uint8), matrix)
            got = nv12_to_bgr(px)[0, 0].astype(int)
            assert np.abs(got - np.array(bgr)).max() <= 2, (matrix, bgr, got)
    with pytest.raises(ValueError, match="full-range"):
        nv12_to_bgr(Nv12Image(img.y, img.uv, "bt601", full_range=True))
    with pytest.raises(ValueError, match="expected uv"):
        nv12_to_bgr(Nv12Image(img.y, img.uv[:-1], "bt601"))


@pytest.mark.parametrize("out_dtype", [np.float32, np.float16])
def test_nv12_letterbox_kernel_equals_conversion_then_letterbox(driver, out_dtype):
    """letterbox_nv12_kernel on the shim == to_input_batch(nv12_to_bgr(frame)) (OpenCV's INTER_LINEAR_EXACT), bit for
    bit; odd sizes (a chroma sample covering a half block), both matrices, illegal values too."""
    from df2infer.ops.nv12 import nv12_to_bgr

    rng = np.random.default_rng(11)
    shapes = [(17, 33), (240, 320), (1, 1), (5, 300), (333, 517), (2, 3)]
    frames = [_random_nv12(rng, h, w, ("bt601", "bt709")[i % 2], legal=i != 3) for i, (h, w) in enumerate(shapes)]
    H, W = 96, 128
    gp = GpuPreprocessor(driver, (H, W), 114.0, out_dtype=out_dtype)
    out = driver.alloc(len(frames) * 3 * H * W * np.dtype(out_dtype).itemsize)
    infos = gp(frames, out)
    driver.synchronize()
    assert [c[0] for c in gp.last_launches] == ["letterbox_nv12_kernel"]
    got = selfcheck.from_device(driver, out, (len(frames), 3, H, W), out_dtype).astype(np.float32)
    ref, ref_infos = to_input_batch([nv12_to_bgr(f) for f in frames], SimpleNamespace(input_height=H, input_width=W, pad_value=114.0))
    ref = ref.astype(out_dtype).astype(np.float32)
    assert infos == ref_infos
    diff = np.abs(got - ref)
    assert diff.max() == 0.0, (diff.max(), (diff > 0).mean())
