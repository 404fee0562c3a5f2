"""GPU check of the CUDA kernels (df2infer/ops/cuda): compile, run, compare, time. One table + JSON.

    python benchmarks/gpu_check.py [--json gpu_check.json]     # on a GPU machine: torch, CuPy optional,
                                                                 cuda-python + NVRTC; no TensorRT needed
    python benchmarks/gpu_check.py --shim                        # no GPU: the comparisons through the CPU shim

On a GPU, for realistic inputs (4 frames of 1280x720 / 1920x1080 / 640x480 / 720x1280 letterboxed to
640x640; 20 kept detections per image of 100, 28x28 masks, 39 x 56x56 heatmaps) it
1. compiles every kernel with NVRTC for this GPU and runs it through the production classes
   (GpuPreprocessor / GpuPostprocessor on a CudaDriver), comparing with the numpy references;
2. times each kernel (launches only, tables ready) and the whole class call, against torchvision's
   paste_masks_in_image / heatmaps_to_keypoints on the same GPU and inputs, and against the kernel's
   DRAM-bandwidth floor (the bytes it must move / the GPU's peak bandwidth);
3. runs the `gpu`-marked tests (tests/test_gpu_smoke.py) and records their outcome as env["gpu_tests"];
4. prints one table and writes JSON. Targets (issue 13): pasting and preprocessing at >= 50% of DRAM
   bandwidth; pasting and landmark decoding each >= 10x torchvision's GPU functions.
Without a CUDA device it stops at once with "no CUDA device" (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAME_SHAPES = [(720, 1280), (1080, 1920), (480, 640), (1280, 720)]
INPUT_SIZE = (640, 640)
DETECTIONS, PER_IMAGE, MASK, HEAT = 100, 20, 28, 56


# ---------------------------------------------------------------- pure parts (tested on the CPU)
def peak_bandwidth_gbs(memory_clock_khz: int, bus_width_bits: int) -> float:
    """Theoretical DRAM bandwidth in GB/s from CUDA's attributes: clock (kHz) x 2 (double data rate) x bus bytes."""
    return memory_clock_khz * 1e3 * 2 * (bus_width_bits / 8) / 1e9


def floor_us(nbytes: int, gbs: float) -> float:
    """The time (microseconds) moving `nbytes` takes at `gbs` GB/s: a kernel's bandwidth floor."""
    return nbytes / (gbs * 1e9) * 1e6


def letterbox_bytes(shapes: Sequence[tuple[int, int]], size: tuple[int, int], itemsize: int) -> int:
    """Bytes the letterbox kernel must move: every source frame read once, the input tensor written once."""
    return sum(h * w * 3 for h, w in shapes) + len(shapes) * 3 * size[0] * size[1] * itemsize


def paste_bytes(n: int, mask_size: int, compact_pixels: int) -> int:
    """Mask pasting: the n M x M float maps read once, one byte written per compact mask pixel."""
    return n * mask_size * mask_size * 4 + compact_pixels


def landmark_bytes(n_landmarks: int, heatmap_size: int) -> int:
    """Landmark decoding: each decoded landmark's K x K float map read once, (x, y, score) written."""
    return n_landmarks * (heatmap_size * heatmap_size * 4 + 12)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table: columns = [(key, header)]; floats with 4 significant digits, None as '-'."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[cell(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    line = lambda parts: "  ".join(p.ljust(w) for p, w in zip(parts, widths)).rstrip()  # noqa: E731
    return "\n".join([line([h for _, h in columns]), line(["-" * w for w in widths])] + [line(c) for c in cells])


def median_time_us(fn: Callable[[], object], sync: Callable[[], object], iters: int = 30, warmup: int = 3) -> float:
    """Median wall time (us) of fn() followed by sync(), over `iters` runs after `warmup`."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e6)
    return float(np.median(times))


TABLE_COLUMNS = [
    ("kernel", "kernel"),
    ("check", "vs numpy reference"),
    ("kernel_us", "kernel us"),
    ("call_us", "class call us"),
    ("floor_us", "DRAM floor us"),
    ("bw_pct", "% of DRAM bw"),
    ("torchvision_us", "torchvision us"),
    ("speedup", "x torchvision"),
]


# ---------------------------------------------------------------- the runs
def shim_rows(seed: int = 0) -> list[dict[str, Any]]:
    """The comparisons of the GPU run, through the CPU shim (no timing): one row per kernel."""
    from df2infer.ops.cuda import selfcheck
    from df2infer.ops.cuda.shim import ShimDriver

    rng = np.random.default_rng(seed)
    drv = ShimDriver()
    frames = selfcheck.random_frames(rng, FRAME_SHAPES)
    lb32 = selfcheck.check_letterbox(drv, frames, INPUT_SIZE)
    lb16 = selfcheck.check_letterbox(drv, frames, INPUT_SIZE, out_dtype=np.float16)
    sizes = [(h, w) for h, w in FRAME_SHAPES]
    masks, heat, items = selfcheck.realistic_batch(
        rng, sizes, detections=DETECTIONS, per_image=PER_IMAGE, mask_size=MASK, heatmap_size=HEAT, edge_cases=True
    )
    st = selfcheck.check_postprocess(drv, masks, heat, items)
    return _check_rows(lb32, lb16, st)


def _check_rows(lb32: dict, lb16: dict, st: dict) -> list[dict[str, Any]]:
    return [
        {
            "kernel": "letterbox_kernel fp32",
            "check": f"max |diff| {lb32['max_abs_diff']:g} grey level, {lb32['differing_fraction']:.2e} of values differ",
            **_raw(lb32),
        },
        {
            "kernel": "letterbox_kernel fp16",
            "check": f"max |diff| {lb16['max_abs_diff']:g}, {lb16['differing_fraction']:.2e} differ",
            **_raw(lb16),
        },
        {
            "kernel": "paste_masks_compact",
            "check": f"{st['mask_mismatches']} of {st['mask_pixels']} pixels differ "
            f"({st['mask_mismatches_unexplained']} not at the threshold)",
        },
        {"kernel": "paste_masks_instance_map", "check": f"{st['instance_map_mismatches']} pixels differ"},
        {
            "kernel": "landmarks_subpixel",
            "check": f"xy {st['landmarks_subpixel_xy_max_diff']:.3g} px, "
            f"score {st['landmarks_subpixel_score_max_diff']:.3g} ({st['landmarks']} landmarks)",
        },
        {
            "kernel": "landmarks_torchvision",
            "check": f"xy {st['landmarks_torchvision_xy_max_diff']:.3g} px, "
            f"score {st['landmarks_torchvision_score_max_diff']:.3g}, "
            f"{st['landmarks_torchvision_exact_fraction']:.4f} exact",
        },
    ]


def _raw(d: dict) -> dict:
    return {"raw": d}


def gpu_rows(seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Compile, run, compare and time on the first CUDA device. Raises RuntimeError('no CUDA device ...')."""
    from df2infer.ops.cuda import selfcheck
    from df2infer.ops.cuda.launch import CudaDriver
    from df2infer.ops.cuda.pipeline import GpuPostprocessor, GpuPreprocessor

    try:
        drv = CudaDriver(0)
    except Exception as e:  # no driver library, no device, or cuda-python missing
        raise RuntimeError(f"no CUDA device ({e})") from None
    from cuda.bindings import driver as cu

    attr = cu.CUdevice_attribute
    name = cu.cuDeviceGetName(256, drv.device)[1].split(b"\0", 1)[0].decode()
    env = {"gpu": name, "compute_capability": f"{drv.arch // 10}.{drv.arch % 10}"}
    try:
        clock = cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, drv.device)
        bus = cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, drv.device)
        gbs = peak_bandwidth_gbs(int(clock[1]), int(bus[1])) if int(clock[0]) == 0 and int(bus[0]) == 0 else 0.0
    except AttributeError:  # an attribute this CUDA no longer has
        gbs = 0.0
    # A device-to-device copy reads and writes every byte: what kernels can reach in practice.
    nbytes = 1 << 29
    a, b = drv.alloc(nbytes), drv.alloc(nbytes)
    copy_us = median_time_us(lambda: cu.cuMemcpyDtoDAsync(b, a, nbytes, drv.stream), drv.synchronize, iters=10)
    drv.free(a)
    drv.free(b)
    env["copy_gbs"] = 2 * nbytes / (copy_us * 1e-6) / 1e9
    env["peak_dram_gbs"] = gbs if gbs > 0 else None
    if gbs <= 0:
        gbs = env["copy_gbs"]
        env["floor_from"] = "measured device-to-device copy (peak attributes unavailable)"
    else:
        env["floor_from"] = "peak DRAM bandwidth (memory clock x bus width)"

    rng = np.random.default_rng(seed)
    frames = selfcheck.random_frames(rng, FRAME_SHAPES)
    t0 = time.perf_counter()
    lb32 = selfcheck.check_letterbox(drv, frames, INPUT_SIZE)
    lb16 = selfcheck.check_letterbox(drv, frames, INPUT_SIZE, out_dtype=np.float16)
    masks, heat, items = selfcheck.realistic_batch(
        rng, FRAME_SHAPES, detections=DETECTIONS, per_image=PER_IMAGE, mask_size=MASK, heatmap_size=HEAT
    )
    st = selfcheck.check_postprocess(drv, masks, heat, items)
    env["compile_and_check_s"] = time.perf_counter() - t0
    rows = _check_rows(lb32, lb16, st)
    by = {r["kernel"]: r for r in rows}

    def kernel_time(launches: list) -> float:
        def run() -> None:
            for launch in launches:
                drv.launch(*launch)

        return median_time_us(run, drv.synchronize)

    # preprocessing
    H, W = INPUT_SIZE
    for dtype, key in ((np.float32, "letterbox_kernel fp32"), (np.float16, "letterbox_kernel fp16")):
        pre = GpuPreprocessor(drv, INPUT_SIZE, out_dtype=dtype)
        out = drv.alloc(len(frames) * 3 * H * W * np.dtype(dtype).itemsize)
        pre(frames, out)
        launches = pre.last_launches
        r = by[key]
        r["kernel_us"] = kernel_time(launches)
        r["call_us"] = median_time_us(lambda pre=pre, out=out: pre(frames, out), drv.synchronize)
        r["floor_us"] = floor_us(letterbox_bytes(FRAME_SHAPES, INPUT_SIZE, np.dtype(dtype).itemsize), gbs)
        drv.free(out)
        pre.close()

    # postprocessing
    mp, hp = selfcheck.to_device(drv, masks), selfcheck.to_device(drv, heat)
    post = GpuPostprocessor(drv, detections=DETECTIONS, mask_size=MASK, heatmap_size=HEAT)
    n = sum(len(it.idx) for it in items)
    for method in ("subpixel", "torchvision"):
        res = post(items, mp, hp, landmark_method=method)
        launches = post.last_launches
        compact = sum(int(m.size) for r_ in res for m in (r_.masks or []))
        n_lm = sum(len(x) for r_ in res for x in (r_.landmarks or []))
        paste = [l for l in launches if l[0] == "paste_masks_compact"]
        lm = [l for l in launches if l[0].startswith("landmarks")]
        if method == "subpixel":
            r = by["paste_masks_compact"]
            r["kernel_us"] = kernel_time(paste)
            r["floor_us"] = floor_us(paste_bytes(n, MASK, compact), gbs)
            r["call_us"] = median_time_us(lambda: post(items, mp, hp, landmark_method="subpixel", want_landmarks=False), lambda: None)
        r = by[f"landmarks_{method}"]
        r["kernel_us"] = kernel_time(lm)
        r["floor_us"] = floor_us(landmark_bytes(n_lm, HEAT), gbs)
        r["call_us"] = median_time_us(lambda method=method: post(items, mp, hp, landmark_method=method, want_masks=False), lambda: None)
    res = post(items, mp, hp, instance_maps=True, want_landmarks=False)
    r = by["paste_masks_instance_map"]
    r["kernel_us"] = kernel_time([l for l in post.last_launches if l[0] == "paste_masks_instance_map"])
    r["floor_us"] = floor_us(n * MASK * MASK * 4 + sum(h * w * 2 for h, w in FRAME_SHAPES), gbs)

    # torchvision on the same GPU and inputs
    try:
        import torch
        from torchvision.models.detection.roi_heads import heatmaps_to_keypoints, paste_masks_in_image  # type: ignore[import-untyped]
    except ImportError as e:
        env["torchvision"] = f"not measured: {e}"
    else:
        dev = torch.device("cuda:0")
        tm = [torch.from_numpy(masks[it.row, it.idx][:, None]).to(dev) for it in items]
        th = [torch.from_numpy(heat[it.row, it.idx]).to(dev) for it in items]
        tb = [torch.from_numpy(it.boxes).to(dev) for it in items]
        sync = torch.cuda.synchronize

        def tv_paste() -> None:
            for m, b, it in zip(tm, tb, items):
                paste_masks_in_image(m, b, it.image_size, padding=0)

        def tv_keypoints() -> None:
            for h, b in zip(th, tb):
                heatmaps_to_keypoints(h, b)

        t_paste = median_time_us(tv_paste, sync, iters=10)
        t_kp = median_time_us(tv_keypoints, sync, iters=5, warmup=1)
        by["paste_masks_compact"]["torchvision_us"] = t_paste
        by["landmarks_torchvision"]["torchvision_us"] = t_kp
        by["landmarks_subpixel"]["torchvision_us"] = t_kp
        env["torchvision"] = f"torch {torch.__version__}"
    for r in rows:
        if r.get("kernel_us") and r.get("floor_us"):
            r["bw_pct"] = 100.0 * r["floor_us"] / r["kernel_us"]
        if r.get("torchvision_us") and r.get("call_us"):
            r["speedup"] = r["torchvision_us"] / r["call_us"]
    post.close()
    drv.free(mp)
    drv.free(hp)
    drv.close()
    return rows, env


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shim", action="store_true", help="run the comparisons through the CPU shim (no GPU, no timing)")
    ap.add_argument("--json", type=Path, default=Path("gpu_check.json"), help="where to write the results")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.shim:
        rows, env = shim_rows(args.seed), {"device": "CPU host shim (no GPU)"}
    else:
        try:
            rows, env = gpu_rows(args.seed)
        except RuntimeError as e:
            if str(e).startswith("no CUDA device"):
                print(f"gpu_check: {e}; run it on a machine with an NVIDIA GPU, or use --shim", file=sys.stderr)
                return 2
            raise
    if not args.shim:
        env["gpu_tests"] = gpu_tests()
    print(json.dumps(env))
    print(format_table(rows, TABLE_COLUMNS))
    args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=2, default=str))
    print(f"wrote {args.json}")
    return 0 if env.get("gpu_tests", "passed") == "passed" else 1


def gpu_tests() -> str:
    """The `gpu`-marked tests on this GPU (tests/test_gpu_smoke.py: the CPU backend with the GPU kernels through
    the real driver, compared with the CPU path): "passed", or what pytest said (a skip is not a pass here)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-m", "gpu", "-p", "no:cacheprovider", str(root / "tests" / "test_gpu_smoke.py")],
        cwd=root,
        capture_output=True,
        text=True,
    )
    print(done.stdout[-3000:], done.stderr[-2000:], sep="", file=sys.stderr)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return "passed" if done.returncode == 0 and "skipped" not in last else f"pytest exit {done.returncode}: {last}"


if __name__ == "__main__":
    sys.exit(main())
