"""The import graph of the packages is one-way: each package imports only the packages below it (base is
the leaf; tokenizer and vocoder import nothing of ours but base), and no module imports itself round a
cycle, lazily inside a function or not. Imports under ``if TYPE_CHECKING:`` (annotations only) are not
counted."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "packages"
ALLOWED = {
    "base": set(),
    "tokenizer": {"base"},
    "vocoder": {"base"},
    "drsr": {"base", "tokenizer"},
    "training": {"base", "tokenizer", "drsr", "vocoder"},
    "chat": {"base", "tokenizer", "drsr", "vocoder", "training"},
}


def modules() -> dict[str, Path]:
    """Every module of the project by dotted name (a package by its ``__init__``)."""
    found = {}
    for package in ALLOWED:
        src = ROOT / package / "src"
        for path in src.rglob("*.py"):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
        for path in src.rglob("*.so"):  # compiled extensions are leaves (``from .. import _C``)
            parts = list(path.relative_to(src).parts)
            parts[-1] = parts[-1].split(".")[0]
            found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` imports anywhere (functions included)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                targets.add(sub if sub in known else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {t for t in targets if t.startswith("funaudiochat.")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        if path.suffix == ".so":
            edges[name] = set()
            continue
        resolved = set()
        for target in imports_of(name, path, known):
            while target not in known and "." in target:  # funaudiochat.x.y.Name -> the module that has it
                target = target.rpartition(".")[0]
            if target in known and target != name:
                resolved.add(target)
        edges[name] = resolved
    return edges


def package_of(module: str) -> str:
    return module.split(".")[1]


def test_packages_import_only_the_packages_below_them(graph):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if package_of(target) != package_of(module) and package_of(target) not in ALLOWED[package_of(module)]
    )
    assert not wrong, "imports against the package layering: " + "; ".join(wrong)


def test_no_module_imports_itself_round_a_cycle(graph):
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
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
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_lazy_cycle(tmp_path):
    """A cycle made by an import inside a function, like generation <-> modeling had, is found."""
    a = tmp_path / "a.py"
    a.write_text("from .b import B\n")
    b = tmp_path / "b.py"
    b.write_text("def f():\n    from .a import A\n    return A\n")
    known = {"funaudiochat.x.a": a, "funaudiochat.x.b": b}
    assert imports_of("funaudiochat.x.b", b, known) == {"funaudiochat.x.a"}
    assert imports_of("funaudiochat.x.a", a, known) == {"funaudiochat.x.b"}
