"""The loud-skip rule itself (tests/conftest.py, tests/system_deps.py): under CI a skip for something `make test`
installs fails; elsewhere it stays a skip; a skip for something else (nvcc, a GPU) stays a skip everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
HERE = Path(__file__).resolve().parent

PROBES = """
import pytest
from system_deps import require

def test_missing_make_package():
    pytest.importorskip("cuda.no_such_submodule")  # cuda (cuda-bindings): installed by make setup

def test_missing_system_package():
    require(False, "g++", "apt-get install g++")

def test_missing_machine_tool():
    pytest.skip("nvcc not found on PATH")  # not installed by make: a skip everywhere

def test_other_missing_module():
    pytest.importorskip("no_such_package_anywhere")
"""


def _run(pytester, monkeypatch, ci: str | None):
    pytester.makeconftest((HERE / "conftest.py").read_text())
    pytester.makepyfile(
        system_deps=(HERE / "system_deps.py").read_text(),
        test_probes=PROBES,
        test_module_probe='import pytest\n\npytest.importorskip("cuda.no_such_module")\n\n\ndef test_never():\n    pass\n',
    )
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "--continue-on-collection-errors")


def test_in_ci_a_skip_for_what_make_installs_fails(pytester, monkeypatch):
    res = _run(pytester, monkeypatch, "true")
    res.assert_outcomes(failed=2, skipped=2, errors=1)  # the error: a whole module skipped at import
    out = res.stdout.str()
    assert "cuda.no_such_submodule is not importable, but `make setup` installs it" in out
    assert "CI: g++ is missing" in out


@pytest.mark.parametrize("ci", [None, "false", "0"])
def test_elsewhere_it_skips_saying_what_to_install(pytester, monkeypatch, ci):
    _run(pytester, monkeypatch, ci).assert_outcomes(skipped=5)
