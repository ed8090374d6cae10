"""The documentation and packaging stay in step with the code."""

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    generated = subprocess.run(
        [sys.executable, "-m", "typer", "biasprobe_cli.main", "utils", "docs", "--name", "biasprobe"],
        capture_output=True, text=True, check=True,
    ).stdout
    written = (ROOT / "docs" / "cli.md").read_text()
    assert generated.strip() == written.strip(), (
        "docs/cli.md is stale: run `python -m typer biasprobe_cli.main utils docs --name biasprobe --output docs/cli.md`"
    )


def test_every_package_is_installed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "biasprobe").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_every_metric_module_has_a_method_page():
    pages = {p.stem for p in (ROOT / "docs" / "methods").glob("*.md")}
    for analysis in ("jacobian", "locality", "generalization"):
        assert analysis in pages
