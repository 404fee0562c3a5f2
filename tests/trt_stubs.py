"""Make the `tensorrt-stubs` package (TensorRT 10.13 .pyi files) readable by mypy.

The published stubs are generated from the pybind11 bindings and are not valid Python in a few places:
parameters named `in` (a keyword) in the plugin interfaces, and one signature (`add_scale_nd`) with a
parameter without default after defaulted ones. They also lack a py.typed marker. `prepare_stubs(dest)` copies
`tensorrt/` and `tensorrt_bindings/` to `dest` with those lines fixed mechanically (nothing else changes), so
`MYPYPATH=dest mypy ...` type-checks against TensorRT's real API. Used by tests/test_tensorrt_typing.py.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

PACKAGES = ("tensorrt", "tensorrt_bindings")
_IN_PARAM = re.compile(r"(?<=[(,] )in(?=: )|(?<=\()in(?=: )")
_NON_DEFAULT_AFTER_DEFAULT = re.compile(r"(= None, )(\w+): (\w+)\)")


def installed_stubs_root() -> Path | None:
    """site-packages directory holding tensorrt_stubs' .pyi trees, or None if tensorrt-stubs is not installed."""
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent.parent
    if not (root / "tensorrt_bindings" / "tensorrt.pyi").is_file():
        return None
    return root


def fix_stub_text(text: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("def "):
            line = _IN_PARAM.sub("in_", line)
            line = _NON_DEFAULT_AFTER_DEFAULT.sub(r"\1\2: \3 = ...)", line)
        out.append(line)
    return "".join(out)


def prepare_stubs(dest: Path) -> Path:
    root = installed_stubs_root()
    if root is None:
        raise FileNotFoundError("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    for pkg in PACKAGES:
        for src in (root / pkg).rglob("*.pyi"):
            target = dest / src.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            fixed = fix_stub_text(src.read_text())
            ast.parse(fixed, filename=str(src))  # fail here, clearly, if a new stubs release breaks differently
            target.write_text(fixed)
    return dest


if __name__ == "__main__":
    print(prepare_stubs(Path(__file__).resolve().parent.parent / "build" / "typing-stubs"))
