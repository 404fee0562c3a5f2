"""What a test needs from the machine: a skip that names what to install, or, in CI, a failure.

`make test` installs the system packages (Makefile: system-deps): in CI (`CI` set) their absence means the
set-up is broken, and a test skipped for it would hide that. Elsewhere (a laptop without apt) the test skips
and says what to install."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(ok: bool, what: str, install: str) -> None:
    """Nothing when ok; else skip naming `install`, or fail under CI (the Makefile installs `what`)."""
    if ok:
        return
    msg = f"{what} is missing; to run this test: {install}"
    if in_ci():
        pytest.fail(f"CI: {msg} (`make test` installs it, so a missing one is a broken set-up)", pytrace=False)
    pytest.skip(msg)


def require_cxx() -> None:
    """A C++ compiler for the CPU shim of the CUDA kernels (df2infer.ops.cuda.shim: $CXX, g++ or c++)."""
    import shutil

    ok = bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++"))
    require(ok, "a C++ compiler (g++) for the CUDA kernel shim", "apt-get install g++ (make test does), or set $CXX")
