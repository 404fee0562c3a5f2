"""The layout's rules, checked on the import graph of the source (docs/design.md, "Layout"):

- the runtime core (everything in df2infer/ except apps/, and the data tools) imports nothing from
  df2infer.apps nor from the PyTorch package df2infer_export, and never torch;
- df2infer_export imports only public names of the runtime, never df2infer.apps;
- argparse lives in df2infer/apps only (plus the `python -m` scripts of df2infer_export named below);
- no module uses another module's private (`_name`) names: a name two modules share is public;
- imports go down the layers of LAYERS, never up;
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


def _module_aliases(name: str, path: Path) -> dict[str, str]:
    """Local names that are bound to one of our modules by an import statement: {local name: module}."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                if f"{mod}.{a.name}" in MODULES:
                    out[a.asname or a.name] = f"{mod}.{a.name}"
    return out


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """The dotted name an expression such as `generator.x` or `df2infer.api.y` stands for, when it starts at a module alias."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value, aliases)
        return f"{head}.{node.attr}" if head else None
    return None


def _private_uses(name: str, path: Path) -> list[str]:
    """`from other import _x` and `other._x` in module `name`, where other is another of our modules."""
    out = []
    for mod, names in _imports(name, path):
        if mod in MODULES and mod != name:
            out += [f"from {mod} import {n}" for n in names if n.startswith("_") and not n.startswith("__")]
    aliases = _module_aliases(name, path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = _dotted(node.value, aliases)
            if owner in MODULES and owner != name:
                out.append(f"{owner}.{node.attr} (line {node.lineno})")
    return out


def test_no_module_uses_another_modules_private_names():
    bad = [f"{name}: {use}" for name, path in MODULES.items() for use in _private_uses(name, path)]
    assert not bad, f"make the name public where it is shared, or move it: {bad}"


def test_private_name_check_sees_both_spellings(tmp_path):
    """The check above finds `from m import _x` and `m._x` (a check that finds nothing proves nothing)."""
    p = tmp_path / "probe.py"
    p.write_text(
        "from df2infer.synth import generator\nfrom df2infer.ops.boxes import _x\nimport df2infer.api\n"
        "generator._y(1)\ndf2infer.api._z\ngenerator.public\n"
    )
    uses = _private_uses("df2infer.probe", p)
    assert sorted(uses) == ["df2infer.api._z (line 5)", "df2infer.synth.generator._y (line 4)", "from df2infer.ops.boxes import _x"], uses


# Bottom to top; a module may import its own layer and those below, never a layer above. A module's
# layer is that of the longest prefix listed (retrieval.similarity, the embedding head's math that the
# Predictor runs, sits below the rest of retrieval/).
LAYERS: list[tuple[str, ...]] = [
    # foundations: the error family, the contract, the category spec, images in, CPU/GPU facts, latency statistics
    (
        "df2infer.errors",
        "df2infer.contract",
        "df2infer.data.spec",
        "df2infer.images",
        "df2infer.cpu_features",
        "df2infer.gpu",
        "df2infer.latency",
    ),
    # data: the artifact's metadata, results, the DeepFashion2/COCO formats
    ("df2infer.artifact", "df2infer.results", "df2infer.data"),
    ("df2infer.ops", "df2infer.retrieval.similarity"),  # numpy references and their CUDA twins
    ("df2infer.backends",),
    ("df2infer.api", "df2infer"),  # load(), the Predictor
    ("df2infer.stream", "df2infer.sinks", "df2infer.retrieval"),  # the runtime rooms
    ("df2infer.synth", "df2infer.eval"),  # data tools
    ("df2infer.bench", "df2infer_export"),
    ("df2infer.apps", "df2infer.__main__"),
]


def _layer(module: str) -> int:
    best = max(
        ((len(prefix), i) for i, layer in enumerate(LAYERS) for prefix in layer if module == prefix or module.startswith(prefix + ".")),
        default=None,
    )
    assert best is not None, f"{module} is in no layer of tests/test_layout.py LAYERS: place it"
    return best[1]


def test_imports_go_down_the_layers():
    bad = []
    for name, path in MODULES.items():
        for mod, names in _imports(name, path):
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in MODULES]
            for dep in subs if names and len(subs) == len(names) else [mod, *subs]:
                if dep in MODULES and _layer(dep) > _layer(name):
                    bad.append(f"{name} (layer {_layer(name)}) imports {dep} (layer {_layer(dep)})")
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
