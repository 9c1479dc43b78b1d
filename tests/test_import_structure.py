"""The packages' import structure: no import cycles, and vfl/chain/nodes/vflchain depend in one direction.

Static analysis with `ast`: every `import` in a module counts, function-level (deferred)
imports included, because a deferred import only hides a cycle; imports under
`if TYPE_CHECKING:` do not (they never run). `from pkg import name` is an edge to the
submodule `pkg.name` when that is a module, else to `pkg` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vfl", "chain", "nodes", "vflchain")
# nodes -> vfl, nodes -> chain, vflchain -> any of them (the Python API); nothing else
FORBIDDEN = {"vfl": ("chain", "nodes", "vflchain"), "chain": ("vfl", "nodes", "vflchain"), "nodes": ("vflchain",)}


def module_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _statements(body: list[ast.stmt]) -> list[ast.AST]:
    """Every node under `body`, skipping `if TYPE_CHECKING:` blocks."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                targets.add(sub if sub in modules else mod)
    out: set[str] = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_through_others() -> None:
    graph = import_graph()
    found = cycles(graph)
    detail = "; ".join(" <-> ".join(c) for c in found)
    assert not found, f"import cycles: {detail}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_depend_in_one_direction(package: str) -> None:
    graph = import_graph()
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.split(".")[0] == package
                 for t in targets if t.split(".")[0] in FORBIDDEN[package])
    assert not bad, f"{package} must import neither {' nor '.join(FORBIDDEN[package])}: {', '.join(bad)}"


def test_the_checker_sees_deferred_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    modules = {"x": tmp_path / "__init__.py", "x.m": tmp_path / "m.py", "x.n": tmp_path / "n.py",
               "x.o": tmp_path / "o.py"}
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from x import n\n\nif TYPE_CHECKING:\n    import x.o\n", encoding="utf-8")
    assert imported("x.m", src, modules) == {"x.n"}
