"""The layers of ARCHITECTURE.md, held: no module imports upward, and no import cycle.

Every import counts, at module level or inside a function, except those under
``if TYPE_CHECKING:``, which never run. The checker reads source with ``ast``, so it
sees imports that a test run would never execute.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cdp_logging"

# Lowest first. A module may import from its own layer or any layer below it.
LAYERS = (
    ("leaves", ("cdp_logging._version", "cdp_logging._compat")),
    ("core", ("cdp_logging._core",)),
    ("transports", ("cdp_logging._transports",)),
    ("buffers", ("cdp_logging._buffers",)),
    ("delivery", ("cdp_logging._delivery",)),
)
TOP = len(LAYERS)  # front doors, integrations, public modules, the collector, the CLI


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return rank
    return TOP


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (inner for child in node.orelse for inner in _runtime_imports_of(child))
            continue
        yield from _runtime_imports_of(node)


def _runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _runtime_imports(node)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time."""
    paths = {module_name(path, root): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                bases = [alias.name for alias in node.names]
                candidates = bases
            else:
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import name`: a submodule when one exists by that name.
                candidates = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                    for alias in node.names
                ]
            targets.update(c for c in candidates if c in paths and c != name)
        graph[name] = targets
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({LAYERS[layer_of(module)][0] if layer_of(module) < TOP else 'top'}) "
        f"imports {target}"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


class TestLayers:
    def test_no_module_imports_from_a_layer_above_its_own(self) -> None:
        """front doors -> delivery -> buffers -> transports -> core -> leaves, never back."""
        assert [] == upward_imports(import_graph(PACKAGE))

    def test_there_is_no_import_cycle(self) -> None:
        """Function-level imports included: a cycle hidden in a function is still one."""
        assert [] == cycles(import_graph(PACKAGE))

    def test_every_layer_exists_and_holds_modules(self) -> None:
        """The layers named here are the package's folders, so a rename cannot empty the rule."""
        graph = import_graph(PACKAGE)
        for rank, (name, _) in enumerate(LAYERS):
            assert any(layer_of(module) == rank for module in graph), name

    def test_the_collector_imports_only_the_protocol_the_plan_and_the_version(self) -> None:
        """The collector stands alone: it must answer any client, whatever our sender does.

        The tracking plan's checker is a leaf of the core, shared so that the collector
        and the client give a violation the same words (loaded only with a plan).
        """
        graph = import_graph(PACKAGE)
        outside = {
            target
            for module, targets in graph.items()
            if module.startswith("cdp_logging.collector")
            for target in targets
            if not target.startswith("cdp_logging.collector")
        }
        assert set() == outside - {
            "cdp_logging._core.protocol",
            "cdp_logging._core.plan",
            "cdp_logging._version",
        }


class TestTheChecker:
    """The rule's checker, on a made-up package: it must be able to fail."""

    @pytest.fixture
    def package(self, tmp_path: Path) -> Path:
        root = tmp_path / "cdp_logging"
        for folder in ("_core", "_delivery"):
            (root / folder).mkdir(parents=True)
            (root / folder / "__init__.py").write_text("")
        (root / "__init__.py").write_text("")
        return root

    def test_an_upward_import_inside_a_function_is_found(self, package: Path) -> None:
        (package / "_core" / "rules.py").write_text(
            "def f():\n    from .._delivery import sender\n"
        )
        (package / "_delivery" / "sender.py").write_text("from .._core import rules\n")
        graph = import_graph(package)
        assert ["cdp_logging._core.rules (core) imports cdp_logging._delivery.sender"] == (
            upward_imports(graph)
        )
        assert [["cdp_logging._core.rules", "cdp_logging._delivery.sender"]] == cycles(graph)

    def test_an_import_for_type_checking_only_is_not_counted(self, package: Path) -> None:
        (package / "_core" / "rules.py").write_text(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .._delivery.sender import Sender\n"
        )
        (package / "_delivery" / "sender.py").write_text("")
        assert [] == upward_imports(import_graph(package))
