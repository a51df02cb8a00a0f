"""The package's shape, read from its source with `ast`: imports go one way (no cycle, not even through an import
inside a function), a name imported from another module is public, modules stay readable in length, and the
frameworks of the edges stay at the edges (argparse in tacoglow/cli/, the web server's in tacoglow/serve/)."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tacoglow"
ROOT = PACKAGE.parent

MAX_LINES = 700  # any module: 300-700 lines per file reads well
MAX_EDGE_LINES = 299  # the command line (tacoglow/cli/) and the server (tacoglow/serve/) only translate requests
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "tacoglow.cli"
    path: Path
    line: int
    target: str  # the module imported, resolved to a file of the package where it is one
    names: tuple[str, ...]  # the names of ``from target import a, b``; () for ``import target``

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} ({self.module})"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <dots><name> import ...`` written in ``module``."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if _is_package(module) else base[:-1]  # a package's own __init__ is its level-1 base
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path) -> list[Import]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):  # function bodies included
        if isinstance(node, ast.Import):
            found += [Import(module, path, node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = tuple(alias.name for alias in node.names)
            # ``from . import audio``: the submodule is what gets imported.
            submodules = [f"{target}.{name}" for name in names if f"{target}.{name}" in MODULES]
            found += [Import(module, path, node.lineno, sub, ()) for sub in submodules]
            if len(submodules) < len(names):
                found.append(Import(module, path, node.lineno, target,
                                    tuple(n for n in names if f"{target}.{n}" not in MODULES)))
    return sorted(found, key=lambda imp: imp.line)


IMPORTS = {module: _imports(module, path) for module, path in MODULES.items()}


def _import_graph() -> dict[str, dict[str, Import]]:
    """module -> {module it imports: the first such import}, within the package."""
    graph: dict[str, dict[str, Import]] = {module: {} for module in MODULES}
    for module, imports in IMPORTS.items():
        for imp in imports:
            if imp.target in MODULES and imp.target != module:
                graph[module].setdefault(imp.target, imp)
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """The import cycles a depth-first walk meets, each as its import statements."""
    cycles: list[list[Import]] = []
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    path: list[Import] = []

    def visit(module: str) -> None:
        state[module] = "open"
        for target, imp in graph[module].items():
            if state.get(target) == "open":  # back to a module whose import is still running
                start = next(k for k, step in enumerate(path) if step.module == target)
                cycles.append(path[start:] + [imp])
            elif target not in state:
                path.append(imp)
                visit(target)
                path.pop()
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module)
    return cycles


def _fail_on(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(f"{what} ({len(problems)}):\n  " + "\n  ".join(problems), pytrace=False)


def test_the_layout_is_read_whole():
    assert "tacoglow.cli" in MODULES and "tacoglow.text.symbols" in MODULES
    graph = _import_graph()
    assert "tacoglow.text.cleaners" in graph["tacoglow.text.lexicon"]  # a relative import, resolved
    assert "tacoglow.hub" in graph["tacoglow.cli.voice"]  # imported inside a function only
    assert "tacoglow.audio" in graph["tacoglow"]  # ``from . import audio``
    # The cycle finder itself, on a made-up graph: a -> b -> c -> a, and d -> a outside the cycle.
    imp = lambda a, b: Import(a, PACKAGE / "x.py", 1, b, ())
    toy = {"a": {"b": imp("a", "b")}, "b": {"c": imp("b", "c")}, "c": {"a": imp("c", "a")}, "d": {"a": imp("d", "a")}}
    assert [[i.module for i in cycle] for cycle in _cycles(toy)] == [["a", "b", "c"]]


def test_no_import_cycle():
    problems = [" -> ".join(f"{imp.where} imports {imp.target}" for imp in cycle) for cycle in _cycles(_import_graph())]
    _fail_on(problems, "import cycles")


def test_names_imported_from_another_module_are_public():
    problems = [f"{imp.where}: imports {name} from {imp.target}"
                for imports in IMPORTS.values() for imp in imports
                if imp.target.startswith("tacoglow") and imp.target != imp.module
                for name in imp.names if name.startswith("_") and not name.startswith("__")]
    problems += [f"{imp.where}: imports the private module {imp.target}"
                 for imports in IMPORTS.values() for imp in imports
                 if imp.target.startswith("tacoglow") and any(part.startswith("_") and not part.startswith("__")
                                                              for part in imp.target.split("."))]
    _fail_on(problems, "private names imported from another module")


def _longer_than(limit: int, modules: list[str]) -> list[str]:
    problems = []
    for module in modules:
        path = MODULES[module]
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            problems.append(f"{path.relative_to(ROOT)}:{limit + 1} ({module}): {lines} lines, more than {limit}")
    return problems


def test_modules_stay_readable_in_length():
    problems = _longer_than(MAX_LINES, list(MODULES))
    _fail_on(problems, "modules too long")


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_command_line_and_server_stay_thin():
    edges = [m for m in MODULES if _inside(m, "tacoglow.cli") or _inside(m, "tacoglow.serve")]
    problems = _longer_than(MAX_EDGE_LINES, edges)
    _fail_on(problems, "command-line or server modules too long")


@pytest.mark.parametrize("framework", ["argparse", *WEB_FRAMEWORKS])
def test_frameworks_stay_at_the_edges(framework):
    def allowed(module: str) -> bool:
        if framework == "argparse":
            return _inside(module, "tacoglow.cli")
        return _inside(module, "tacoglow.serve")

    problems = [f"{imp.where}: imports {imp.target}"
                for module, imports in IMPORTS.items() if not allowed(module) for imp in imports
                if imp.target == framework or imp.target.startswith(framework + ".")]
    where = "tacoglow/cli/" if framework == "argparse" else "tacoglow/serve/"
    _fail_on(problems, f"{framework} imported outside {where}")
