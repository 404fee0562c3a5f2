"""Whether the GPU kernels can run here and, if not, why; on a Jetson, the settings its latencies depend on.

`gpu_kernels_status()` -> (on, why): the CUDA kernels of df2infer.ops.cuda need cuda-bindings' driver module, a
CUDA driver with a device, and NVRTC able to compile for that device's compute capability; the first missing one
is the reason. `jetson_info()` reads the L4T release (/etc/nv_tegra_release), the power mode (`nvpmodel -q`) and
whether `jetson_clocks` pinned the clocks (each CPU's scaling_min_freq equal to its scaling_max_freq, which is what
jetson_clocks sets); the readers are parameters so tests give fixed texts. `df2infer info` and the bench header
print both.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
CPUFREQ = Path("/sys/devices/system/cpu")


def gpu_kernels_status(device: int = 0) -> tuple[bool, str]:
    """(True, "sm_87, NVRTC 12.6") or (False, the first reason they cannot run: no cuda-bindings, no driver or
    device, no NVRTC, an architecture NVRTC cannot compile for)."""
    try:
        from cuda.bindings import driver
    except ImportError:
        return False, "cuda-bindings is not installed (pip install 'df2infer[gpu]'; on a Jetson 'df2infer[jetson]')"
    from df2infer.ops.cuda.compiler import KernelCompileError, nvrtc_version, supported_archs

    try:
        err = driver.cuInit(0)
        err = err[0] if isinstance(err, tuple) else err
        if int(err) != 0:
            return False, f"no usable CUDA driver (cuInit returned {getattr(err, 'name', err)})"
        err, dev = driver.cuDeviceGet(device)
        if int(err) != 0:
            return False, f"no CUDA device {device} (cuDeviceGet returned {getattr(err, 'name', err)})"
        attr = driver.CUdevice_attribute
        major = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
        minor = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
        if int(major[0]) != 0 or int(minor[0]) != 0:
            return False, f"cannot read device {device}'s compute capability ({major[0]}, {minor[0]})"
        arch = int(major[1]) * 10 + int(minor[1])
    except (OSError, RuntimeError) as e:  # a missing libcuda
        return False, f"no usable CUDA driver ({type(e).__name__}: {e})"
    try:
        version = nvrtc_version()
        archs = supported_archs()
    except KernelCompileError as e:
        return False, f"no NVRTC: {e}"
    if arch not in archs:
        return False, f"sm_{arch} is not among the architectures NVRTC {version[0]}.{version[1]} compiles for ({archs})"
    return True, f"sm_{arch}, NVRTC {version[0]}.{version[1]}"


def parse_tegra_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, GCID: ...' -> '36.4.3' (the L4T version; JetPack 6.2 ships 36.4.3)."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def parse_nvpmodel(text: str) -> str | None:
    """`nvpmodel -q` output ('NV Power Mode: MAXN\\n0') -> 'MAXN (mode 0)'."""
    m = re.search(r"NV Power Mode:\s*(\S.*?)\s*$", text, re.M)
    if not m:
        return None
    ids = re.findall(r"^\s*(\d+)\s*$", text, re.M)
    return f"{m.group(1)} (mode {ids[0]})" if ids else m.group(1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _nvpmodel_query() -> str | None:
    try:
        done = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def clocks_pinned(cpufreq: Path = CPUFREQ) -> bool | None:
    """True when every CPU's minimum frequency is its maximum (jetson_clocks' setting), None when unreadable."""
    pairs = []
    for cpu in sorted(cpufreq.glob("cpu[0-9]*")):
        lo, hi = _read(cpu / "cpufreq" / "scaling_min_freq"), _read(cpu / "cpufreq" / "scaling_max_freq")
        if lo is not None and hi is not None:
            pairs.append(lo.strip() == hi.strip())
    return all(pairs) if pairs else None


def jetson_info(
    release: Callable[[], str | None] = lambda: _read(TEGRA_RELEASE),
    nvpmodel: Callable[[], str | None] = _nvpmodel_query,
    clocks: Callable[[], bool | None] = clocks_pinned,
) -> dict | None:
    """{'l4t', 'power_mode', 'jetson_clocks'} on a Jetson (None where a value cannot be read), None elsewhere."""
    text = release()
    if text is None:
        return None
    mode = nvpmodel()
    return {
        "l4t": parse_tegra_release(text) or text.strip()[:80],
        "power_mode": parse_nvpmodel(mode) if mode is not None else None,
        "jetson_clocks": clocks(),
    }


__all__ = ["clocks_pinned", "gpu_kernels_status", "jetson_info", "parse_nvpmodel", "parse_tegra_release"]
