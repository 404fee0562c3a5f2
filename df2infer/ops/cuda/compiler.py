"""NVRTC compilation of the package's CUDA kernels, at first use, cached on disk.

The kernels are plain `.cu` files beside this module (letterbox.cu, paste_masks.cu, landmarks.cu).
They include no header, so any NVRTC since CUDA 11 compiles them without a CUDA toolkit: NVRTC comes
from pip (`nvidia-cuda-nvrtc`) or, on a Jetson, from JetPack. Compiled code is cached per GPU
architecture, NVRTC version, options and source hash in `cache_dir()`, so a process pays for NVRTC
once per machine.

All kernels are compiled with ``--fmad=false``: a product is fused into an add only where a kernel
says so (fmaf), which keeps the GPU's arithmetic the same as the CPU host shim's (docs/cuda_kernels.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KERNEL_DIR = Path(__file__).resolve().parent

# Each kernel source and the entry points it defines.
KERNELS: dict[str, tuple[str, ...]] = {
    "letterbox.cu": ("letterbox_kernel", "letterbox_nv12_kernel"),
    "paste_masks.cu": ("paste_masks_weights", "paste_masks_compact", "paste_masks_instance_map"),
    "landmarks.cu": ("landmarks_subpixel", "landmarks_cubic_tables", "landmarks_torchvision_columns", "landmarks_torchvision"),
}

# Options every compile uses (NVRTC and nvcc alike; the shim uses -ffp-contract=off to match).
NVRTC_OPTIONS: tuple[str, ...] = ("--fmad=false", "--std=c++14")

CACHE_ENV = "DF2INFER_KERNEL_CACHE"

log = logging.getLogger(__name__)


class KernelCompileError(RuntimeError):
    """NVRTC is missing, does not support the architecture, or refused a kernel (message has its log)."""


@dataclass(frozen=True)
class CompiledKernel:
    source_name: str
    arch: int  # the GPU's compute capability as major * 10 + minor, e.g. 87
    image: bytes  # a CUBIN, or PTX text (NUL-terminated) when NVRTC is older than the GPU
    kind: str  # "cubin" or "ptx"
    log: str  # NVRTC's log: empty when the source compiled without a warning


def kernel_source(source_name: str) -> str:
    if source_name not in KERNELS:
        raise KeyError(f"unknown kernel source {source_name!r}; the package has {sorted(KERNELS)}")
    return (KERNEL_DIR / source_name).read_text(encoding="utf-8")


def import_nvrtc() -> Any:
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        raise KernelCompileError(
            "cuda-python is not installed: `pip install cuda-python nvidia-cuda-nvrtc` (NVRTC compiles the "
            "GPU kernels; on a Jetson use JetPack's CUDA and the cuda-python release matching it)"
        ) from None
    return nvrtc


def _check(nvrtc: Any, result: Any, call: str, log: str = "") -> Any:
    err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if int(err) != 0:
        try:
            what = nvrtc.nvrtcGetErrorString(err)[1].decode(errors="replace")
        except Exception:  # noqa: BLE001 - the message must not hide the original failure
            what = repr(err)
        raise KernelCompileError(f"{call} failed: {what}" + (f"\nNVRTC log:\n{log}" if log else ""))
    return values[0] if len(values) == 1 else values


def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor); KernelCompileError when NVRTC cannot be loaded (names the pip package)."""
    nvrtc = import_nvrtc()
    try:
        major, minor = _check(nvrtc, nvrtc.nvrtcVersion(), "nvrtcVersion")
    except KernelCompileError:
        raise
    except Exception as e:  # cuda.bindings raises its own error type when libnvrtc is not found
        raise KernelCompileError(
            f"NVRTC cannot be loaded ({e}); install it with `pip install nvidia-cuda-nvrtc` (CUDA 13; `nvidia-cuda-nvrtc-cu12` for CUDA 12)"
        ) from None
    return int(major), int(minor)


def supported_archs() -> list[int]:
    """The compute capabilities (major * 10 + minor) this NVRTC can compile a CUBIN for."""
    nvrtc = import_nvrtc()
    nvrtc_version()
    return [int(a) for a in _check(nvrtc, nvrtc.nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs")]


def compile_source(source: str, name: str, arch: int, *, options: tuple[str, ...] = ()) -> CompiledKernel:
    """Compile CUDA `source` (file name `name`, for messages) for compute capability `arch` (e.g. 87).

    A CUBIN for `arch` when this NVRTC supports it; for a GPU newer than this NVRTC, PTX for the newest
    architecture it supports (the driver compiles that PTX for the GPU at load). Raises
    KernelCompileError with NVRTC's log when the source does not compile, or when `arch` is older than
    anything this NVRTC supports.
    """
    nvrtc = import_nvrtc()
    archs = supported_archs()
    if arch in archs:
        target, kind = f"--gpu-architecture=sm_{arch}", "cubin"
    else:
        older = [a for a in archs if a <= arch]
        if not older:
            major, minor = nvrtc_version()
            raise KernelCompileError(
                f"{name}: NVRTC {major}.{minor} cannot compile for compute capability {arch // 10}.{arch % 10} "
                f"(it supports {archs[0] // 10}.{archs[0] % 10} and newer); use the NVRTC of an older CUDA "
                "(CUDA 12 still targets sm_72, Jetson Xavier)"
            )
        target, kind = f"--gpu-architecture=compute_{max(older)}", "ptx"
    prog = _check(nvrtc, nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        opts = [o.encode() for o in (target, *NVRTC_OPTIONS, *options)]
        result = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        size = _check(nvrtc, nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        # Output buffers are bytearrays: NVRTC writes into them, and writing into a `bytes` object corrupts
        # the interpreter (b" " * 1 is CPython's shared one-byte b" ", and an empty log is exactly 1 byte).
        buf = bytearray(size)
        _check(nvrtc, nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
        log = bytes(buf).rstrip(b"\0 ").decode(errors="replace").strip()
        _check(nvrtc, result, f"nvrtcCompileProgram({name}, {' '.join(o.decode() for o in opts)})", log)
        if kind == "cubin":
            size = _check(nvrtc, nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
            image = bytearray(size)
            _check(nvrtc, nvrtc.nvrtcGetCUBIN(prog, image), "nvrtcGetCUBIN")
        else:
            size = _check(nvrtc, nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
            image = bytearray(size)
            _check(nvrtc, nvrtc.nvrtcGetPTX(prog, image), "nvrtcGetPTX")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    return CompiledKernel(source_name=name, arch=arch, image=bytes(image), kind=kind, log=log)


def cache_dir() -> Path:
    """$DF2INFER_KERNEL_CACHE, else $XDG_CACHE_HOME/df2infer/kernels, else ~/.cache/df2infer/kernels."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "df2infer" / "kernels"


def cache_key(source: str, arch: int, options: tuple[str, ...] = ()) -> str:
    """Hash of everything the compiled image depends on: source, architecture, NVRTC version, options."""
    major, minor = nvrtc_version()
    h = hashlib.sha256()
    for part in (source, str(arch), f"{major}.{minor}", *NVRTC_OPTIONS, *options):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def compiled_kernel(source_name: str, arch: int, *, options: tuple[str, ...] = (), directory: Path | None = None) -> CompiledKernel:
    """The package kernel `source_name` compiled for `arch`, from the disk cache or compiled now and stored.

    A cache that cannot be written (read-only home) is not an error: the image is compiled in memory.
    """
    source = kernel_source(source_name)
    root = Path(directory) if directory is not None else cache_dir()
    key = cache_key(source, arch, options)
    stem = f"{Path(source_name).stem}-sm{arch}-{key}"
    for kind in ("cubin", "ptx"):
        path = root / f"{stem}.{kind}"
        if path.is_file():
            return CompiledKernel(source_name, arch, path.read_bytes(), kind, log="")
    compiled = compile_source(source, source_name, arch, options=options)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(compiled.image)
        os.replace(tmp, root / f"{stem}.{compiled.kind}")
    except OSError as e:  # an unwritable cache costs a recompile next time, nothing else
        log.warning("kernel cache %s is not writable (%s); %s compiled in memory only", root, e, source_name)
    return compiled
