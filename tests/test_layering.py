"""The dependency direction is a test, not a convention.

Routes and CLI -> application services -> domain -> compliance / storage core. The
``[importlinter]`` contracts in setup.cfg forbid compliance importing twin other than the
storage core, the storage core importing compliance or the learner domain, and the domain
importing Flask. An import graph cannot see a module reached by name at run time, so no
module of ``compliance`` may use ``importlib``, ``__import__`` or ``sys.modules`` at all.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_import_contracts_hold():
    result = _lint_imports(REPO)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_import_of_twin_from_compliance_breaks_the_contract(tmp_path):
    for package in ("twin", "compliance"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    with open(tmp_path / "compliance" / "retention.py", "a") as fh:
        fh.write("\nfrom twin.config import Config  # what the contract forbids\n")

    result = _lint_imports(tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})

    assert result.returncode == 1
    assert "compliance imports nothing from twin but the storage core BROKEN" in result.stdout
    assert "compliance.retention -> twin.config" in result.stdout


def _dynamic_imports(path: Path) -> list[str]:
    """Uses of importlib, __import__ or sys.modules in one module, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                    and node.module else [])
            found += [f"{node.lineno}: import {n}" for n in names if n.split(".")[0] == "importlib"]
        elif isinstance(node, ast.Name) and node.id == "__import__":
            found.append(f"{node.lineno}: __import__")
        elif isinstance(node, ast.Attribute) and node.attr == "modules" \
                and isinstance(node.value, ast.Name) and node.value.id == "sys":
            found.append(f"{node.lineno}: sys.modules")
    return found


@pytest.mark.parametrize("module", sorted(p.relative_to(REPO).as_posix()
                                          for p in (REPO / "compliance").rglob("*.py")))
def test_no_compliance_module_reaches_modules_by_name(module):
    assert _dynamic_imports(REPO / module) == []


def test_the_dynamic_import_check_sees_each_way_of_reaching_a_module(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import importlib\nfrom importlib import import_module\nimport sys\n"
                      "m = __import__('twin.catalog')\nc = sys.modules['twin.catalog']\n")

    assert _dynamic_imports(sample) == ["1: import importlib", "2: import importlib",
                                        "4: __import__", "5: sys.modules"]
