"""`df2infer info` and the bench header say whether the GPU kernels are on and why not; on a Jetson the bench header
records the L4T version, the power mode and jetson_clocks (df2infer.ops.cuda.status), read here from fixed texts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import strict_gpu as sg

from df2infer.bench import report as bench_report
from df2infer.ops.cuda import status

ROOT = Path(__file__).resolve().parent.parent

# /etc/nv_tegra_release of JetPack 6.2 (L4T 36.4.3) and `nvpmodel -q` on an Orin, as NVIDIA's tools print them
TEGRA = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
NVPMODEL = "NV Power Mode: MAXN\n0\n"
NVPMODEL_15W = "NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n"


def test_tegra_release_and_power_mode_are_parsed():
    assert status.parse_tegra_release(TEGRA) == "36.4.3"
    assert status.parse_tegra_release("# R35 (release), REVISION: 5.0, GCID: 1") == "35.5.0"
    assert status.parse_tegra_release("not a release file") is None
    assert status.parse_nvpmodel(NVPMODEL) == "MAXN (mode 0)"
    assert status.parse_nvpmodel(NVPMODEL_15W) == "15W (mode 2)"
    assert status.parse_nvpmodel("") is None


def test_clocks_pinned_reads_min_equal_max(tmp_path):
    for cpu, (lo, hi) in {"cpu0": (2201600, 2201600), "cpu1": (2201600, 2201600)}.items():
        d = tmp_path / cpu / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_min_freq").write_text(f"{lo}\n")
        (d / "scaling_max_freq").write_text(f"{hi}\n")
    assert status.clocks_pinned(tmp_path) is True
    (tmp_path / "cpu1" / "cpufreq" / "scaling_min_freq").write_text("115200\n")  # one CPU left to scale down
    assert status.clocks_pinned(tmp_path) is False
    assert status.clocks_pinned(tmp_path / "none") is None


def test_jetson_info_and_the_bench_header_line():
    info = status.jetson_info(release=lambda: TEGRA, nvpmodel=lambda: NVPMODEL, clocks=lambda: True)
    assert info == {"l4t": "36.4.3", "power_mode": "MAXN (mode 0)", "jetson_clocks": True}
    assert status.jetson_info(release=lambda: None) is None  # not a Jetson
    partial = status.jetson_info(release=lambda: TEGRA, nvpmodel=lambda: None, clocks=lambda: None)
    assert bench_report.jetson_line(partial) == "L4T 36.4.3, power mode unknown, jetson_clocks unknown"
    text = bench_report.gpu_lines({"cpu": "ARMv8", "gpu_kernels": "on (sm_87, NVRTC 12.6)", "jetson": info})
    assert "- GPU kernels: on (sm_87, NVRTC 12.6)" in text
    assert "- Jetson: L4T 36.4.3, power mode MAXN (mode 0), jetson_clocks on" in text


def test_kernels_on_the_stand_in_gpu_and_off_with_the_reason(strict_gpu):
    pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC (cuda-bindings) is not installed (make setup installs it)")
    strict_gpu(devices=[sg.Device(0, name="Orin", cc=(8, 7))])
    on, why = status.gpu_kernels_status()
    assert on and why.startswith("sm_87, NVRTC "), why


def test_kernels_off_for_an_architecture_nvrtc_cannot_compile(strict_gpu):
    pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC (cuda-bindings) is not installed (make setup installs it)")
    strict_gpu(devices=[sg.Device(0, name="Tesla K80", cc=(3, 7))])  # Kepler: no current NVRTC compiles for sm_37
    on, why = status.gpu_kernels_status()
    assert not on and why.startswith("sm_37 is not among the architectures NVRTC"), why


def test_info_prints_the_kernels_status():
    done = subprocess.run(
        [sys.executable, "-m", "df2infer", "info", str(ROOT / "df2infer" / "models" / "default.onnx")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("gpu kernels:"))
    assert ": on (" in line or ": off: " in line  # this machine has no GPU driver: off, with the reason
