"""The import graph of biasprobe/ and cli/ has no cycle, between modules nor between the library's
top-level parts (``biasprobe.formats``, ``biasprobe.checkpoints``, ...). Every import counts: at module
level, inside functions and under ``TYPE_CHECKING`` alike, read from the source with ``ast``."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"biasprobe": ROOT / "biasprobe", "biasprobe_cli": ROOT / "cli"}


def modules() -> dict[str, Path]:
    """Every module by its dotted name (a package by its own name, for its ``__init__.py``)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            submodules = {f"{module}.{alias.name}" for alias in node.names} & set(known)
            targets.update(submodules)  # ``from biasprobe import atomic`` imports biasprobe.atomic
            if len(submodules) < len(node.names):
                targets.add(module)
    return {target for target in targets if target in known and target != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_module_imports_itself_through_others():
    assert cycles(graph()) == []


def test_the_library_parts_import_one_way():
    """Modules folded into their part (``biasprobe.analyses.jacobian`` -> ``biasprobe.analyses``): an import
    from a lower part back up to a higher one closes a cycle here (formats -> checkpoints -> formats did)."""

    def part(name: str) -> str:
        return ".".join(name.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for name, targets in graph().items():
        folded.setdefault(part(name), set()).update(part(t) for t in targets if part(t) != part(name))
    folded.pop("biasprobe", None)  # the package's lazy __init__ names its public parts, it imports none
    assert cycles(folded) == []


def test_the_graph_is_read():
    """The reader sees function-local and package-relative imports (a test that could not fail would pass here)."""
    found = graph()
    assert "biasprobe.analyses.base" in found["biasprobe.analyses.jacobian"]
    assert "biasprobe.training.samplers" in found["biasprobe.analyses.memorization"]  # inside a function
    assert "biasprobe.analyses.span" in found["biasprobe.analyses.jacobian"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
