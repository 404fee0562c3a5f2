"""`df2infer build-engine MODEL.onnx`: a TensorRT engine from an ONNX file with the runtime's dependencies only.

Run as a subprocess on the strict stand-ins (tests/strict_gpu.py) with torch and torchvision blocked (a package of
that name on PYTHONPATH that records the import and raises), and the builder's TensorRT calls checked from the
stand-in's report: the parser given the file, a strongly typed network, the batch profile, the timing cache read
and written, the sidecar.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STATIC_ONNX_SIZE

pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed (make setup installs it)")

import strict_gpu as sg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "df2infer" / "models" / "default.onnx"  # gated heads


def blocked_env(tmp_path: Path, shim_dir: Path) -> tuple[dict, Path, Path]:
    """Stand-ins on, torch/torchvision unimportable: importing either writes its name to `marker` and raises."""
    block = tmp_path / "blocked"
    marker = tmp_path / "imported-torch.txt"
    for name in ("torch", "torchvision"):
        (block / name).mkdir(parents=True)
        (block / name / "__init__.py").write_text(
            f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\nraise ImportError('{name} is blocked by the test')\n"
        )
    report = tmp_path / "report.json"
    config = {"devices": [{"index": 0, "name": "Orin"}], "report": str(report), "shim_dir": str(shim_dir), "trt_version": "10.3.0.30"}
    env = sg.subprocess_env(config)
    env["PYTHONPATH"] = f"{block}:{env['PYTHONPATH']}"
    env["DF2INFER_KERNEL_CACHE"] = str(tmp_path / "kernels")
    return env, report, marker


def build(args: list[str], env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "df2infer", "build-engine", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def calls(report: Path, name: str) -> list[list]:
    return [entry[1:] for entry in json.loads(report.read_text())["trt_log"] if entry[0] == f"trt.{name}"]


def test_build_engine_without_torch_makes_the_engine_with_profile_cache_and_sidecar(tmp_path, static_onnx, shim_dir):
    env, report, marker = blocked_env(tmp_path, shim_dir)
    out = tmp_path / "jetson" / "model.engine"
    done = build([str(static_onnx), "--out", str(out), "--max-batch", "4", "--opt-batch", "2"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not marker.exists(), f"torch was imported: {marker.read_text()}"
    h, w = STATIC_ONNX_SIZE
    # the parser read the file; the network is strongly typed (flag bit STRONGLY_TYPED); the batch profile 1/2/4
    assert calls(report, "parse_from_file") == [[str(static_onnx.resolve())]]
    trt_flags = json.loads(report.read_text())
    assert calls(report, "create_network") == [[1 << 0]], trt_flags["trt_log"]  # STRONGLY_TYPED is bit 0 in TensorRT 10
    assert calls(report, "profile.set_shape") == [["images", [1, 3, h, w], [2, 3, h, w], [4, 3, h, w]]]
    # a first build starts an empty timing cache and saves TensorRT's
    cache = out.with_name("model.engine.timing.cache")
    assert calls(report, "config.create_timing_cache") == [["b''"]]
    assert cache.read_bytes() == b"timing cache of TensorRT 10.3.0.30 on Orin"
    # the sidecar: the ONNX file's contract and hash, the TensorRT version and GPU, the profile, strongly typed
    side = json.loads(out.with_name("model.engine.json").read_text())
    assert side["onnx_sha256"] == hashlib.sha256(static_onnx.read_bytes()).hexdigest()
    assert side["tensorrt_version"] == "10.3.0.30" and side["gpu_name"] == "Orin"
    assert side["profile"] == {"min": 1, "opt": 2, "max": 4} and side["strongly_typed"] is True
    assert side["precision"] == "fp32" and side["contract"]["gated_heads"] is False
    assert (side["contract"]["input_height"], side["contract"]["input_width"]) == (h, w)
    assert out.read_bytes().startswith(sg.ENGINE_MAGIC)

    # a rebuild reads the saved cache, and TensorRT accepts it (same version, same GPU)
    done = build([str(static_onnx), "--out", str(out), "--max-batch", "4"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert calls(report, "config.set_timing_cache") == [[repr(cache.read_bytes()), True]]
    assert not marker.exists()


def test_a_gated_head_file_is_refused_naming_the_command_that_makes_a_static_one(tmp_path, shim_dir):
    env, report, marker = blocked_env(tmp_path, shim_dir)
    out = tmp_path / "model.engine"
    done = build([str(BUNDLED), "--out", str(out)], env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert str(BUNDLED) in done.stderr and "gated" in done.stderr
    assert "df2infer export CHECKPOINT.pt --out DIR --heads static" in done.stderr
    assert not out.exists() and calls(report, "Builder") == []  # refused before TensorRT was asked
    assert not marker.exists()


def test_the_builder_module_imports_no_torch():
    """The same check in one process: importing the builder and the verb leaves torch out of sys.modules."""
    code = (
        "import sys, df2infer.engine.builder, df2infer.apps.build_engine, df2infer.apps.main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'df2infer_export')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
