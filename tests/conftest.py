"""Loud skips: in CI (`CI` set, as CI services do), a test that would skip because something `make test`
installs is missing fails instead, so a broken set-up cannot pass as a green run with fewer tests.

- Python packages: `pytest.importorskip` of a package that `make setup` installs (MAKE_INSTALLS);
- system packages and tools: tests call `system_deps.require(...)` (tests/system_deps.py), which fails under CI.
Everywhere else a skip stays a skip and says what to install; `pytest -ra` lists them all with their reasons.
What legitimately stays a skip in CI (no GPU, no nvcc in the image, no network) is listed in docs/testing.md.
"""

from __future__ import annotations

import re

import pytest
from system_deps import in_ci

# Top-level modules of the packages `make setup` installs (pyproject.toml extras export, dev, cpu, retrieval;
# cuda-bindings 13 in the venv, 12 in build/cuda-bindings-12).
MAKE_INSTALLS = {
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxslim",
    "onnxconverter_common",
    "yaml",
    "cuda",
    "mypy",
    "matplotlib",
    "faiss",
    "pymilvus",
    "milvus_lite",
    "ray",
    "nvidia",
    "av",
    "cv2",
    "pycocotools",
}


def _missing_module(report) -> str | None:
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    m = re.search(r"could not import '([\w.]+)'", str(report.longrepr[2]))
    return m.group(1) if m and m.group(1).split(".")[0] in MAKE_INSTALLS else None


def _fail_in_ci(report) -> None:
    mod = _missing_module(report) if in_ci() else None
    if mod is not None:
        report.outcome = "failed"
        report.longrepr = f"CI: {mod} is not importable, but `make setup` installs it ({report.longrepr[2]})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_in_ci(outcome.get_result())
