"""Test-only hook: with DF2INFER_TEST_STRICT_GPU=1 and this folder on PYTHONPATH, a Python process (the df2infer
CLI, a script) runs on the strict CUDA/TensorRT stand-ins of tests/strict_gpu.py. Only test code sets the
variable; the shipped package never reads it. Options: tests/strict_gpu.py, install_from_environment."""

import os

if os.environ.get("DF2INFER_TEST_STRICT_GPU") == "1":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import strict_gpu

    strict_gpu.install_from_environment()
