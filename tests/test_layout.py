"""The layout's rules, checked on the import graph of the source (docs/design.md, "Layout"):

- the runtime core (everything in df2infer/ except apps/, and the data tools) imports nothing from
  df2infer.apps nor from the PyTorch package df2infer_export, and never torch;
- df2infer_export imports only public names of the runtime, never df2infer.apps;
- argparse lives in df2infer/apps only (plus the `python -m` scripts of df2infer_export named below);
- no import cycles among df2infer's modules;
- a verb that needs PyTorch says "needs the export extra" when torch is missing.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Standalone `python -m df2infer_export.X` scripts (developer tools, not `df2infer` verbs).
EXPORT_SCRIPTS = {"df2infer_export.bundle", "df2infer_export.parity_eval", "df2infer_export.lint"}


def _modules() -> dict[str, Path]:
    mods = {}
    for top, folder in (("df2infer", "df2infer"), ("df2infer_export", "export")):
        for p in (ROOT / folder).rglob("*.py"):
            rel = p.relative_to(ROOT / folder).with_suffix("")
            parts = [top, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names imported from it) for every import statement, relative ones resolved."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names]))
    return out


def _is_core(name: str) -> bool:
    return name.startswith("df2infer") and name != "df2infer.__main__" and not name.startswith(("df2infer_export", "df2infer.apps"))


def test_core_imports_neither_apps_nor_export_nor_torch():
    bad = []
    for name, path in MODULES.items():
        if not _is_core(name):
            continue
        for mod, _ in _imports(name, path):
            if mod.startswith(("df2infer.apps", "df2infer_export", "torch", "export")):
                bad.append(f"{name} imports {mod}")
    assert not bad, bad


def test_export_package_uses_only_public_runtime_names():
    bad = []
    for name, path in MODULES.items():
        if not name.startswith("df2infer_export"):
            continue
        for mod, names in _imports(name, path):
            if mod.startswith("df2infer.apps") or (mod.startswith("df2infer.") and any(n.startswith("_") for n in names)):
                bad.append(f"{name}: from {mod} import {names}")
            if any(part.startswith("_") for part in mod.split(".")) and mod.startswith("df2infer."):
                bad.append(f"{name} imports private module {mod}")
    assert not bad, bad


def test_argparse_only_in_apps():
    bad = [
        name
        for name, path in MODULES.items()
        if not name.startswith("df2infer.apps") and name not in EXPORT_SCRIPTS and any(mod == "argparse" for mod, _ in _imports(name, path))
    ]
    assert not bad, f"argument parsing belongs in df2infer/apps: {bad}"


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for mod, names in _imports(name, path):
            # `from pkg import sub` depends on pkg.sub (and on pkg only for names that are not submodules)
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in MODULES]
            cands = subs if names and len(subs) == len(names) else [mod, *subs]
            deps.update(c for c in cands if c in MODULES and c != name)
        graph[name] = deps
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in graph[n]:
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, cycles


def test_every_verb_is_a_module_of_apps():
    from df2infer.apps import main

    for verb, (module, _) in main.VERBS.items():
        assert module.__name__ == f"df2infer.apps.{verb.replace('-', '_')}", (verb, module.__name__)
        assert callable(module.add_arguments) and callable(module.run)


@pytest.mark.parametrize("verb", ["train", "predict-torch", "export"])
def test_torch_verbs_without_torch_say_which_extra(verb, monkeypatch, capsys, tmp_path):
    from df2infer.apps.main import main

    for mod in [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "df2infer_export"))]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ModuleNotFoundError
    args = {
        "train": ["--data", str(tmp_path), "--out", str(tmp_path / "run")],
        "predict-torch": ["--checkpoint", "m.pt", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        "export": [str(tmp_path / "m.pt"), "--out", str(tmp_path / "o")],
    }[verb]
    assert main([verb, *args]) == 2
    err = capsys.readouterr().err
    assert f"df2infer {verb}: needs the export extra" in err and "pip install 'df2infer[export]'" in err


# The notes outside the repository that nothing in it may cite; spelled in parts so that this file,
# which is scanned too, does not itself cite them.
OUTSIDE_NOTES = tuple(a + b for a, b in (("DESIGN", ".md"), ("DF2", ".md"), ("../", "shared"), ("/work/", "shared")))


def test_no_reference_outside_the_repository():
    """Code and docs cite docs/ (in the repository), never notes users do not have."""
    bad = []
    for p in ROOT.rglob("*"):
        if p.suffix not in (".py", ".md", ".ini", ".toml", ".sh", ".cu", ".cuh") and p.name != "Makefile":
            continue
        if any(part.startswith(".") or part in ("build", "node_modules") for part in p.relative_to(ROOT).parts):
            continue
        text = p.read_text(errors="replace")
        for needle in OUTSIDE_NOTES:
            if needle in text:
                bad.append(f"{p.relative_to(ROOT)}: {needle}")
    assert not bad, bad


def test_every_public_name_resolves():
    import df2infer

    for name in df2infer.__all__:
        assert getattr(df2infer, name) is not None, name
