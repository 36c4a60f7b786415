"""``pip install .`` gives a working ``twin`` command: a wheel built from the sources, installed
in a fresh virtual environment, lists every command group.

The fresh environment gets the project's dependencies from this test run's environment (a
``.pth`` file), so nothing is downloaded but the wheel's build tools; ``twin`` itself, and its
entry point, come from the wheel.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from cli_support import ROOT

pytestmark = pytest.mark.slow

# At least these (the operations issue's list); the wheel lists exactly what the sources define.
GROUPS = ["audit", "db", "dsr", "keys", "model", "retention", "serve", "settings", "tokens"]
SUBCOMMANDS = {"db": ["backup", "info", "migrate", "restore", "rollback", "setup", "status", "verify"],
               "keys": ["generate", "rotate"], "tokens": ["issue", "list", "revoke"],
               "dsr": ["erase", "export"], "retention": ["run", "schedule"], "audit": ["verify"],
               "model": ["fit", "parameters", "recompute"]}


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def commands_in(help_text: str) -> list[str]:
    """The command names a Click help page lists under "Commands:"."""
    block = help_text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line[:2] == "  " and line[2] != " "]


def test_the_installed_wheel_provides_twin_and_its_subcommands(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("twin", "compliance"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(source))
    [wheel] = (tmp_path / "dist").glob("learner_twin-*.whl")

    fresh = tmp_path / "fresh"
    _run(sys.executable, "-m", "venv", "--without-pip", str(fresh))
    python = fresh / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel))
    purelib = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                        cwd=tmp_path).stdout.strip())
    deps = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (purelib / "zz_project_dependencies.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")

    where = _run(str(python), "-c", "import twin.cli; print(twin.cli.__file__)", cwd=tmp_path).stdout
    assert where.startswith(str(purelib)), where  # the wheel's copy, not the checkout's
    twin = fresh / "bin" / "twin"
    from twin.cli import cli as in_tree

    groups = commands_in(_run(str(twin), "--help", cwd=tmp_path).stdout)
    assert groups == sorted(in_tree.commands) and set(GROUPS) <= set(groups)
    for group, names in SUBCOMMANDS.items():
        listed = commands_in(_run(str(twin), group, "--help", cwd=tmp_path).stdout)
        assert listed == sorted(in_tree.commands[group].commands) and set(names) <= set(listed)
