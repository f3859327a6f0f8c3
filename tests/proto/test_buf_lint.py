"""The API passes buf's STANDARD lint rules (buf comes from the npm package @bufbuild/buf)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def test_buf_lint_passes() -> None:
    assert BUF.exists(), "buf is missing: run `npm ci` (the README's test command does)"
    result = subprocess.run(
        [str(BUF), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"


def test_buf_lint_catches_a_violation(tmp_path: Path) -> None:
    """The lint really runs: an unversioned package with a bad enum is refused."""
    bad = tmp_path / "proto" / "bad"
    bad.mkdir(parents=True)
    (bad / "bad.proto").write_text('syntax = "proto3";\npackage bad;\nenum Color { RED = 0; }\n')
    (tmp_path / "buf.yaml").write_text(
        "version: v2\nmodules:\n  - path: proto\nlint:\n  use: [STANDARD]\n"
    )
    result = subprocess.run(
        [str(BUF), "lint"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert (
        "PACKAGE_VERSION_SUFFIX" in result.stdout
        or "suffixed with a correctly formed version" in result.stdout
    )
    assert "UNSPECIFIED" in result.stdout
