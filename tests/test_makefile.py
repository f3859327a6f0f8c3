"""The Makefile's installs run again only when what they build from changed: the stamps
in the venv against pyproject.toml, the C++ core's sources and the npm lock. Checked
with ``make -n`` (what make would run) on a copy of those files, mtimes set explicitly."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
#: What the install targets depend on, copied into the test's tree.
SOURCES = ("Makefile", "pyproject.toml", "CMakeLists.txt", "package.json", "package-lock.json")
PIP = "pip --disable-pip-version-check install -q -e"
NPM = "npm install"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The Makefile and its inputs, with a venv whose python exists (never run: make -n),
    every file a day old."""
    for name in SOURCES:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "gateway" / "src", tmp_path / "gateway" / "src")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    for path in tmp_path.rglob("*"):
        age(path, 86400)
    return tmp_path


def age(path: Path, seconds: float) -> None:
    """Make ``path`` ``seconds`` old."""
    stamp = Path(__file__).stat().st_mtime - seconds
    os.utime(path, (stamp, stamp))


def would_run(tree: Path, target: str) -> str:
    """What ``make TARGET`` would run in ``tree`` (as a top-level make, also when the
    suite itself runs under ``make test``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(
        ["make", "-n", target],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def installed(tree: Path, *stamps: str) -> None:
    """The stamps written an hour ago, after the sources."""
    for stamp in stamps:
        path = tree / stamp
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        age(path, 3600)


def test_a_fresh_venv_installs_everything(tree: Path) -> None:
    dev = would_run(tree, "install-dev")
    assert f"{PIP} '.[dev]'" in dev and NPM in dev
    # The dev extra is a superset: its install counts as the plain one too.
    assert "touch .venv/.installed .venv/.installed-dev" in dev
    up = would_run(tree, "up")
    assert f"{PIP} .\n" in up and up.rstrip().endswith(".venv/bin/astra up")


def test_nothing_changed_nothing_runs_again(tree: Path) -> None:
    installed(tree, ".venv/.installed", ".venv/.installed-dev", "node_modules/.package-lock.json")
    assert PIP not in would_run(tree, "install-dev")
    assert NPM not in would_run(tree, "install-dev")
    assert would_run(tree, "up").strip() == ".venv/bin/astra up"
    test = would_run(tree, "test")
    assert PIP not in test and NPM not in test
    assert test.rstrip().endswith(".venv/bin/python -m pytest")


@pytest.mark.parametrize(
    "changed", ["pyproject.toml", "CMakeLists.txt", "gateway/src/picker.cpp", "gateway/src/new.hpp"]
)
def test_a_changed_build_input_installs_again(tree: Path, changed: str) -> None:
    """The C++ core is compiled at install time: a changed source rebuilds it."""
    installed(tree, ".venv/.installed", ".venv/.installed-dev", "node_modules/.package-lock.json")
    (tree / changed).touch()
    assert f"{PIP} .\n" in would_run(tree, "install")
    dev = would_run(tree, "install-dev")
    assert f"{PIP} '.[dev]'" in dev and NPM not in dev


def test_a_changed_npm_lock_runs_only_npm_again(tree: Path) -> None:
    installed(tree, ".venv/.installed", ".venv/.installed-dev", "node_modules/.package-lock.json")
    (tree / "package-lock.json").touch()
    dev = would_run(tree, "install-dev")
    assert NPM in dev and PIP not in dev
    assert PIP not in would_run(tree, "up")


def test_the_test_command_runs_the_gate_before_the_suite(tree: Path) -> None:
    installed(tree, ".venv/.installed", ".venv/.installed-dev", "node_modules/.package-lock.json")
    lines = would_run(tree, "test").splitlines()
    gate = [".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/mypy"]
    assert [line for line in lines if line in gate] == gate
    assert lines.index(".venv/bin/mypy") < lines.index(".venv/bin/python -m pytest ")


def test_missing_debian_packages_stop_a_user_at_once_naming_them(tmp_path: Path) -> None:
    """Not root: nothing is installed, the packages and the command are named. (As root,
    which CI is, the same target installs them with apt-get.)"""
    folder = Path(tempfile.mkdtemp())
    try:
        shutil.copy(ROOT / "Makefile", folder / "Makefile")
        folder.chmod(0o755)
        (folder / "Makefile").chmod(0o644)
        command = ["make", "-s", "system-packages",
                   "SYSTEM_TOOLS=astra-absent-tool:astra-absent-package nginx:nginx-light"]  # fmt: skip
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        shutil.rmtree(folder)
    assert done.returncode != 0
    assert "astra-absent-package" in done.stderr
    assert "sudo apt-get install astra-absent-package" in done.stderr
