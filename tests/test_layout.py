"""The floors of docs/architecture.md, held against the code's own imports.

Every ``import`` and ``from ... import`` of the packages is read (at any depth, under
``if TYPE_CHECKING:`` too) and checked: a package imports only the packages its row of
the table names, the services do not import each other, nobody reaches into another
package's private modules, and the modules import each other without a circle.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: The generated API stubs: private by name (never edited, excluded from linters) and
#: imported by every floor, since they are the API itself.
GENERATED = "astra._gen"
#: A third-party private module may be imported only where it is named here, with why.
THIRD_PARTY_PRIVATE = {
    # Ray has no public way to delete a cluster's GCS keys from Redis; the version it
    # relies on is pinned by tests/node_agent/test_ray_procs.py.
    "ray._private.gcs_utils": "node_agent.runtime._procs",
}
#: Circles of imports made for type hints alone (under ``if TYPE_CHECKING:``), each
#: with why the two modules name each other.
TYPE_ONLY_CIRCLES = {
    # A table's Member holds the Route it serves; the Route holds its Members.
    frozenset({"gateway._endpoints", "gateway._table"}),
}


@dataclass(frozen=True)
class Import:
    """One imported module, as seen from the importing file."""

    importer: str  # dotted module name of the importing file
    target: str  # dotted module name imported
    line: int
    path: Path


def floors() -> dict[str, set[str]]:
    """The table of docs/architecture.md: package -> the packages it may import."""
    rows = re.findall(r"^\| `(\w+)` \| \d \| (.+?) \|$", ARCHITECTURE.read_text(), re.MULTILINE)
    assert rows, "docs/architecture.md has no table of floors"
    return {package: set(re.findall(r"`(\w+)`", allowed)) for package, allowed in rows}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def is_module(name: str) -> bool:
    """Whether ``name`` is a module of ours: Python source, a package, or a compiled
    extension (found where it was installed)."""
    path = ROOT / Path(*name.split("."))
    if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
        return True
    parent = name.rpartition(".")[0]
    if name.split(".")[0] not in OURS or not is_package(parent):
        return False
    return importlib.util.find_spec(name) is not None


def sources(packages: set[str]) -> Iterator[Path]:
    for package in sorted(packages):
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.relative_to(ROOT).as_posix().startswith("astra/_gen/"):
                yield path


def imports(path: Path) -> Iterator[Import]:
    """The modules ``path`` imports; ``from pkg import name`` names ``pkg.name`` when that
    is a module of this tree, else ``pkg``."""
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, node.lineno, path)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(importer, sub if is_module(sub) else base, node.lineno, path)


TABLE = floors()
OURS = set(TABLE)
ALL = [found for path in sources(OURS) for found in imports(path)]


def where(found: Import) -> str:
    return f"{found.path.relative_to(ROOT)}:{found.line} imports {found.target}"


def test_the_table_names_every_package_of_the_tree() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages | {"bench"} == OURS


def test_each_package_imports_only_the_floors_below_it() -> None:
    wrong = [
        where(found)
        for found in ALL
        if (top := found.target.split(".")[0]) in OURS
        and top != (own := found.importer.split(".")[0])
        and top not in TABLE[own]
    ]
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_the_services_do_not_import_each_other() -> None:
    def service(name: str) -> str | None:
        parts = name.split(".")
        return parts[1] if parts[0] == "services" and len(parts) > 1 else None

    wrong = [
        where(found)
        for found in ALL
        if service(found.importer)
        and service(found.target)
        and service(found.importer) != service(found.target)
    ]
    assert not wrong, "\n".join(wrong)


def private_owner(target: str) -> str | None:
    """The package whose private module ``target`` is, or ``None`` if it is public."""
    parts = target.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def test_nobody_imports_another_packages_private_modules() -> None:
    wrong = []
    for found in ALL:
        owner = private_owner(found.target)
        if owner is None or found.target.startswith(GENERATED):
            continue
        if found.target.split(".")[0] not in OURS:
            if THIRD_PARTY_PRIVATE.get(found.target) != module_name(found.path):
                wrong.append(where(found))
        elif found.importer != owner and not found.importer.startswith(owner + "."):
            wrong.append(where(found))
    assert not wrong, "private modules imported from outside:\n" + "\n".join(wrong)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    """A module that imports its own package's face (``from gateway import X`` inside
    ``gateway``) closes a circle through ``__init__.py`` too."""
    graph: dict[str, set[str]] = {}
    for found in ALL:
        if found.target.split(".")[0] in OURS and found.target != found.importer:
            graph.setdefault(found.importer, set()).add(found.target)
    circles = [c for c in strongly_connected(graph) if frozenset(c) not in TYPE_ONLY_CIRCLES]
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("package", sorted(OURS - {"bench"}))
def test_a_package_face_lists_what_it_exports(package: str) -> None:
    face = ROOT / package / "__init__.py"
    tree = ast.parse(face.read_text())
    exported = [node for node in tree.body if isinstance(node, ast.Assign | ast.ImportFrom)]
    if any(isinstance(node, ast.ImportFrom) for node in exported):
        assert any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in exported
        ), f"{face.relative_to(ROOT)} re-exports names without __all__"
