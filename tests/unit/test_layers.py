"""The layers of docs/architecture.md: imports point only down, and no module imports one that imports it back.

Every import in src/lafs counts: at module level and inside functions, ``from
x import y`` (relative ones resolved, ``y`` taken as the module ``x.y`` when
there is one), and imports by name through ``importlib.import_module`` or
``__import__``.  Only imports under ``if TYPE_CHECKING:`` are exempt, since
they never run.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import attrs
import pytest

import lafs

SRC_DIR = pathlib.Path(lafs.__file__).parent
ROOT = "lafs"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),  # pure: imports nothing of lafs (tests/unit/test_core_purity.py)
    # Infrastructure: each may import core and the ones listed before it.
    ("internals",),  # every use of Twisted/pyOpenSSL/foolscap private internals; first, so all may use it
    ("workers",),  # the reactor and thread pool that library code is handed
    ("isal",),  # loads ISA-L for core.codec, which is handed it (core loads no library)
    ("interfaces",),
    ("tub",),
    ("https",),  # TLS for HTTP storage: certificate SPKI pins, and the Tub port shared by Foolscap and HTTPS
    ("config",),
    ("nodedir",),  # raises config's ConfigError for a directory that is no node's
    # The services, low to high.
    ("storage",),
    ("introducer",),
    ("storage_client",),
    ("immutable", "mutable"),
    ("dirnode",),
    ("client",),
    ("web", "frontends"),
    ("node",),
    ("node_runner",),
    ("cli",),
    ("__main__",),
)
"""Packages and top-level modules of lafs, lowest first; a unit of a group imports only lower groups (and itself)."""

RANK = {unit: rank for rank, group in enumerate(LAYERS) for unit in group}

NEVER_IMPORTED_BY: dict[str, frozenset[str]] = {
    # storage/ knows nothing of files or caps beyond storage indexes.
    "storage": frozenset({"lafs.storage_client", "lafs.immutable", "lafs.mutable", "lafs.dirnode", "lafs.client", "lafs.web"}),
    # The file layers never touch a socket: they use the storage-client interface.
    "immutable": frozenset({"lafs.client", "lafs.web", "lafs.tub", "foolscap", "socket"}),
    "mutable": frozenset({"lafs.client", "lafs.web", "lafs.tub", "foolscap", "socket"}),
    "dirnode": frozenset({"lafs.client", "lafs.web", "lafs.tub", "foolscap", "socket"}),
}
"""Imports a unit must not make even where the ranks would allow them (module names or their prefixes)."""

CLI_NODE_MODULE = "lafs.cli.node_commands"
"""The one cli module that runs nodes; the others are plain HTTP clients or offline tools."""
CLI_MAY_IMPORT = ("lafs", "lafs.cli", "lafs.core")
"""All that the other cli modules import of lafs."""
CLI_ALSO_MAY_IMPORT = {"lafs.cli.main": ("lafs.isal",)}
"""Exceptions to CLI_MAY_IMPORT: ``--version`` says which library computes parity."""

DYNAMIC_IMPORTERS = {"import_module", "__import__"}


@attrs.frozen
class Import:
    importer: str
    imported: str
    """A module name, as far as it resolves: ``lafs.core.caps``, ``twisted.internet``, ``socket``."""
    path: pathlib.Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(SRC_DIR.parent.parent)}:{self.line}"


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULE_PATHS = {module_name(path): path for path in sorted(SRC_DIR.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULE_PATHS.get(name, pathlib.Path()).name == "__init__.py"


def unit_of(name: str) -> str | None:
    """The package or top-level module of lafs that ``name`` belongs to (None for ``lafs`` itself)."""
    parts = name.split(".")
    return parts[1] if parts[0] == ROOT and len(parts) > 1 else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node``, except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


class UncheckableImport(Exception):
    pass


def _string_values(node: ast.expr, names: dict[str, list[str]]) -> list[str]:
    """The strings ``node`` can evaluate to, from literals and names bound to literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [value for element in node.elts for value in _string_values(element, names)]
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [a + b for a in _string_values(node.left, names) for b in _string_values(node.right, names)]
    if isinstance(node, ast.JoinedStr):
        results = [""]
        for part in node.values:
            if not isinstance(part, ast.FormattedValue) or part.conversion != -1 or part.format_spec:
                values = _string_values(part, names) if isinstance(part, ast.Constant) else []
            else:
                values = _string_values(part.value, names)
            if not values:
                raise UncheckableImport
            results = [a + b for a in results for b in values]
        return results
    raise UncheckableImport


def _string_bindings(tree: ast.Module) -> dict[str, list[str]]:
    """Names bound to string literals (or tuples of them), and loop variables over those."""
    names: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.For | ast.comprehension):
            targets, value = [node.target], node.iter
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                try:
                    names.setdefault(target.id, []).extend(_string_values(value, names))
                except UncheckableImport:
                    pass
    return names


def _resolve_from(module: str, level: int, importer: str, path: pathlib.Path) -> str:
    if not level:
        return module
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{module}" if module else package


def imports_of(path: pathlib.Path) -> Iterator[Import]:
    importer = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    bindings = _string_bindings(tree)
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node.module or "", node.level, importer, path)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(importer, submodule if submodule in MODULE_PATHS else base, path, node.lineno)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called not in DYNAMIC_IMPORTERS:
                continue
            try:
                names = _string_values(node.args[0], bindings)
            except UncheckableImport:
                names = []
            if not names:
                raise AssertionError(
                    f"{path.relative_to(SRC_DIR.parent.parent)}:{node.lineno}: {called}() of a name this test cannot work out; "
                    "import by a literal (or a tuple of literals) so the layering can be checked"
                )
            for name in names:
                yield Import(importer, name, path, node.lineno)


ALL_IMPORTS = [found for path in MODULE_PATHS.values() for found in imports_of(path)]
LAFS_IMPORTS = [found for found in ALL_IMPORTS if found.imported.split(".")[0] == ROOT]


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_every_unit_of_lafs_has_a_rank() -> None:
    """A new package or top-level module must be placed in LAYERS (and in the architecture doc's picture)."""
    units = {unit_of(name) for name in MODULE_PATHS} - {None}
    assert units - set(RANK) == set(), f"modules without a layer: {sorted(units - set(RANK))}"
    assert set(RANK) - units <= {"frontends"}, f"layers of no module: {sorted(set(RANK) - units)}"


def test_imports_name_real_modules() -> None:
    """Every ``lafs`` name imported is a module of src/lafs, so the checks below see the real graph."""
    unknown = [f"{found.where}: {found.imported}" for found in LAFS_IMPORTS if found.imported not in MODULE_PATHS]
    assert not unknown, "imports of no module under src/lafs:\n" + "\n".join(unknown)


def test_imports_point_down() -> None:
    """A module imports only its own package and lower layers (LAYERS)."""
    wrong = []
    for found in LAFS_IMPORTS:
        source, target = unit_of(found.importer), unit_of(found.imported)
        if target is None or source == target:
            continue
        if source is None:
            wrong.append(f"{found.where}: lafs/__init__.py imports {found.imported}: it must stay import-free")
        elif RANK[target] >= RANK[source]:
            wrong.append(f"{found.where}: {found.importer} ({source}) imports {found.imported} ({target}), which is not below it")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


@pytest.mark.parametrize("unit", sorted(NEVER_IMPORTED_BY))
def test_forbidden_imports(unit: str) -> None:
    """storage/ knows no files or caps; immutable/, mutable/, dirnode/ never reach the client, web, tub or a socket."""
    wrong = [
        f"{found.where}: {found.importer} imports {found.imported}"
        for found in ALL_IMPORTS
        if unit_of(found.importer) == unit and any(_matches(found.imported, name) for name in NEVER_IMPORTED_BY[unit])
    ]
    assert not wrong, f"{unit} must not import {sorted(NEVER_IMPORTED_BY[unit])}:\n" + "\n".join(wrong)


def test_cli_runs_nodes_only_from_the_node_commands() -> None:
    """File commands are HTTP clients of a running node; only the node commands reach node/node_runner/nodedir."""
    wrong = [
        f"{found.where}: {found.importer} imports {found.imported}"
        for found in LAFS_IMPORTS
        if unit_of(found.importer) == "cli"
        and found.importer != CLI_NODE_MODULE
        and not any(
            found.imported == allowed or (allowed != ROOT and _matches(found.imported, allowed))
            for allowed in CLI_MAY_IMPORT + CLI_ALSO_MAY_IMPORT.get(found.importer, ())
        )
    ]
    assert not wrong, f"cli modules other than {CLI_NODE_MODULE} import only {CLI_MAY_IMPORT}:\n" + "\n".join(wrong)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle_within(component: list[str], edges: dict[tuple[str, str], Import]) -> list[Import]:
    """One cycle through the component's first module, as the imports that make it."""
    members = set(component)
    start = component[0]
    parents: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for (source, target), found in sorted(edges.items()):
                if source != node or target not in members:
                    continue
                if target == start:
                    path = [found]
                    while path[0].importer != start:
                        path.insert(0, parents[path[0].importer])
                    return path
                if target not in parents:
                    parents[target] = found
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle found in {component}")


def test_no_import_cycles() -> None:
    """No module imports one that (directly or through others) imports it back."""
    graph: dict[str, set[str]] = {name: set() for name in MODULE_PATHS}
    edges: dict[tuple[str, str], Import] = {}
    for found in LAFS_IMPORTS:
        if found.imported in graph and found.imported != found.importer:
            # A package's own __init__ is not a dependency of its modules: Python has run it already.
            if is_package(found.imported) and _matches(found.importer, found.imported):
                continue
            graph[found.importer].add(found.imported)
            edges.setdefault((found.importer, found.imported), found)
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    report = []
    for component in cycles:
        steps = _cycle_within(component, edges)
        report.append(
            f"{len(component)} modules import each other ({', '.join(component)}), e.g.:\n"
            + "\n".join(f"    {step.where}: {step.importer} imports {step.imported}" for step in steps)
        )
    assert not cycles, "import cycles:\n" + "\n".join(report)


def test_the_checks_see_imports_inside_functions_and_by_name() -> None:
    """The test itself: it finds the function-level and by-name imports it is meant to find."""
    pairs = {(found.importer, found.imported) for found in LAFS_IMPORTS}
    assert ("lafs.cli.main", "lafs.cli.file_commands") in pairs  # importlib.import_module over COMMAND_MODULES
    assert ("lafs.node", "lafs.web.server") in pairs  # inside Node.__init__
