"""The house rules, read off the source with ``ast``: imports go one way, downward; no package
reaches into another's private names; no import circle; modules and functions stay small.

The layers, top to bottom (docs/development.md draws them):
cli, dlt, sync → package face → outbox → client → resources → export/bulk/webhooks → transport →
telemetry → budget → support → errors/models → constants/redaction.
The sandbox stands apart: it imports nothing of the SDK, and only the top layer imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "getbill_async"
ROOT = "getbill_async"

#: Each group (a subpackage, or one module at the root) and its layer; higher imports lower.
LAYERS: dict[str, float] = {
    "cli": 10,
    "dlt": 10,
    # The blocking face drives the async client and outbox from above, as the CLI does.
    "sync": 10,
    "pytest_plugin": 10,
    "": 9,  # the package face, getbill_async/__init__.py
    # The outbox drives a whole client (its creates, updates and lookups by call_id): a
    # service on top of the client, not a part of it.
    "outbox": 8.5,
    "_client": 8,
    "resources": 7,
    "export": 6,
    "bulk": 6,
    "webhooks": 6,
    "transport": 5,
    "telemetry": 4,
    "budget": 3,
    "support": 2,
    "errors": 1,
    "models": 1,
    "_constants": 0,
    "_redact": 0,
}
SANDBOX = "sandbox"
TOP = 10
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Edge:
    source: str  # module, dotted, without the package name ("" for the face)
    target: str  # module or package imported
    names: tuple[str, ...]
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def _edges(module: str, modules: dict[str, Path]) -> Iterator[Edge]:
    tree = ast.parse(modules[module].read_text(encoding="utf-8"))
    here = module.split(".") if module else []
    if not _is_package(module, modules):
        here = here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(ROOT + ".") or alias.name == ROOT:
                    yield Edge(module, alias.name[len(ROOT) + 1 :], (), node.lineno)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if not node.module or not (node.module == ROOT or node.module.startswith(ROOT + ".")):
                continue
            base = node.module[len(ROOT) + 1 :].split(".") if node.module != ROOT else []
        else:
            base = here[: len(here) - node.level + 1] + (node.module or "").split(".")
        target = ".".join(part for part in base if part)
        names = tuple(alias.name for alias in node.names)
        submodules = [n for n in names if ".".join(filter(None, [target, n])) in modules]
        for name in submodules:  # `from . import _log`: the submodule itself
            yield Edge(module, ".".join(filter(None, [target, name])), (), node.lineno)
        rest = tuple(n for n in names if n not in submodules)
        if rest or not submodules:
            yield Edge(module, target, rest, node.lineno)


def _group(module: str) -> str:
    if module == "":
        return ""
    first = module.split(".")[0]
    return first


def _is_face(module: str) -> bool:
    path = PACKAGE.joinpath(*module.split(".")) if module else PACKAGE
    return (path / "__init__.py").exists()


def _all_edges() -> list[Edge]:
    modules = _modules()
    return [edge for module in modules for edge in _edges(module, modules)]


def test_every_module_belongs_to_a_layer() -> None:
    unknown = sorted({_group(m) for m in _modules()} - set(LAYERS) - {SANDBOX})
    assert unknown == [], f"place these in LAYERS (and in docs/development.md): {unknown}"


def test_imports_go_downward() -> None:
    upward = []
    for edge in _all_edges():
        source, target = _group(edge.source), _group(edge.target)
        if source == target:
            continue
        if SANDBOX in (source, target):
            if source == SANDBOX or LAYERS[source] != TOP:
                upward.append(f"{edge.source}:{edge.line} imports {edge.target}")
            continue
        if LAYERS[target] > LAYERS[source]:
            upward.append(f"{edge.source}:{edge.line} imports {edge.target} (upward)")
    assert upward == []


def test_no_package_reaches_into_another_ones_private_names() -> None:
    reach = []
    for edge in _all_edges():
        source, target = _group(edge.source), _group(edge.target)
        if source == target:
            continue
        # Into another package, only through a face (a package's __init__), not a module of it.
        if edge.target != target and not _is_face(edge.target):
            reach.append(f"{edge.source}:{edge.line} imports {edge.target}")
        private = [n for n in edge.names if n.startswith("_") and not n.startswith("__")]
        if private:
            reach.append(f"{edge.source}:{edge.line} takes {private} from {edge.target}")
    assert reach == []


def test_no_import_circle() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for edge in _all_edges():
        if edge.target in modules and edge.target != edge.source:
            graph[edge.source].add(edge.target)
    # A package's face imports its own modules; a module of the package that imports the
    # face back closes a circle, and so does any longer loop.
    circles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert circles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_rule_sees_an_upward_import_and_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert sorted(map(sorted, _strongly_connected(graph))) == [["a", "b", "c"], ["d"]]
    modules = _modules()
    edges = list(_edges("transport._walks", modules))
    assert any(e.target == "support" for e in edges)
    assert LAYERS[_group("resources.followups")] > LAYERS[_group("transport._walks")]


def test_the_package_root_holds_few_modules() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 8, root


def test_modules_and_functions_stay_small() -> None:
    big = []
    for module, path in _modules().items():
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            big.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big.append(f"{module}.{node.name}: {length} lines")
    assert big == []
