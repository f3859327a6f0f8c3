"""Generate the Python stubs of ``proto/`` into ``astra/_gen`` (never edit those by hand).

Run ``python -m astra._codegen`` after changing a ``.proto``; a test fails while the
committed stubs differ from what this produces.

protoc writes imports rooted at the proto path (``from astra.v1 import node_pb2``),
which would resolve outside the generated package; they are rewritten to
``astra._gen.…`` so the stubs import from where they live.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_DIR = Path(__file__).resolve().parent / "_gen"
GEN_PACKAGE = "astra._gen"
_OWN_IMPORT = re.compile(r"^(from|import) (astra\.v1|inference)\b", re.MULTILINE)
_HEADER = '"""Generated from proto/ by `python -m astra._codegen`. Do not edit."""\n'


def proto_files() -> list[Path]:
    """Every .proto under ``proto/``, relative to it, in a stable order."""
    return sorted(path.relative_to(PROTO_DIR) for path in PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write the stubs of every proto file into ``out_dir`` (a package tree)."""
    from grpc_tools import protoc  # a dev dependency: only needed to regenerate

    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            *map(str, proto_files()),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        raw_dir = Path(raw)
        for source in sorted(raw_dir.rglob("*.py*")):
            target = out_dir / source.relative_to(raw_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = _OWN_IMPORT.sub(rf"\1 {GEN_PACKAGE}.\2", source.read_text())
            target.write_text(text)
        for package in {out_dir, *(p.parent for p in out_dir.rglob("*.py"))}:
            init = package / "__init__.py"
            if not init.exists():
                init.write_text(_HEADER)


def main() -> int:
    shutil.rmtree(GEN_DIR, ignore_errors=True)
    generate(GEN_DIR)
    print(f"generated stubs for {len(proto_files())} proto files into {GEN_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
