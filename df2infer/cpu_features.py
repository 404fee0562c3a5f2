"""The CPU features that decide whether an INT8 model runs right on this CPU, and how fast.

    cpu_features()                      this CPU (cached): CpuFeatures
    parse_cpu_features(text, machine)   the pure part, tested on fixed /proc/cpuinfo texts
    arm_hwcap_flags(hwcap, hwcap2)      ARM feature names from the kernel's AT_HWCAP / AT_HWCAP2 bits
    int8_refusal(weight_range, feats)   None when INT8 weights in `weight_range` are exact on that CPU,
                                        else the reason (a sentence naming the features)

Why it matters. ONNX Runtime's x86 INT8 kernels multiply u8 activations by s8 weights. Without VNNI
(AVX2, and AVX-512 without VNNI) they use vpmaddubsw, which adds each *pair* of products into a
saturating int16: 2 * 255 * 127 = 64770 does not fit in 32767, so large activations times large
weights are silently clipped and the detections collapse. With weights in [-64, 64] (7-bit,
onnxruntime.quantization's reduce_range) a pair is at most 2 * 255 * 64 = 32640 and nothing
saturates. VNNI (AVX512-VNNI, AVX-VNNI, AMX) accumulates in int32, and ARM's kernels (NEON widening
multiplies, dotprod sdot/udot, i8mm) accumulate in int32 too: 8-bit weights are exact there.

On Linux ARM the features come from getauxval(AT_HWCAP / AT_HWCAP2), what the kernel (or qemu-user)
grants this process; /proc/cpuinfo is the fallback. Under qemu-user emulation /proc/cpuinfo describes
the host's x86 CPU while the hwcaps describe the emulated one (benchmarks/arm_check.sh checks both).
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from collections.abc import Iterable

X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
ARM_MACHINES = ("aarch64", "arm64", "armv8l", "armv8b")
# Largest |weight| with no int16 saturation in ONNX Runtime's u8 x s8 pair sums (vpmaddubsw).
INT16_PAIR_SAFE_WEIGHT = 32767 // (2 * 255)  # 64


# Linux arch/arm64/include/uapi/asm/hwcap.h: bit -> the name /proc/cpuinfo's `Features` line uses.
# Only the bits worth naming here (SIMD and the integer / bf16 dot products).
ARM_HWCAP_BITS = {0: "fp", 1: "asimd", 20: "asimddp", 22: "sve"}
ARM_HWCAP2_BITS = {1: "sve2", 9: "svei8mm", 13: "i8mm", 14: "bf16"}
AT_HWCAP, AT_HWCAP2 = 16, 26  # <elf.h> auxiliary vector keys


@dataclasses.dataclass(frozen=True)
class CpuFeatures:
    """What the INT8 kernels care about. `flags` is the raw set read (x86 `flags`, ARM `Features`)."""

    machine: str
    model: str = ""
    flags: frozenset[str] = frozenset()
    known: bool = True  # False when the flags could not be read (other OS, no /proc/cpuinfo)

    @property
    def is_x86(self) -> bool:
        return self.machine.lower() in X86_MACHINES

    @property
    def is_arm(self) -> bool:
        return self.machine.lower() in ARM_MACHINES

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def avx512_vnni(self) -> bool:
        return "avx512_vnni" in self.flags or "avx512vnni" in self.flags

    @property
    def avx_vnni(self) -> bool:
        return "avx_vnni" in self.flags

    @property
    def amx_int8(self) -> bool:
        return "amx_int8" in self.flags

    @property
    def vnni(self) -> bool:
        """x86 int8 dot products that accumulate in int32 (no int16 pair saturation)."""
        return self.avx512_vnni or self.avx_vnni or self.amx_int8

    @property
    def dotprod(self) -> bool:
        return "asimddp" in self.flags or "dotprod" in self.flags

    @property
    def i8mm(self) -> bool:
        return "i8mm" in self.flags

    def summary(self) -> str:
        """One line for `df2infer info` and the bench header."""

        def yn(b: bool) -> str:
            return "yes" if b else "no"

        head = f"{self.machine}" + (f" ({self.model})" if self.model else "")
        if not self.known:
            return f"{head}: features unknown (no /proc/cpuinfo)"
        if self.is_x86:
            return (
                f"{head}: AVX2 {yn(self.avx2)}, AVX-512 {yn(self.avx512)}, AVX512-VNNI {yn(self.avx512_vnni)}, "
                f"AVX-VNNI {yn(self.avx_vnni)}, AMX-INT8 {yn(self.amx_int8)}"
            )
        if self.is_arm:
            return f"{head}: dotprod {yn(self.dotprod)}, i8mm {yn(self.i8mm)}"
        return head

    def as_dict(self) -> dict:
        keys = ("avx2", "avx512", "avx512_vnni", "avx_vnni", "amx_int8") if self.is_x86 else ("dotprod", "i8mm") if self.is_arm else ()
        return {"machine": self.machine, "model": self.model, "known": self.known, **{k: getattr(self, k) for k in keys}}


def parse_cpu_features(cpuinfo: str, machine: str) -> CpuFeatures:
    """CpuFeatures from the text of /proc/cpuinfo and platform.machine(). Reads the first processor's
    `flags` (x86) or `Features` (ARM) line and its `model name` (or `CPU part` / `Hardware`)."""
    flags: Iterable[str] = ()
    model = ""
    found = False
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("flags", "features") and not found:
            flags, found = value.split(), True
        elif key in ("model name", "hardware") and not model:
            model = value.strip()
    return CpuFeatures(machine=machine, model=model, flags=frozenset(f.lower() for f in flags), known=found)


def arm_hwcap_flags(hwcap: int, hwcap2: int) -> frozenset[str]:
    """The feature names (as in /proc/cpuinfo's `Features`) of the set bits of AT_HWCAP and AT_HWCAP2."""
    names = {n for bit, n in ARM_HWCAP_BITS.items() if hwcap >> bit & 1}
    return frozenset(names | {n for bit, n in ARM_HWCAP2_BITS.items() if hwcap2 >> bit & 1})


def read_hwcaps() -> tuple[int, int] | None:
    """(AT_HWCAP, AT_HWCAP2) of this process from the C library's getauxval; None where there is none."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        getauxval = libc.getauxval
    except (OSError, AttributeError, TypeError):  # no libc found by that name, or a libc without getauxval (musl < 1.1.0)
        return None
    getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    return int(getauxval(AT_HWCAP)), int(getauxval(AT_HWCAP2))


def _arm_linux_features(machine: str, cpuinfo: str | None, hwcaps: tuple[int, int] | None) -> CpuFeatures:
    # The hwcaps decide the flags; /proc/cpuinfo only names the model, and only when it describes an ARM CPU
    # (its `Features` line; under qemu-user it shows the host's x86 `flags` and `model name`).
    if hwcaps is None or hwcaps == (0, 0):
        return parse_cpu_features(cpuinfo, machine) if cpuinfo is not None else CpuFeatures(machine=machine, known=False)
    model = ""
    if cpuinfo is not None and any(line.lower().startswith("features") for line in cpuinfo.splitlines()):
        model = parse_cpu_features(cpuinfo, machine).model
    return CpuFeatures(machine=machine, model=model, flags=arm_hwcap_flags(*hwcaps))


def _macos_arm_features(machine: str) -> CpuFeatures:
    # Every Apple silicon core has dotprod; i8mm from M2 on (sysctl hw.optional.arm.FEAT_I8MM).
    import subprocess

    flags = {"dotprod"}
    try:
        out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_I8MM"], capture_output=True, text=True, timeout=2).stdout.strip()
        if out == "1":
            flags.add("i8mm")
    except (OSError, subprocess.SubprocessError):
        pass
    return CpuFeatures(machine=machine, model=platform.processor(), flags=frozenset(flags))


def read_cpuinfo() -> str | None:
    """The text of /proc/cpuinfo; None where there is none (macOS, Windows, a chroot without /proc)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This machine's CpuFeatures (Linux ARM: getauxval's hwcaps, else /proc/cpuinfo; other Linux:
    /proc/cpuinfo; macOS on Apple silicon: sysctl; elsewhere the flags are unknown, which int8_refusal
    treats as 'no VNNI' on x86)."""
    machine = platform.machine() or "unknown"
    cpuinfo = read_cpuinfo()
    if machine.lower() in ARM_MACHINES and platform.system() == "Linux":
        return _arm_linux_features(machine, cpuinfo, read_hwcaps())
    if cpuinfo is not None:
        return parse_cpu_features(cpuinfo, machine)
    if platform.system() == "Darwin" and machine.lower() in ARM_MACHINES:
        return _macos_arm_features(machine)
    return CpuFeatures(machine=machine, model=platform.processor(), known=False)


def int8_refusal(weight_range: tuple[int, int] | list[int] | None, features: CpuFeatures) -> str | None:
    """None when an INT8 model whose weights span `weight_range` (min, max; None = not recorded)
    computes exactly in ONNX Runtime on a CPU with `features`; otherwise why not, in one sentence."""
    if not features.is_x86 or features.vnni:
        return None
    if weight_range is not None and max(abs(int(v)) for v in weight_range) <= INT16_PAIR_SAFE_WEIGHT:
        return None
    what = "its INT8 weight range is not recorded" if weight_range is None else f"its INT8 weights span {list(weight_range)}"
    cpu = features.summary() if features.known else f"{features.machine} with unknown features"
    return (
        f"{what}, and on this CPU ({cpu}) ONNX Runtime's INT8 kernels add u8 x s8 products in "
        f"saturating int16 pairs (no VNNI), which silently clips them for weights beyond "
        f"[-{INT16_PAIR_SAFE_WEIGHT}, {INT16_PAIR_SAFE_WEIGHT}]; use an INT8 file made with 7-bit weights "
        f"(df2infer_export.precision.to_int8_qdq(weight_bits=7), the default) or the FP32 model"
    )
