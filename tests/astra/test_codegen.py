"""The committed stubs in astra/_gen are exactly what proto/ generates."""

from __future__ import annotations

import subprocess
from pathlib import Path

from astra import _codegen


def _tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_stubs_match_proto(tmp_path: Path) -> None:
    _codegen.generate(tmp_path)
    fresh, committed = _tree(tmp_path), _tree(_codegen.GEN_DIR)
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"stubs are stale against proto/ ({stale}): run `python -m astra._codegen`"


def test_every_proto_has_stubs() -> None:
    for proto in _codegen.proto_files():
        module = _codegen.GEN_DIR / proto.with_name(proto.stem + "_pb2.py")
        assert module.exists(), f"no stub for {proto}"


def test_stubs_import_from_their_own_package() -> None:
    from astra._gen.astra.v1 import app_service_pb2, app_service_pb2_grpc

    assert app_service_pb2.DESCRIPTOR.package == "astra.v1"
    assert hasattr(app_service_pb2_grpc, "AppServiceStub")


def test_make_protos_runs_this_generator() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "protos"], cwd=_codegen.ROOT, capture_output=True, text=True, check=True
    )
    generator = [line for line in dry_run.stdout.splitlines() if " -m astra." in line]
    assert generator and generator[-1].endswith(f" -m {_codegen.__name__}"), dry_run.stdout
