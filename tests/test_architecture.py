"""The layout rules of the code base: module size, no import cycle, one owner of the payload schema."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = (ROOT / "connectors", ROOT / "integrations")
SCHEMA_OWNER = ROOT / "connectors" / "visdoc" / "points.py"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python module of the distribution."""
    found = {}
    for root in SOURCE_ROOTS:
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of a module except those under ``if TYPE_CHECKING:`` (type-only imports never run)."""
    nodes, pending = [], [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
            else:
                pending.append(child)
    return nodes


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The distribution's modules that ``name`` imports when it runs (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            candidates = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:  # an attribute: the module that holds it
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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


def test_no_module_is_longer_than_400_lines():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in modules().values()}
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    assert graph["visdoc.ingest.local"] >= {"visdoc.ingest.stages", "visdoc.ingest.plan"}  # the graph is real
    assert not cycles(graph)


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_layers_import_nothing_of_the_layers_above():
    graph = import_graph()
    above = {
        "visdoc.store": ("visdoc.heatmap", "visdoc.server", "visdoc.ingest", "visdoc.encoder", "visdoc.cli"),
        "visdoc.encoder": ("visdoc.server", "visdoc.store", "visdoc.ingest", "visdoc.cli"),
        "visdoc.points": ("visdoc.",),
        "visdoc.ingest": ("visdoc.server", "visdoc.cli"),
    }
    for layer, forbidden in above.items():
        for name, targets in graph.items():
            if name == layer or name.startswith(layer + "."):
                bad = sorted(t for t in targets if t.startswith(forbidden) and not t.startswith(layer))
                assert not bad, f"{name} imports {bad}"


# payload keys and kinds that only visdoc.points may spell out
DISTINCT = ("page_image", "text_chunk", "document_id", "content_hash", "file_name", "page_label", "total_pages",
            "image_path", "image_grid", "doc_id", "ref_doc_id", "created_at")  # fmt: skip
# keys whose names are common words: refused where they index a payload or a framework's metadata
COMMON = ("text", "metadata", "kind", "source", "page", "title", "model", "task", "dim", "node")
PAYLOAD_ACCESS = re.compile(
    r"(payload|metadata|\bp|\bmeta)\s*(\[|\.get\(|\.pop\(|\.setdefault\()\s*[\"'](" + "|".join(COMMON) + r")[\"']"
)


def string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("key", DISTINCT)
def test_payload_keys_and_kinds_are_spelled_out_only_by_their_owner(key):
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in modules().values()
        if path != SCHEMA_OWNER
        for line, value in string_literals(path)
        if value == key or re.fullmatch(rf"{key}\.\w+|\w+\.{key}", value)
    ]
    assert not found, f"{key!r} is written out in {found}: use the constant of visdoc.points"


def test_common_payload_keys_are_read_through_the_owners_constants():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in modules().values()
        if path != SCHEMA_OWNER
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PAYLOAD_ACCESS.search(line)
    ]
    assert not found, "payload keys written out:\n" + "\n".join(found)


def test_the_literal_checks_would_see_a_literal(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""page_image in a docstring"""\nx = {"kind": "page_image"}\ny = payload.get("source")\n')
    assert [value for _, value in string_literals(sample)] == ["kind", "page_image", "source"]
    assert PAYLOAD_ACCESS.search('y = payload.get("source")')
