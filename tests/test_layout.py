"""The layout: imports flow one way, the library reaches the application's workers in one place,
and every public name and documented module path imports."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

import jobqueue

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jobqueue", "workers")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _known(name: str) -> str | None:
    """The module of ours that ``name`` is or lies in, or None when it is not ours."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(statement: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(statement, ast.Import):
        names = [alias.name for alias in statement.names]
    elif statement.level == 0 and statement.module:
        # ``from package import module`` imports the module; ``from module import name``, the module
        names = [
            f"{statement.module}.{alias.name}" if f"{statement.module}.{alias.name}" in MODULES else statement.module
            for alias in statement.names
        ]
    else:
        names = []
    return {known for name in names if (known := _known(name))}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _module_level_imports(path: Path) -> set[str]:
    """What a module imports when it is imported: its top-level statements, ``if TYPE_CHECKING:``
    blocks and function bodies left out."""
    found: set[str] = set()
    pending = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= _imported(node)
        elif isinstance(node, ast.If | ast.Try) and not _is_type_checking(node):
            pending += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
            if isinstance(node, ast.Try):
                pending += [stmt for handler in node.handlers for stmt in handler.body]
    return found


def _all_imports(path: Path) -> set[str]:
    """Everything a module imports anywhere, in functions included."""
    return {
        name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in _imported(node)
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph``, as the modules along it (the first one repeated at the end)."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            if found := visit(imported, [*path, module]):
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        if found := visit(module, []):
            return found
    return None


def test_module_level_imports_form_no_cycle():
    graph = {module: _module_level_imports(path) - {module} for module, path in MODULES.items()}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_library_imports_the_applications_workers_only_lazily_and_in_one_place():
    library = {module: path for module, path in MODULES.items() if module.split(".")[0] == "jobqueue"}
    at_import = sorted(
        m for m, path in library.items() if any(n.startswith("workers") for n in _module_level_imports(path))
    )
    assert at_import == []
    anywhere = sorted(m for m, path in library.items() if any(n.startswith("workers") for n in _all_imports(path)))
    assert anywhere == ["jobqueue._application"]


def test_every_public_name_imports():
    namespace: dict[str, object] = {}
    for name in jobqueue.__all__:
        exec(f"from jobqueue import {name}", namespace)  # the statement users write
        assert namespace[name] is getattr(jobqueue, name)


# Dotted paths of ours the docs tell readers to import, run or render.
DOC_FORMS = (
    re.compile(r"^\s*from\s+((?:jobqueue|workers)(?:\.\w+)*)\s+import\s+(\([\w\s,]+\)|[\w ,]+)", re.M),
    re.compile(r"^\s*import\s+((?:jobqueue|workers)(?:\.\w+)*)", re.M),
    re.compile(r"python\s+-m\s+((?:jobqueue|workers|bench)(?:\.\w+)*)"),
    re.compile(r"^:::\s+((?:jobqueue|workers)(?:\.\w+)*)", re.M),
    re.compile(r"\barq\s+((?:workers)(?:\.\w+)+)"),
)


def _documented() -> set[str]:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = set()
    for path in texts:
        text = path.read_text()
        for form in DOC_FORMS:
            for match in form.finditer(text):
                found.add(match.group(1))
                if form.groups == 2:  # from X import a, b: X.a and X.b
                    names = [n.strip() for n in match.group(2).strip("()").replace("\n", " ").split(",")]
                    found |= {f"{match.group(1)}.{n.split()[0]}" for n in names if n and n.split()[0] != "*"}
    return found


DOCUMENTED = sorted(_documented())
RUNNABLE = sorted(
    {m for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")] for m in DOC_FORMS[2].findall(path.read_text())}
)


def _resolve(dotted: str) -> object:
    """Import the longest prefix of ``dotted`` that is a module, then get the rest as attributes."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            obj: object = importlib.import_module(name)
            for attribute in parts[end:]:
                obj = getattr(obj, attribute)
            return obj
    raise ModuleNotFoundError(dotted)


# Paths the docs named before the layout of issue 19, kept importable for the code that uses them.
KEPT = [
    "jobqueue.connection.get_redis",
    "jobqueue.connection.client_for_url",
    "jobqueue.queues.get_queue",
    "workers.store.Store",
    "workers.store.SqlStore",
    "workers.store.store_from_settings",
    "workers.notifier.Notifier",
    "workers.notifier.verify_signature",
    "workers.llm.OpenAIProvider",
    "workers.llm.record_usage",
]


@pytest.mark.parametrize("dotted", KEPT)
def test_paths_the_docs_used_to_name_still_import(dotted):
    assert _resolve(dotted) is not None


def test_the_docs_name_module_paths():
    assert {"jobqueue.worker.Worker", "jobqueue.dashboard.create_app", "jobqueue.cli", "bench"} <= set(DOCUMENTED)


@pytest.mark.parametrize("dotted", DOCUMENTED)
def test_every_documented_module_path_imports(dotted):
    assert _resolve(dotted) is not None


@pytest.mark.parametrize("module", RUNNABLE)
def test_every_documented_python_dash_m_runs_a_module(module):
    spec = importlib.util.find_spec(module)
    assert spec is not None
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None
