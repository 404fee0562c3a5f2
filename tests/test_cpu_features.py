"""df2infer.cpu_features: feature parsing on fixed /proc/cpuinfo texts (no dependence on this CPU),
and the INT8 refusal rule the runtime applies."""

from __future__ import annotations

import pytest

from df2infer.cpu_features import (
    INT16_PAIR_SAFE_WEIGHT,
    CpuFeatures,
    arm_hwcap_flags,
    cpu_features,
    int8_refusal,
    parse_cpu_features,
    read_hwcaps,
)

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes vpclmulqdq
processor\t: 1
flags\t\t: fpu avx512f avx512_vnni
"""
SKYLAKE_AVX512 = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t: sse4_2 avx avx2 avx512f avx512bw avx512dq\n"
CASCADE_LAKE = "model name\t: Intel(R) Xeon(R) Platinum 8259CL\nflags\t: avx2 avx512f avx512bw avx512_vnni\n"
ALDER_LAKE = "model name\t: 12th Gen Intel(R) Core(TM) i7-12700\nflags\t: avx2 avx_vnni\n"
SAPPHIRE = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t: avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n"
JETSON_ORIN = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm
CPU implementer\t: 0x41
CPU part\t: 0xd42
"""
GRAVITON3 = "Features\t: fp asimd asimddp sve i8mm bf16\n"
PI3 = "Features\t: fp asimd evtstrm crc32 cpuid\nHardware\t: BCM2835\n"


def test_x86_avx2_without_vnni_reads_the_first_processor_only():
    f = parse_cpu_features(EPYC_AVX2, "x86_64")
    assert f.is_x86 and f.known and f.model == "AMD EPYC"
    assert f.avx2 and not f.avx512 and not f.avx512_vnni and not f.avx_vnni and not f.vnni
    assert f.summary() == ("x86_64 (AMD EPYC): AVX2 yes, AVX-512 no, AVX512-VNNI no, AVX-VNNI no, AMX-INT8 no")


@pytest.mark.parametrize("text,vnni", [(SKYLAKE_AVX512, False), (CASCADE_LAKE, True), (ALDER_LAKE, True), (SAPPHIRE, True)])
def test_x86_vnni_kinds(text, vnni):
    f = parse_cpu_features(text, "x86_64")
    assert f.vnni is vnni
    assert f.avx512 is ("avx512f" in text)


def test_arm_features():
    orin = parse_cpu_features(JETSON_ORIN, "aarch64")
    assert orin.is_arm and orin.dotprod and not orin.i8mm and orin.summary() == "aarch64: dotprod yes, i8mm no"
    g3 = parse_cpu_features(GRAVITON3, "aarch64")
    assert g3.dotprod and g3.i8mm
    pi = parse_cpu_features(PI3, "aarch64")
    assert not pi.dotprod and pi.model == "BCM2835"


def test_unknown_flags():
    f = parse_cpu_features("", "x86_64")
    assert not f.known and "unknown" in f.summary()


def test_int16_pair_bound():
    # vpmaddubsw adds two u8 x s8 products in int16: the safe weight bound is the largest w with 2*255*w <= 32767.
    assert 2 * 255 * INT16_PAIR_SAFE_WEIGHT <= 32767 < 2 * 255 * (INT16_PAIR_SAFE_WEIGHT + 1)


@pytest.mark.parametrize(
    "text,machine",
    [
        (CASCADE_LAKE, "x86_64"),
        (ALDER_LAKE, "x86_64"),
        (SAPPHIRE, "AMD64"),
        (JETSON_ORIN, "aarch64"),
        (PI3, "aarch64"),
        (GRAVITON3, "arm64"),
    ],
)
def test_int8_8bit_weights_run_where_products_accumulate_in_int32(text, machine):
    assert int8_refusal([-127, 127], parse_cpu_features(text, machine)) is None


@pytest.mark.parametrize("text", [EPYC_AVX2, SKYLAKE_AVX512, ""])
def test_int8_8bit_weights_refused_on_x86_without_vnni(text):
    f = parse_cpu_features(text, "x86_64")
    reason = int8_refusal([-127, 127], f)
    assert reason is not None and "[-127, 127]" in reason and "VNNI" in reason
    assert "not recorded" in int8_refusal(None, f)
    # 7-bit weights (reduce_range) cannot saturate: accepted on every CPU.
    assert int8_refusal([-64, 64], f) is None


def test_this_machine_reads():
    f = cpu_features()
    assert isinstance(f, CpuFeatures) and f.machine and f.summary()


def _int8_tiny(tmp_path, weight_range):
    """The tiny deploy graph with a contract saying INT8 and `weight_range` (the refusal reads the contract)."""
    import onnx

    from df2infer.artifact import INT8_WEIGHT_RANGE_KEY, write_onnx_contract

    try:
        from tests.tiny_deploy_graph import build_tiny_deploy_graph, tiny_contract
    except ImportError:
        from tiny_deploy_graph import build_tiny_deploy_graph, tiny_contract
    m = build_tiny_deploy_graph()
    c = tiny_contract()
    c.precision = "int8"
    if weight_range is not None:
        c.model = dict(c.model, **{INT8_WEIGHT_RANGE_KEY: weight_range})
    write_onnx_contract(m, c)
    path = tmp_path / f"int8_{weight_range}.onnx"
    onnx.save(m, path)
    return path


@pytest.mark.parametrize(
    "cpu,weight_range,refused",
    [
        (EPYC_AVX2, [-127, 127], True),
        (EPYC_AVX2, None, True),
        (EPYC_AVX2, [-64, 64], False),
        (SKYLAKE_AVX512, [-127, 127], True),
        (CASCADE_LAKE, [-127, 127], False),
        (ALDER_LAKE, [-127, 127], False),
    ],
)
def test_runtime_refuses_int8_that_would_saturate(cpu, weight_range, refused, tmp_path, monkeypatch):
    import df2infer.cpu_features as cf
    from df2infer.backends.base import ModelLoadError
    from df2infer.backends.onnxruntime_backend import OnnxRuntimeBackend

    monkeypatch.setattr(cf, "cpu_features", lambda: parse_cpu_features(cpu, "x86_64"))
    path = _int8_tiny(tmp_path, weight_range)
    if refused:
        with pytest.raises(ModelLoadError, match="refusing this INT8 model.*VNNI") as e:
            OnnxRuntimeBackend(path, "cpu")
        assert str(path) in str(e.value)
    else:
        assert OnnxRuntimeBackend(path, "cpu").contract.precision == "int8"


def test_arm_runs_8bit_int8(tmp_path, monkeypatch):
    import df2infer.cpu_features as cf
    from df2infer.backends.onnxruntime_backend import OnnxRuntimeBackend

    monkeypatch.setattr(cf, "cpu_features", lambda: parse_cpu_features(JETSON_ORIN, "aarch64"))
    assert OnnxRuntimeBackend(_int8_tiny(tmp_path, [-127, 127]), "cpu").contract.precision == "int8"


def test_malformed_weight_range_names_the_file(tmp_path):
    from df2infer.backends.onnxruntime_backend import OnnxRuntimeBackend
    from df2infer.contract import ContractError

    path = _int8_tiny(tmp_path, "wide")
    with pytest.raises(ContractError, match=r"int8_wide\.onnx.*int8_weight_range.*'wide'.*\[min, max\]"):
        OnnxRuntimeBackend(path, "cpu")


# Linux arch/arm64/include/uapi/asm/hwcap.h, copied by hand: HWCAP_FP (1 << 0), HWCAP_ASIMD (1 << 1),
# HWCAP_ASIMDDP (1 << 20), HWCAP_SVE (1 << 22); HWCAP2_SVE2 (1 << 1), HWCAP2_I8MM (1 << 13), HWCAP2_BF16 (1 << 14).
HWCAP_CORTEX_A57 = (1 << 0) | (1 << 1) | (1 << 7)  # fp asimd crc32: no dot products
HWCAP_ORIN = (1 << 0) | (1 << 1) | (1 << 20)  # + asimddp (Cortex-A78AE)
HWCAP_GRAVITON3 = (1 << 0) | (1 << 1) | (1 << 20) | (1 << 22), (1 << 13) | (1 << 14)  # + sve; hwcap2: i8mm bf16


def test_arm_hwcap_bits_name_the_features():
    assert arm_hwcap_flags(HWCAP_CORTEX_A57, 0) == {"fp", "asimd"}
    assert arm_hwcap_flags(HWCAP_ORIN, 0) == {"fp", "asimd", "asimddp"}
    assert arm_hwcap_flags(*HWCAP_GRAVITON3) == {"fp", "asimd", "asimddp", "sve", "i8mm", "bf16"}
    assert arm_hwcap_flags(0, 1 << 13) == {"i8mm"} and arm_hwcap_flags(0, 1 << 14) == {"bf16"}
    # i8mm lives in AT_HWCAP2 only: bit 13 of AT_HWCAP is HWCAP_JSCVT
    assert "i8mm" not in arm_hwcap_flags(1 << 13, 0)


@pytest.mark.parametrize(
    "hwcaps,dotprod,i8mm",
    [((HWCAP_CORTEX_A57, 0), False, False), ((HWCAP_ORIN, 0), True, False), (HWCAP_GRAVITON3, True, True)],
)
def test_arm_linux_reads_the_hwcaps_not_the_hosts_cpuinfo(hwcaps, dotprod, i8mm, monkeypatch):
    """Under qemu-user, /proc/cpuinfo shows the x86 host (with avx512_vnni here) while getauxval shows the
    emulated ARM CPU: the features must come from the hwcaps, and the host's model name must not be shown."""
    import df2infer.cpu_features as cf

    monkeypatch.setattr(cf.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(cf.platform, "system", lambda: "Linux")
    monkeypatch.setattr(cf, "read_cpuinfo", lambda: CASCADE_LAKE)
    monkeypatch.setattr(cf, "read_hwcaps", lambda: hwcaps)
    cf.cpu_features.cache_clear()
    try:
        f = cf.cpu_features()
    finally:
        cf.cpu_features.cache_clear()
    assert f.is_arm and f.known and (f.dotprod, f.i8mm) == (dotprod, i8mm)
    assert "avx512_vnni" not in f.flags and f.model == ""
    assert f.summary() == f"aarch64: dotprod {'yes' if dotprod else 'no'}, i8mm {'yes' if i8mm else 'no'}"
    assert int8_refusal([-127, 127], f) is None  # ARM accumulates in int32 with or without dotprod / i8mm


def test_arm_linux_without_hwcaps_falls_back_to_cpuinfo(monkeypatch):
    import df2infer.cpu_features as cf

    monkeypatch.setattr(cf.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(cf.platform, "system", lambda: "Linux")
    monkeypatch.setattr(cf, "read_cpuinfo", lambda: JETSON_ORIN)
    for hw in (None, (0, 0)):
        monkeypatch.setattr(cf, "read_hwcaps", lambda hw=hw: hw)
        cf.cpu_features.cache_clear()
        f = cf.cpu_features()
        assert f.known and f.dotprod and not f.i8mm
    monkeypatch.setattr(cf, "read_cpuinfo", lambda: None)
    cf.cpu_features.cache_clear()
    assert not cf.cpu_features().known
    cf.cpu_features.cache_clear()


def test_this_process_has_hwcaps():
    # glibc's getauxval exists on every Linux this runs on (x86 too: there AT_HWCAP holds CPUID bits)
    import platform

    hw = read_hwcaps()
    if platform.system() == "Linux":
        assert hw is not None and all(isinstance(v, int) for v in hw)
