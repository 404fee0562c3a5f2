"""mypy checks the TensorRT code against `tensorrt-stubs` (TensorRT 10.13's API), the only check of those calls
possible without TensorRT installed (docs/design.md, "Testing without the hardware"; docs/tensorrt.md, "What
runs where"). It proves the calls match the documented signatures, not that an engine builds or runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import trt_stubs  # noqa: E402
from system_deps import require  # noqa: E402

FILES = [
    "df2infer/engine/builder.py",
    "df2infer/backends/tensorrt_backend.py",
    "df2infer/ops/cuda/cuda_array.py",
    "df2infer/ops/cuda/cuda_check.py",
]


# 3.10: JetPack 6's Python (mypy checks the syntax and standard library of that version); 3.11: mypy.ini's.
@pytest.mark.parametrize("python_version", ["3.10", "3.11"])
def test_tensorrt_code_typechecks_against_stubs(python_version: str) -> None:
    require(trt_stubs.installed_stubs_root() is not None, "tensorrt-stubs", "pip install --no-deps tensorrt-stubs==10.13.0.35.1")
    mypy_api = pytest.importorskip("mypy.api")
    trt_stubs.prepare_stubs(ROOT / "build" / "typing-stubs")  # the path mypy.ini's mypy_path names
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        # follow-imports=silent: imported project modules give their types but are not themselves reported here.
        stdout, stderr, status = mypy_api.run(
            ["--config-file", "mypy.ini", "--follow-imports=silent", "--python-version", python_version, "--no-incremental", *FILES]
        )
    finally:
        os.chdir(cwd)
    assert status == 0, f"mypy (Python {python_version}) failed:\n{stdout}\n{stderr}"


def test_stub_fixer_only_renames_keyword_params() -> None:
    line = "    def f(self, in: list[int], out: list[int], input: int = None, axis: int) -> None:\n"
    fixed = trt_stubs.fix_stub_text(line)
    assert fixed == "    def f(self, in_: list[int], out: list[int], input: int = None, axis: int = ...) -> None:\n"
    assert trt_stubs.fix_stub_text("x = 'in: a'\n") == "x = 'in: a'\n"
