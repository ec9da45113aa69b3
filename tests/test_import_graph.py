"""The app's modules import one way: no cycle between them, counting imports inside functions.

An import inside a function runs later than one at the top of a module, but it is an edge all the
same: ``a -> b`` at the top and ``b -> a`` in a function is a cycle that only waits for the first call
to show. The graph is built from the source (``ast``), not by importing anything, so it sees every
import, including those of modules that need optional dependencies.

Edges:

- ``import django_ai.conversations.x.y``: to ``x.y``.
- ``from P import n`` (absolute or relative): to ``P.n`` when that is a module, and to ``P`` itself
  (its ``__init__`` when it is a package) unless ``P`` is a package enclosing the importer, which
  Python has already started to import, and ``n`` is a submodule. Importing a name defined in an
  enclosing package's ``__init__`` is an edge to that ``__init__``: the name may not exist yet.
- Imports under ``if TYPE_CHECKING:`` never run: no edge.

Only modules of ``django_ai.conversations`` count; the rest of the world is a leaf.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "django_ai.conversations"
SOURCE = Path(__file__).resolve().parent.parent / "conversations"

#: The most imports inside functions the app may have (161 before issue 12, 30 after it). Each
#: should be an optional dependency imported where it is used, or an import that Django's app
#: loading forbids at the top (models before the app registry is ready, signal wiring in ready()).
#: Lower it when you remove one; raising it needs a reason an import at the top cannot meet.
#: Issue 13 added 3: litellm (optional) in llm/loop.py; the models behind ConversationAgent.history()
#: (agent.py) and behind the tool steps (llm/steps.py), both loaded by agent modules before the registry.
#: Issue 17 added 1: the telemetry implementation (telemetry/__init__.py), which imports
#: opentelemetry (optional), loaded only once telemetry is found on.
MAX_FUNCTION_IMPORTS = 34


@dataclass(frozen=True)
class Import:
    """One import statement of a module: the modules it reaches and where it is written."""

    module: str
    targets: tuple[str, ...]
    line: int
    in_function: bool
    #: A comment on the import's line or in its function above it, or an ``except ImportError``
    #: around it (always true at the top).
    says_why: bool = True


def app_modules(source: Path = SOURCE, package: str = PACKAGE) -> dict[str, Path]:
    """Every module under ``source``, by dotted name (a package by the name of its ``__init__``)."""
    modules = {}
    for path in sorted(source.rglob("*.py")):
        parts = list(path.relative_to(source).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


Function = ast.FunctionDef | ast.AsyncFunctionDef
ImportNode = ast.Import | ast.ImportFrom


def _import_nodes(tree: ast.AST) -> Iterator[tuple[ImportNode, Function | None]]:
    """The import statements that run, each with the function it sits in (None at the top)."""

    def walk(node: ast.AST, function: Function | None) -> Iterator[tuple[ImportNode, Function | None]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                # Only the else branch runs.
                for stmt in child.orelse:
                    yield from walk_one(stmt, function)
                continue
            yield from walk_one(child, function)

    def walk_one(node: ast.AST, function: Function | None) -> Iterator[tuple[ImportNode, Function | None]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, function
            return
        yield from walk(node, node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function)

    yield from walk(tree, None)


def _optional_imports(tree: ast.AST) -> set[int]:
    """The imports tried under ``except ImportError`` (or ModuleNotFoundError): an optional
    dependency, which the handler names."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(handler.type, ast.Name) and handler.type.id in ("ImportError", "ModuleNotFoundError")
            for handler in node.handlers
        ):
            optional.update(id(stmt) for stmt in node.body if isinstance(stmt, (ast.Import, ast.ImportFrom)))
    return optional


def _says_why(lines: list[str], node: ImportNode, function: Function | None, optional: set[int]) -> bool:
    if function is None or id(node) in optional:
        return True
    above = lines[function.lineno - 1 : node.lineno - 1]
    return "#" in lines[node.lineno - 1] or any(line.strip().startswith("#") for line in above)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The import statements of one module that run, with the app's modules each reaches (none for
    an import of another package)."""
    is_package = path.name == "__init__.py"
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, str(path))
    optional = _optional_imports(tree)
    found = []
    for node, function in _import_nodes(tree):
        in_function, says_why = function is not None, _says_why(lines, node, function, optional)
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names if alias.name in modules]
        else:
            if node.level:
                # The package a relative import starts from: the module's own package, then up.
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in modules:
                found.append(Import(name, (), node.lineno, in_function, says_why))
                continue
            enclosing = name == source or name.startswith(source + ".")
            submodules = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules]
            names_of_package = len(submodules) < len(node.names)
            if names_of_package or not enclosing:
                targets.append(source)
            targets.extend(submodules)
        targets = [t for t in targets if t != name]
        found.append(Import(name, tuple(dict.fromkeys(targets)), node.lineno, in_function, says_why))
    return found


def import_graph(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[Import]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    everything: list[Import] = []
    for name, path in modules.items():
        for imp in imports_of(name, path, modules):
            graph[name].update(imp.targets)
            everything.append(imp)
    return graph, everything


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module (or a module importing itself), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        # Iterative, so a deep graph cannot hit the recursion limit.
        nonlocal counter
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(components)


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest cycle through the first module of a component, for the failure message."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    return component


def describe_cycles(
    graph: dict[str, set[str]], imports: list[Import], modules: dict[str, Path], package: str = PACKAGE
) -> str:
    """Each cycle with the import statements that make its edges (file:line, top or function)."""
    where: dict[tuple[str, str], list[Import]] = {}
    for imp in imports:
        for target in imp.targets:
            where.setdefault((imp.module, target), []).append(imp)
    lines = []
    for component in strongly_connected(graph):
        cycle = shortest_cycle(graph, component)
        lines.append(f"cycle: {' -> '.join(m.removeprefix(package + '.') for m in cycle)}")
        if len(component) > len(cycle) - 1:
            members = ", ".join(m.removeprefix(package + ".") for m in component)
            lines.append(f"  (within {len(component)} modules entangled: {members})")
        for a, b in itertools.pairwise(cycle):
            for imp in where[(a, b)]:
                path = modules[a].relative_to(modules[package].parent.parent)
                kind = "in a function" if imp.in_function else "at the top"
                lines.append(f"  {path}:{imp.line} imports {b.removeprefix(package + '.')} ({kind})")
    return "\n".join(lines)


def test_the_checker_finds_a_cycle_made_of_a_top_level_and_a_function_level_import(tmp_path):
    # A package of its own, so the checker is seen to fail whatever shape the app has today.
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import A\n",
        "a.py": "import os\nfrom pkg.sub import helper\n\nA = 1\n",
        "b.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from . import a\n",
        "sub/__init__.py": "from . import helper\n",
        "sub/helper.py": (
            "def later():\n    from ..a import A  # the test needs one\n    return A\n\n\n"
            "def bare():\n    import os\n\n\n"
            "def optional():\n    try:\n        import yaml\n    except ImportError:\n        yaml = None\n"
        ),
    }
    for name, text in files.items():
        (root / name).write_text(text)
    modules = app_modules(root, "pkg")
    graph, imports = import_graph(modules)

    assert graph["pkg"] == {"pkg.a"}
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.helper"}
    assert graph["pkg.b"] == set()  # under TYPE_CHECKING: never runs
    assert graph["pkg.sub"] == {"pkg.sub.helper"}  # a submodule of its own package: no edge back
    assert graph["pkg.sub.helper"] == {"pkg.a"}
    assert [(i.module, i.line, i.says_why) for i in imports if i.in_function] == [
        ("pkg.sub.helper", 2, True),
        ("pkg.sub.helper", 7, False),
        ("pkg.sub.helper", 12, True),
    ]
    assert strongly_connected(graph) == [["pkg.a", "pkg.sub", "pkg.sub.helper"]]
    described = describe_cycles(graph, imports, modules, "pkg")
    assert "cycle: a -> sub.helper -> a" in described
    assert "pkg/a.py:2 imports sub.helper (at the top)" in described
    assert "pkg/sub/helper.py:2 imports a (in a function)" in described


def test_no_import_cycle_between_the_apps_modules():
    modules = app_modules()
    graph, imports = import_graph(modules)
    cycles = describe_cycles(graph, imports, modules)
    assert not cycles, "Import cycles (move what both sides need into one of them):\n" + cycles


def test_few_imports_inside_functions():
    modules = app_modules()
    _, imports = import_graph(modules)
    inside = [imp for imp in imports if imp.in_function]
    listing = "\n".join(f"  {modules[imp.module].relative_to(SOURCE.parent)}:{imp.line}" for imp in inside)
    assert len(inside) <= MAX_FUNCTION_IMPORTS, f"{len(inside)} imports inside functions:\n{listing}"


def test_each_import_inside_a_function_says_why():
    # An import inside a function is the exception (an optional dependency, Django's app loading):
    # a comment on its line or above it in its function says which.
    modules = app_modules()
    _, imports = import_graph(modules)
    silent = [imp for imp in imports if not imp.says_why]
    listing = "\n".join(f"  {modules[imp.module].relative_to(SOURCE.parent)}:{imp.line}" for imp in silent)
    assert not silent, f"Imports inside functions without a comment saying why:\n{listing}"
