"""GPU preprocessing and postprocessing for the TensorRT path, on one stream, through a Driver.

`GpuPreprocessor`: a batch of uint8 BGR frames of any sizes -> the engine's input buffer (letterboxed,
RGB, CHW, float32/float16), with one host-to-device copy of the frames and their geometry (none on an
integrated GPU, which reads the pinned staging buffer in place) and one launch.

`GpuPostprocessor`: for the detections the host kept (after reading back only num_dets, boxes, scores,
labels), pastes every mask of every image in one launch and decodes every landmark in one launch (two
for the torchvision method), reading the engine's mask and heatmap outputs where they lie on the
device; only the compact masks and the landmarks come back, in one synchronization.

The geometry comes from the CPU references (letterbox_geometry, mask_extent), so the GPU path cannot
drift from them. With `df2infer.ops.cuda.shim.ShimDriver` both classes run on the CPU (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from df2infer.data import spec
from df2infer.images import ImageError
from df2infer.ops.cuda.launch import Driver, grid_1d
from df2infer.ops.landmarks import LANDMARK_METHODS
from df2infer.ops.letterbox import LetterboxInfo, letterbox_geometry
from df2infer.ops.masks import mask_extent
from df2infer.ops.nv12 import Nv12Image
from df2infer.ops.options import DEFAULT_LANDMARK_METHOD, DEFAULT_OPTIONS, DecodeOptions

MAX_HEATMAP_SIZE = 64  # landmarks.cu MAX_HEATMAP_SIZE: the torchvision method keeps one column per thread


def _align(n: int, a: int = 16) -> int:
    return (n + a - 1) // a * a


class _Pack:
    """Lay out several arrays in one byte buffer (one copy each way), 16-byte aligned."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, np.ndarray, int]] = []
        self.nbytes = 0

    def add(self, name: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        self.parts.append((name, arr, self.nbytes))
        self.nbytes = _align(self.nbytes + arr.nbytes)

    def write(self, host: np.ndarray) -> dict[str, int]:
        offsets = {}
        for name, arr, off in self.parts:
            host[off : off + arr.nbytes] = arr.reshape(-1).view(np.uint8)
            offsets[name] = off
        return offsets


class _Scratch:
    """A device buffer and its pinned host twin that grow to the largest size asked for. `device=False`: the
    host buffer only (an integrated GPU reads it in place; a device twin would take shared DRAM for nothing).
    Growing frees the old buffers at once: the caller has synchronized (their last use has run)."""

    def __init__(self, driver: Driver, *, device: bool = True):
        self.driver = driver
        self.with_device = device
        self.device = 0
        self.host: np.ndarray | None = None
        self.capacity = 0

    def reserve(self, nbytes: int) -> None:
        if nbytes <= self.capacity:
            return
        cap = max(_align(int(nbytes * 1.25), 4096), 4096)
        self.close()
        if self.with_device:
            self.device = self.driver.alloc(cap)
        self.host = self.driver.host_buffer(cap)
        self.capacity = cap

    def close(self) -> None:
        if self.device:
            self.driver.free(self.device)
            self.device = 0
        if self.host is not None:
            self.driver.free_host(self.host)
            self.host = None
        self.capacity = 0


def linear_taps(dst: int, src: int) -> np.ndarray:
    """The taps of OpenCV's bit-exact bilinear resize (cv2.INTER_LINEAR_EXACT, cv::resize_bitExact) along one
    axis of `src` pixels resized to `dst`: int32 [dst, 4] = (first source index, second source index, weight of
    the first, weight of the second), weights in 8-bit fixed point summing to 256. The same rule on both axes.

    As OpenCV (interpolationLinear::getCoeffs, in IEEE double as its softdouble): scale = 1 / (dst / src),
    f = scale * (d + 0.5) - 0.5, s = floor(f). Inside (0 <= s < src - 1): pixels s, s + 1, weights 256 - c and
    c = round-half-even((f - s) * 256). Before the first pixel (s < 0, or a 1-pixel source): the first pixel,
    weights (256, 0); from the last on (s >= src - 1): the last pixel, weights (256, 0). (An exact 2x downscale
    on both axes takes OpenCV's INTER_AREA path, (a + b + c + d + 2) >> 2: what these taps give there too.)
    """
    scale = 1.0 / (dst / src)
    f = scale * (np.arange(dst, dtype=np.float64) + 0.5) - 0.5
    s = np.floor(f)
    c1 = np.rint((f - s) * 256.0).astype(np.int64)  # np.rint rounds half to even, as cvRound(softdouble)
    s = s.astype(np.int64)
    left = (s < 0) | (src == 1)
    right = ~left & (s >= src - 1)
    inside = ~left & ~right
    taps = np.empty((dst, 4), np.int32)
    taps[:, 0] = np.where(left, 0, np.where(right, src - 1, s))
    taps[:, 1] = np.where(inside, s + 1, taps[:, 0])
    taps[:, 3] = np.where(inside, c1, 0)
    taps[:, 2] = 256 - taps[:, 3]
    return taps


def letterbox_plan(
    shapes: Sequence[tuple[int, int]], size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[LetterboxInfo]]:
    """Kernel tables for frames of `shapes` (h, w) letterboxed into `size` (H, W): geom int32 [B, 8]
    (h, w, pitch, new_h, new_w, pad_y, pad_x, 0), taps int32 [., 4] (each frame's resized columns, then
    rows: linear_taps), toff int32 [B] (where each frame's taps start), and each frame's LetterboxInfo."""
    geom = np.zeros((len(shapes), 8), np.int32)
    toff = np.zeros(len(shapes), np.int32)
    taps, infos, pos = [], [], 0
    for i, (h, w) in enumerate(shapes):
        g = letterbox_geometry(h, w, size)  # fields by name: the reference's tuple order is x before y
        geom[i] = (h, w, 3 * w, g.new_h, g.new_w, g.pad_y, g.pad_x, 0)
        toff[i] = pos
        taps += [linear_taps(g.new_w, w), linear_taps(g.new_h, h)]
        pos += g.new_w + g.new_h
        infos.append(LetterboxInfo(scale=float(g.scale), pad_x=g.pad_x, pad_y=g.pad_y, orig_h=h, orig_w=w))
    return geom, np.concatenate(taps) if taps else np.zeros((0, 4), np.int32), toff, infos


class GpuPreprocessor:
    """Letterbox + BGR->RGB + HWC->CHW + value * alpha + beta + dtype, straight into the engine input.

    size (H, W); pad_value as the CPU letterbox (converted to uint8 the same way); out_dtype float32
    or float16; alpha/beta per RGB channel (identity by default: the graph normalizes itself).
    """

    def __init__(
        self,
        driver: Driver,
        size: tuple[int, int],
        pad_value: float = 114.0,
        *,
        out_dtype: Any = np.float32,
        alpha: Sequence[float] = (1.0, 1.0, 1.0),
        beta: Sequence[float] = (0.0, 0.0, 0.0),
    ):
        self.driver = driver
        self.size = (int(size[0]), int(size[1]))
        self.out_dtype = np.dtype(out_dtype)
        if self.out_dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"GpuPreprocessor: out_dtype {self.out_dtype}, expected float32 or float16")
        self.pad = float(np.asarray(pad_value).astype(np.uint8))  # exactly what letterbox() fills with
        self.alpha = tuple(float(a) for a in alpha)
        self.beta = tuple(float(b) for b in beta)
        # An integrated GPU (Jetson) reads the pinned staging buffer in place: no device twin, no upload.
        self._zero_copy = bool(getattr(driver, "integrated", False)) and hasattr(driver, "mapped_pointer")
        self._scratch = _Scratch(driver, device=not self._zero_copy)
        self.last_launches: list[tuple] = []  # (kernel, grid, block, args) of the last call, for benchmarks

    def __call__(self, images: Sequence[np.ndarray] | Sequence[Nv12Image], out: Any) -> list[LetterboxInfo]:
        """Write the batch into `out` (device pointer or CUDA array of [>= B, 3, H, W] out_dtype); return
        the letterbox of each frame. Asynchronous: the work is queued on the driver's stream.
        A batch of Nv12Image frames (a camera's or decoder's NV12) is converted and letterboxed in one pass
        (letterbox_nv12_kernel); the result is that of the BGR frames ops.nv12.nv12_to_bgr makes."""
        if images and all(isinstance(img, Nv12Image) for img in images):
            return self._nv12([img for img in images if isinstance(img, Nv12Image)], out)
        bgr: list[np.ndarray] = []
        for i, img in enumerate(images):
            if isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
                bgr.append(img)
            else:
                raise ImageError(
                    f"images[{i}]: expected HxWx3 BGR uint8 (or a batch of Nv12Image), got "
                    f"{getattr(img, 'shape', None)} {getattr(img, 'dtype', type(img).__name__)} "
                    "(use coerce_image)"
                )
        B = len(bgr)
        if B == 0:
            return []
        geom, taps, toff, infos = letterbox_plan([img.shape[:2] for img in bgr], self.size)
        frame_off = np.zeros(B, np.int64)
        pack = _Pack()
        pos = 0
        for i, img in enumerate(bgr):
            frame_off[i] = pos
            pos = _align(pos + img.nbytes)
        frames_bytes = pos
        pack.nbytes = frames_bytes
        pack.add("offsets", frame_off)
        pack.add("geom", geom)
        pack.add("taps", taps)
        pack.add("toff", toff)
        # The staging buffer is reused: the previous batch's copy (or, zero-copy, its kernel) must have
        # read it before it is overwritten. The backend synchronizes after each batch anyway, so this
        # wait is normally free; it makes the class safe on its own.
        self.driver.synchronize()
        self._scratch.reserve(pack.nbytes)
        host = self._scratch.host
        assert host is not None
        for i, img in enumerate(bgr):
            host[frame_off[i] : frame_off[i] + img.nbytes] = np.ascontiguousarray(img).reshape(-1)
        offs = pack.write(host)
        base = self.driver.mapped_pointer(host) if self._zero_copy else None  # type: ignore[attr-defined]
        if base is None:
            self.driver.upload(self._scratch.device, host[: pack.nbytes])
            base = self._scratch.device
        H, W = self.size
        grid = ((W + 31) // 32, (H + 7) // 8, B)
        args = (
            base,
            base + offs["offsets"],
            base + offs["geom"],
            base + offs["taps"],
            base + offs["toff"],
            out,
            int(self.out_dtype == np.float16),
            B,
            H,
            W,
            self.pad,
            *self.alpha,
            *self.beta,
        )
        self.driver.launch("letterbox_kernel", grid, (32, 8, 1), args)
        self.last_launches = [("letterbox_kernel", grid, (32, 8, 1), args)]
        return infos

    def _nv12(self, images: Sequence[Nv12Image], out: Any) -> list[LetterboxInfo]:
        for i, img in enumerate(images):
            img.check(f"images[{i}]")
        B = len(images)
        _, taps, toff, infos = letterbox_plan([img.shape for img in images], self.size)
        geom = np.zeros((B, 10), np.int32)
        frame_off = np.zeros(B, np.int64)
        pos = 0
        layouts = []
        for i, img in enumerate(images):
            h, w = img.shape
            pitch = 2 * ((w + 1) // 2)  # the UV rows' bytes; Y rows are copied at the same pitch
            uv_offset = _align(h * pitch)
            lg = letterbox_geometry(h, w, self.size)  # as letterbox_plan, which made the taps
            geom[i] = (h, w, pitch, lg.new_h, lg.new_w, lg.pad_y, lg.pad_x, uv_offset, 709 if img.matrix == "bt709" else 601, 0)
            frame_off[i] = pos
            layouts.append((pos, pitch, uv_offset))
            pos = _align(pos + uv_offset + ((h + 1) // 2) * pitch)
        pack = _Pack()
        pack.nbytes = pos
        pack.add("offsets", frame_off)
        pack.add("geom", geom)
        pack.add("taps", taps)
        pack.add("toff", toff)
        self.driver.synchronize()  # the staging buffer is reused (see __call__)
        self._scratch.reserve(pack.nbytes)
        host = self._scratch.host
        assert host is not None
        for img, (off, pitch, uv_offset) in zip(images, layouts):
            h, w = img.shape
            host[off : off + h * pitch].reshape(h, pitch)[:, :w] = img.y
            ch = (h + 1) // 2
            host[off + uv_offset : off + uv_offset + ch * pitch].reshape(ch, pitch)[:] = img.uv.reshape(ch, pitch)
        offs = pack.write(host)
        base = self.driver.mapped_pointer(host) if hasattr(self.driver, "mapped_pointer") else None
        if base is None:
            self.driver.upload(self._scratch.device, host[: pack.nbytes])
            base = self._scratch.device
        H, W = self.size
        grid = ((W + 31) // 32, (H + 7) // 8, B)
        args = (
            base,
            base + offs["offsets"],
            base + offs["geom"],
            base + offs["taps"],
            base + offs["toff"],
            out,
            int(self.out_dtype == np.float16),
            B,
            H,
            W,
            self.pad,
            *self.alpha,
            *self.beta,
        )
        self.driver.launch("letterbox_nv12_kernel", grid, (32, 8, 1), args)
        self.last_launches = [("letterbox_nv12_kernel", grid, (32, 8, 1), args)]
        return infos

    def close(self) -> None:
        self._scratch.close()


@dataclass
class PostItem:
    """The detections kept in one image: rows of the engine's outputs and their boxes.

    row: the image's index in the batch; idx: int [n] detection slots kept (into the N outputs);
    boxes: float32 [n, 4] image pixels, unclipped (scale_boxes_back(..., clip=False)); labels: int [n].
    """

    row: int
    idx: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]


@dataclass
class PostResult:
    masks: list[np.ndarray] | None  # bool arrays over mask_boxes, as ops.masks.paste_masks
    mask_boxes: np.ndarray | None  # int32 [n, 4]
    landmarks: list[np.ndarray] | None  # float32 [k_i, 3], as ops.landmarks.decode_landmarks
    instance_map: np.ndarray | None = None  # int16 [h, w]: 0, or 1 + the first detection whose mask is on


@dataclass
class _PostPlan:
    """GpuPostprocessor.plan's result: the batch's host tables (by name, in upload order) and the sizes of the
    kernels' work and outputs."""

    n: int  # detections kept over the batch
    tables: dict[str, np.ndarray]
    w_total: int  # sampling-weight entries (0 when neither masks nor instance maps are wanted)
    mask_total: int  # mask pixels (0 when masks are not wanted)
    map_total: int  # instance-map pixels (0 when not wanted)
    cubic_total: int  # torchvision method: cubic coefficient rows
    col_total: int  # torchvision method: column maxima
    want_masks: bool
    want_landmarks: bool
    instance_maps: bool
    landmark_method: str


@dataclass
class _PostPacked:
    """GpuPostprocessor.pack's result: device addresses of the tables, the scratch and the results."""

    table: dict[str, int]
    cubic: int
    best: int
    best_row: int
    taps: int
    weights: int
    result: dict[str, int]
    result_offsets: dict[str, int]
    result_nbytes: int
    result_used: int


class GpuPostprocessor:
    """Masks and landmarks of all kept detections of a batch, on the GPU, from the engine's device outputs.

    detections: the engine's N (max detections per image); mask_size M; heatmap_size K; channels C
    (landmark channels per detection, spec.MAX_CATEGORY_LANDMARKS in the deploy graphs).
    """

    def __init__(self, driver: Driver, *, detections: int, mask_size: int, heatmap_size: int, channels: int = spec.MAX_CATEGORY_LANDMARKS):
        self.driver = driver
        self.N, self.M, self.K, self.C = int(detections), int(mask_size), int(heatmap_size), int(channels)
        self.counts = spec.landmark_counts().astype(np.int32)
        if self.C < int(self.counts.max()):
            raise ValueError(f"GpuPostprocessor: {self.C} landmark channels, the categories need {int(self.counts.max())}")
        self._tables = _Scratch(driver)
        self._results = _Scratch(driver)
        self.last_launches: list[tuple] = []  # (kernel, grid, block, args) of the last call, for benchmarks

    def __call__(
        self,
        items: Sequence[PostItem],
        masks: Any,
        heatmaps: Any,
        *,
        options: DecodeOptions | None = None,
        mask_threshold: float = DEFAULT_OPTIONS.mask_threshold,
        landmark_method: str = DEFAULT_LANDMARK_METHOD,
        want_masks: bool = True,
        want_landmarks: bool = True,
        instance_maps: bool = False,
    ) -> list[PostResult]:
        """masks: device [B, N, M, M] float32; heatmaps: device [B, N, C, K, K] float32 (pointers or CUDA
        arrays; either may be None when not wanted). Synchronizes the driver's stream once at the end.
        options: a DecodeOptions, which then sets mask_threshold, landmark_method, want_masks and want_landmarks
        (the Predictor's path); the separate keywords serve the kernel checks and benchmarks.
        Four steps: plan (host-side tables), pack (one upload), launch (the kernels), unpack (one download)."""
        if options is not None:
            mask_threshold, landmark_method = options.mask_threshold, options.landmark_method
            want_masks, want_landmarks = options.masks, options.landmarks
        plan = self.plan(items, landmark_method, want_masks=want_masks, want_landmarks=want_landmarks, instance_maps=instance_maps)
        packed = self.pack(plan)
        launches = self.launch(plan, packed, masks, heatmaps, float(mask_threshold))
        out = self.unpack(plan, packed, items)
        self.last_launches = launches
        return out

    def plan(
        self, items: Sequence[PostItem], landmark_method: str, *, want_masks: bool, want_landmarks: bool, instance_maps: bool
    ) -> _PostPlan:
        """The batch's tables on the host: the kept rows, their boxes and labels, each mask's pixel extent and
        offset, the sampling-weight offsets, the instance maps' offsets and the torchvision method's sizes."""
        if landmark_method not in LANDMARK_METHODS:
            raise ValueError(f"landmark_method {landmark_method!r}, expected one of {LANDMARK_METHODS}")
        if want_landmarks and landmark_method == "torchvision" and self.K > MAX_HEATMAP_SIZE:
            raise ValueError(f"heatmap size {self.K} > {MAX_HEATMAP_SIZE}, the torchvision kernel's limit")
        counts_n = [len(np.asarray(it.idx).reshape(-1)) for it in items]
        n = int(sum(counts_n))
        if n:
            labels = np.concatenate([np.asarray(it.labels, np.int32).reshape(-1) for it in items])
            if labels.min() < 1 or labels.max() > spec.NUM_CATEGORIES:
                raise ValueError(f"labels must be 1..{spec.NUM_CATEGORIES}, got {sorted(set(labels.tolist()))}")
            boxes = np.concatenate([np.asarray(it.boxes, np.float32).reshape(-1, 4) for it in items])
            rows = np.concatenate([it.row * self.N + np.asarray(it.idx, np.int64).reshape(-1) for it in items])
        else:
            labels, boxes, rows = np.zeros(0, np.int32), np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        det_begin = np.concatenate([[0], np.cumsum(counts_n)]).astype(np.int32)
        image_of = np.repeat(np.arange(len(items)), counts_n)

        extents = np.zeros((n, 4), np.int32)
        for d in range(n):
            extents[d] = mask_extent(boxes[d], items[image_of[d]].image_size)
        areas = (extents[:, 2] - extents[:, 0]).astype(np.int64) * (extents[:, 3] - extents[:, 1])
        mask_off = np.concatenate([[0], np.cumsum(areas)]).astype(np.int64)
        # sampling weights: one entry per row and per column of each extent (paste_masks_weights)
        spans = (extents[:, 3] - extents[:, 1]).astype(np.int64) + (extents[:, 2] - extents[:, 0])
        woff = np.concatenate([[0], np.cumsum(spans)]).astype(np.int64)
        dims = np.array([it.image_size for it in items], np.int32).reshape(-1, 2)
        map_off = np.concatenate([[0], np.cumsum(dims[:, 0].astype(np.int64) * dims[:, 1])]).astype(np.int64)
        # torchvision method: resized map size per detection, as ops.landmarks._heatmaps_torchvision
        sizes = np.zeros((n, 2), np.int32)
        for d in range(n):
            w = max(float(boxes[d, 2] - boxes[d, 0]), 1.0)
            h = max(float(boxes[d, 3] - boxes[d, 1]), 1.0)
            sizes[d] = (int(np.ceil(w)), int(np.ceil(h)))
        table_off = np.concatenate([[0], np.cumsum(sizes.sum(axis=1, dtype=np.int64))]).astype(np.int64)
        # one column-maximum entry per (detection, own landmark, resized column)
        own = self.counts[labels].astype(np.int64) if n else np.zeros(0, np.int64)
        col_off = np.concatenate([[0], np.cumsum(own * sizes[:, 0])]).astype(np.int64)
        return _PostPlan(
            n=n,
            tables={
                "rows": rows,
                "boxes": boxes,
                "extents": extents,
                "mask_off": mask_off,
                "woff": woff,
                "labels": labels,
                "counts": self.counts,
                "sizes": sizes,
                "table_off": table_off,
                "col_off": col_off,
                "det_begin": det_begin,
                "dims": dims,
                "map_off": map_off,
            },
            w_total=int(woff[-1]) if (want_masks or instance_maps) else 0,
            mask_total=int(mask_off[-1]) if want_masks else 0,
            map_total=int(map_off[-1]) if instance_maps else 0,
            cubic_total=int(table_off[-1]),
            col_total=int(col_off[-1]),
            want_masks=want_masks,
            want_landmarks=want_landmarks,
            instance_maps=instance_maps,
            landmark_method=landmark_method,
        )

    def pack(self, plan: _PostPlan) -> _PostPacked:
        """Lay the tables and the kernels' scratch out in one device buffer and upload the tables in one copy;
        lay the results out in another."""
        use_tv = plan.want_landmarks and plan.landmark_method == "torchvision"
        tables = _Pack()
        for name, arr in plan.tables.items():
            tables.add(name, arr)
        # scratch after the uploaded tables: cubic coefficients, column maxima and their rows, mask sampling weights
        cubic_at = tables.nbytes
        best_at = _align(cubic_at + (plan.cubic_total * 5 * 4 if use_tv else 0))
        row_at = _align(best_at + (plan.col_total * 4 if use_tv else 0))
        taps_at = _align(row_at + (plan.col_total * 4 if use_tv else 0))
        weights_at = _align(taps_at + plan.w_total * 2 * 4)
        tables.nbytes = _align(weights_at + plan.w_total * 2 * 4)
        self._tables.reserve(tables.nbytes)
        assert self._tables.host is not None
        offsets = tables.write(self._tables.host)
        dev = self._tables.device
        if plan.n or plan.instance_maps:
            self.driver.upload(dev, self._tables.host[:cubic_at])

        results = _Pack()
        results.add("masks", np.zeros(plan.mask_total, np.uint8))
        results.add("landmarks", np.zeros((plan.n * self.C * 3) if plan.want_landmarks else 0, np.float32))
        results.add("maps", np.zeros(plan.map_total, np.int16))
        self._results.reserve(results.nbytes)
        used = max((off + arr.nbytes for _, arr, off in results.parts if arr.nbytes), default=0)
        return _PostPacked(
            table={k: dev + v for k, v in offsets.items()},
            cubic=dev + cubic_at,
            best=dev + best_at,
            best_row=dev + row_at,
            taps=dev + taps_at,
            weights=dev + weights_at,
            result={name: self._results.device + off for name, _, off in results.parts},
            result_offsets={name: off for name, _, off in results.parts},
            result_nbytes=results.nbytes,
            result_used=used,
        )

    def launch(self, plan: _PostPlan, packed: _PostPacked, masks: Any, heatmaps: Any, mask_threshold: float) -> list[tuple]:
        """Enqueue the kernels on the driver's stream; returns (kernel, grid, block, args) of each."""
        launches: list[tuple] = []

        def go(kernel: str, grid: tuple, block: tuple, args: tuple) -> None:
            self.driver.launch(kernel, grid, block, args)
            launches.append((kernel, grid, block, args))

        n, p, M = plan.n, packed.table, self.M
        args: tuple  # each kernel's arguments, as launch.KERNEL_SIGNATURES lists them
        taps, weights = packed.taps, packed.weights
        if n and plan.w_total:
            go("paste_masks_weights", *grid_1d(plan.w_total), (p["boxes"], p["extents"], p["woff"], n, M, M, taps, weights))
        if n and plan.want_masks and plan.mask_total:
            args = (masks, p["rows"], p["extents"], p["mask_off"], p["woff"], taps, weights, n, M, M, mask_threshold)
            go("paste_masks_compact", *grid_1d(plan.mask_total), (*args, packed.result["masks"]))
        if plan.instance_maps and plan.map_total:
            images = len(plan.tables["dims"])
            args = (masks, p["rows"], p["extents"], p["woff"], taps, weights, p["det_begin"], p["dims"], p["map_off"], images)
            go("paste_masks_instance_map", *grid_1d(plan.map_total), (*args, M, M, mask_threshold, packed.result["maps"]))
        if n and plan.want_landmarks:
            g, b = grid_1d(n * self.C, 64)
            lm_out, C, K = packed.result["landmarks"], self.C, self.K
            if plan.landmark_method == "subpixel":
                go("landmarks_subpixel", g, b, (heatmaps, p["rows"], p["boxes"], p["labels"], p["counts"], n, C, K, K, lm_out))
            else:
                go("landmarks_cubic_tables", *grid_1d(plan.cubic_total), (p["sizes"], p["table_off"], n, K, K, packed.cubic))
                args = (heatmaps, p["rows"], p["sizes"], p["table_off"], packed.cubic, p["col_off"], n, C, K, K)
                go("landmarks_torchvision_columns", *grid_1d(plan.col_total, 128), (*args, packed.best, packed.best_row))
                args = (p["boxes"], p["labels"], p["counts"], p["sizes"], p["col_off"], packed.best, packed.best_row, n, C, lm_out)
                go("landmarks_torchvision", g, b, args)
        return launches

    def unpack(self, plan: _PostPlan, packed: _PostPacked, items: Sequence[PostItem]) -> list[PostResult]:
        """Download the results in one copy, synchronize, and cut them per image."""
        host = self._results.host
        out_host = np.empty(packed.result_nbytes, np.uint8) if host is None else host[: packed.result_nbytes]
        if packed.result_used:
            self.driver.download(out_host[: packed.result_used], self._results.device)
        self.driver.synchronize()

        n, t, roffs = plan.n, plan.tables, packed.result_offsets
        extents, mask_off, labels, det_begin, map_off = t["extents"], t["mask_off"], t["labels"], t["det_begin"], t["map_off"]
        mask_bytes = out_host[roffs["masks"] : roffs["masks"] + plan.mask_total]
        lm_bytes = out_host[roffs["landmarks"] : roffs["landmarks"] + n * self.C * 3 * 4 * int(plan.want_landmarks)]
        lms = lm_bytes.view(np.float32).reshape(n, self.C, 3) if plan.want_landmarks else None
        maps_flat = out_host[roffs["maps"] : roffs["maps"] + plan.map_total * 2].view(np.int16)
        out = []
        for i, it in enumerate(items):
            lo, hi = int(det_begin[i]), int(det_begin[i + 1])
            res = PostResult(masks=None, mask_boxes=None, landmarks=None)
            if plan.want_masks:
                res.mask_boxes = extents[lo:hi].copy()
                res.masks = []
                for d in range(lo, hi):
                    x0, y0, x1, y1 = extents[d]
                    res.masks.append(mask_bytes[mask_off[d] : mask_off[d + 1]].reshape(y1 - y0, x1 - x0).astype(bool))
            if lms is not None:
                res.landmarks = [lms[d, : int(self.counts[labels[d]])].copy() for d in range(lo, hi)]
            if plan.instance_maps:
                h, w = it.image_size
                res.instance_map = maps_flat[map_off[i] : map_off[i + 1]].reshape(h, w).copy()
            out.append(res)
        return out

    def close(self) -> None:
        self._tables.close()
        self._results.close()


def instance_map_reference(masks: list[np.ndarray], extents: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The instance map the GPU writes, from paste_masks' compact output: int16 [h, w], 0 where no mask
    is on, else 1 + the lowest detection index whose mask is on (the most confident wins an overlap)."""
    out = np.zeros(image_size, np.int16)
    for i in reversed(range(len(masks))):
        x0, y0, x1, y1 = (int(v) for v in extents[i])
        region = out[y0:y1, x0:x1]
        region[masks[i]] = i + 1
    return out


__all__ = ["GpuPreprocessor", "GpuPostprocessor", "PostItem", "PostResult", "letterbox_plan", "instance_map_reference"]
