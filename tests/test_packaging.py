"""What a user installs: the wheel's packages and data, and the runtime in a fresh virtual environment.

- every package folder is listed in pyproject (the list is explicit because of the package-dir mapping);
- every package-data pattern matches a file (pyproject once shipped patterns that matched nothing);
- the built wheel (`pip wheel --no-deps`) has exactly the top-level packages `df2infer` and `df2infer_export`
  (no `export`, which would collide in site-packages) and carries the bundled model and the export data;
- (slow) that wheel installed WITHOUT extras into a fresh venv imports, and `df2infer.load()` says which
  extra brings ONNX Runtime (it is not a core dependency: `cpu` or `gpu`, never both); with the `cpu` extra
  added it runs `df2infer.load().predict` on an image, from a directory outside the source tree, without
  importing torch.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]


def _folder(package: str) -> Path:
    top, *rest = package.split(".")
    return ROOT / PACKAGE_DIR[top] / Path(*rest)


def test_every_package_folder_is_listed():
    listed = set(SETUPTOOLS["packages"])
    found = set()
    for top, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join((top, *rel.parts)))
    assert found == listed, f"pyproject [tool.setuptools] packages: missing {sorted(found - listed)}, stale {sorted(listed - found)}"


def test_package_data_patterns_match_files():
    for package, patterns in SETUPTOOLS["package-data"].items():
        for pattern in patterns:
            assert glob.glob(str(_folder(package) / pattern)), f"package-data {package}: {pattern!r} matches no file"


def test_no_code_imports_the_folder_name_export():
    bad = re.compile(r"^\s*(from\s+export[\s.]|import\s+export\b)", re.M)
    offenders = [
        str(p.relative_to(ROOT))
        for d in ("df2infer", "export", "tests", "benchmarks")
        for p in (ROOT / d).rglob("*.py")
        if bad.search(p.read_text())
    ]
    assert not offenders, f"import the PyTorch package as df2infer_export, not export: {offenders}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a clean copy of what the wheel is made of: an in-tree build would reuse (and could ship)
    # a stale build/lib left by an earlier build.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in set(PACKAGE_DIR.values()):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (whl,) = out.glob("df2infer-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_top_level_packages_and_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"df2infer", "df2infer_export"}, f"{wheel.name}: top-level entries {sorted(top)}"
    for want in (
        "df2infer/models/default.onnx",
        "df2infer/data/categories.json",
        "df2infer_export/data/onnx_ops_tensorrt10.tsv",
        "df2infer_export/configs/small.yaml",
        "df2infer_export/model/__init__.py",
    ):
        assert want in names, f"{wheel.name} lacks {want}"


@pytest.mark.slow
def test_fresh_venv_without_extras_imports_then_predicts_with_the_cpu_extra(wheel, tmp_path):
    """ONNX Runtime is an extra (`cpu`, or `gpu` / `gpu-cu12` for onnxruntime-gpu; the two distributions share one
    package directory, so the core cannot pick either). So, in one fresh venv: the wheel WITHOUT extras installs,
    imports, and `df2infer.load()` fails with an ImportError naming both extras; then `<wheel>[cpu]` is added and
    `df2infer.load().predict` runs on an image, without importing torch."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}

    def pip_install(spec: str, what: str) -> None:
        proc = subprocess.run([str(py), "-m", "pip", "install", "-q", spec], capture_output=True, text=True, env=clean_env)
        assert proc.returncode == 0, f"pip install {what} failed:\n{proc.stdout}\n{proc.stderr}"

    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(py), "-c", script], cwd=tmp_path, capture_output=True, text=True, env=clean_env)

    pip_install(str(wheel), f"{wheel.name} (no extras)")
    no_ort = run(
        "import importlib.util, df2infer\n"
        "assert 'site-packages' in df2infer.__file__, df2infer.__file__\n"
        "assert importlib.util.find_spec('onnxruntime') is None, 'onnxruntime came with the core dependencies'\n"
        "try:\n"
        "    df2infer.load(device='cpu')\n"
        "except ImportError as e:\n"
        "    print('refused:', e)\n"
    )
    assert no_ort.returncode == 0 and "refused:" in no_ort.stdout, f"without extras:\n{no_ort.stdout}\n{no_ort.stderr}"
    assert "df2infer[cpu]" in no_ort.stdout and "df2infer[gpu]" in no_ort.stdout, no_ort.stdout

    pip_install(f"{wheel}[cpu]", f"{wheel.name}[cpu]")
    proc = run(
        "import sys, numpy as np, cv2, df2infer\n"
        "img = np.full((240, 320, 3), 200, np.uint8); cv2.rectangle(img, (90, 40), (230, 210), (40, 60, 160), -1)\n"
        "cv2.imwrite('photo.jpg', img)\n"
        "model = df2infer.load(device='cpu')\n"
        "res = model.predict('photo.jpg')\n"
        "assert not res.failures and res[0].image_size == (240, 320), res\n"
        "assert 'torch' not in sys.modules, 'the runtime imported torch'\n"
        "print('ok', model, len(res[0]))\n"
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, f"predict in the fresh venv failed:\n{proc.stdout}\n{proc.stderr}"
