"""lafs.core is pure: it imports no twisted or foolscap, does no I/O and loads no shared library."""

import ast
import pathlib

import pytest

import lafs.core

CORE_DIR = pathlib.Path(lafs.core.__file__).parent
FORBIDDEN_MODULES = {"twisted", "foolscap", "socket", "subprocess", "os", "io", "shutil", "pathlib", "tempfile", "urllib", "http", "asyncio", "threading", "time", "random", "secrets", "ctypes", "cffi"}
FORBIDDEN_CALLS = {"open", "print", "input"}
CORE_MODULES = sorted(CORE_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_is_pure(path: pathlib.Path) -> None:
    """No I/O modules, no clocks or randomness (they are passed in), no dlopen, no open()/print()."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {node.func.id}()"
            continue
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top not in FORBIDDEN_MODULES, f"{path.name}:{node.lineno} imports {name}"
            if top == "lafs":
                assert name.startswith("lafs.core"), f"{path.name}:{node.lineno} imports {name} from outside lafs.core"


def test_there_are_core_modules() -> None:
    assert len(CORE_MODULES) >= 4
