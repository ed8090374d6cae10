"""The import graph of biasprobe/ and cli/ has no cycle, between modules nor between the library's
top-level parts (``biasprobe.formats``, ``biasprobe.checkpoints``, ...). Every import counts: at module
level, inside functions and under ``TYPE_CHECKING`` alike, read from the source with ``ast``."""

from tests.import_graph import cycles, graph


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
