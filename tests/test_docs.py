"""The documentation and packaging stay in step with the code."""

import subprocess
import sys
from pathlib import Path

import tomllib

from tests.import_graph import parts_table, with_table

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current_and_free_of_html_entities():
    generated = subprocess.run(
        [sys.executable, "-m", "biasprobe_cli.reference", "/dev/stdout"], capture_output=True, text=True, check=True,
    ).stdout
    written = (ROOT / "docs" / "cli.md").read_text()
    assert generated == written, "docs/cli.md is stale: run `python -m biasprobe_cli.reference docs/cli.md`"
    assert "&#" not in written and "&quot;" not in written and "the model's image size" in written


def test_architecture_parts_table_is_the_code_s_imports():
    written = (ROOT / "docs" / "architecture.md").read_text()
    assert with_table(written) == written, (
        "docs/architecture.md's parts table is stale: run `python -m tests.import_graph docs/architecture.md`")
    assert "| `analyses/` |" in parts_table() and "| `cli/` |" in parts_table()


def test_every_package_is_installed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "biasprobe").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_every_metric_module_has_a_method_page():
    pages = {p.stem for p in (ROOT / "docs" / "methods").glob("*.md")}
    for analysis in ("jacobian", "locality", "generalization"):
        assert analysis in pages


def test_every_example_that_needs_fashion_mnist_names_its_apt_package():
    for page in ("README.md", "docs/guide.md"):
        blocks = (ROOT / page).read_text().split("```")[1::2]  # the fenced code blocks
        for block in blocks:
            if "--data fashion-mnist" in block or "biasprobe gap " in block:
                assert "dataset-fashion-mnist" in block, f"{page}: name the apt package beside\n{block}"


def test_the_zoo_manifest_fields_are_documented():
    """docs/reports.md's table of the manifest lists every field of the one schema (biasprobe.sweeps.manifest)."""
    from dataclasses import fields

    from biasprobe.sweeps.manifest import ManifestEntry

    text = (ROOT / "docs" / "reports.md").read_text()
    table = text[text.index("### The zoo manifest"):text.index("How far each model is trained is read")]
    documented = {line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")}
    assert documented == {spec.name for spec in fields(ManifestEntry) if spec.name != "written"}
