"""benchmarks/gpu_check.py without a GPU: its pure parts, and that it stops clearly when there is no device."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bandwidth_floor_math(gc):
    # H100 SXM (HBM3): 2619 MHz memory clock, 5120-bit bus -> 3352 GB/s, NVIDIA's quoted 3.35 TB/s
    assert gc.peak_bandwidth_gbs(2_619_000, 5120) == pytest.approx(3352.32)
    # Jetson AGX Orin (LPDDR5): 3200 MHz, 256-bit -> 204.8 GB/s
    assert gc.peak_bandwidth_gbs(3_200_000, 256) == pytest.approx(204.8)
    assert gc.floor_us(1_000_000_000, 1000.0) == pytest.approx(1000.0)
    # 2 frames of 10x20 and 1x1 into 4x6 float16: 600 + 3 bytes read, 2 * 3 * 24 * 2 written
    assert gc.letterbox_bytes([(10, 20), (1, 1)], (4, 6), 2) == 603 + 288
    assert gc.paste_bytes(3, 28, 1000) == 3 * 28 * 28 * 4 + 1000
    assert gc.landmark_bytes(10, 56) == 10 * (56 * 56 * 4 + 12)


def test_table_formatting(gc):
    rows = [{"kernel": "paste", "kernel_us": 12.3456, "speedup": None}, {"kernel": "landmarks_torchvision", "kernel_us": 7.0}]
    text = gc.format_table(rows, [("kernel", "kernel"), ("kernel_us", "us"), ("speedup", "x")])
    lines = text.splitlines()
    assert lines[0].split() == ["kernel", "us", "x"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["paste", "12.35", "-"] and lines[3].split() == ["landmarks_torchvision", "7", "-"]
    # columns line up: every row has the same start offset for the second column
    assert len({ln.index(ln.split()[1], len(ln.split()[0])) for ln in lines}) == 1


def test_median_time_runs_and_syncs(gc):
    calls = []
    t = gc.median_time_us(lambda: calls.append("f"), lambda: calls.append("s"), iters=4, warmup=2)
    assert t >= 0 and calls.count("f") == 6 and calls.count("s") == 5


def test_without_a_gpu_it_says_so(gc, tmp_path, capsys):
    try:
        from df2infer.ops.cuda.launch import CudaDriver

        CudaDriver(0).close()
    except Exception:  # noqa: BLE001 - any failure here means: no usable GPU, which is this test's case
        pass
    else:
        pytest.skip("a CUDA device is present: gpu_check.py would run for real")
    assert gc.main(["--json", str(tmp_path / "x.json")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
