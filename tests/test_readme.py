"""The README documents what the code has: every setting, every benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from astra.config import Settings
from astra.config._settings import env_name, flag_name, setting_fields

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else len(README)]


@pytest.mark.parametrize(
    "path", [path for path, _ in setting_fields(Settings)], ids=lambda path: ".".join(path)
)
def test_the_configuration_table_lists_every_setting(path: tuple[str, ...]) -> None:
    rows = [line for line in _section("Configuration").splitlines() if line.startswith("| `")]
    row = next((line for line in rows if line.startswith(f"| `{'.'.join(path)}` |")), None)
    assert row is not None, f"README's configuration table has no row for {'.'.join(path)}"
    assert f"`{flag_name(path)}`" in row and f"`{env_name(path)}`" in row


def test_the_configuration_table_lists_nothing_else() -> None:
    known = {".".join(path) for path, _ in setting_fields(Settings)}
    rows = [line for line in _section("Configuration").splitlines() if line.startswith("| `")]
    listed = {row.split("`")[1] for row in rows}
    assert listed <= known, f"README lists settings that do not exist: {listed - known}"


@pytest.mark.parametrize("bench", sorted(path.name for path in (ROOT / "bench").glob("*.py")))
def test_every_benchmark_has_its_command_in_the_table(bench: str) -> None:
    assert f"bench/{bench}" in _section("Benchmarks"), f"README's benchmarks omit bench/{bench}"
