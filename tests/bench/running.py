"""A benchmark of bench/ run in tiny mode as a real process, as its tests do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_tiny(script: str, *args: str, timeout: float) -> str:
    """Run ``bench/SCRIPT --tiny ARGS`` from the repository's root and return what it
    printed; fails with the end of its stderr unless it exits 0 within ``timeout`` seconds."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--tiny", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout
