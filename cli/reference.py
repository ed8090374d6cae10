"""docs/cli.md, the command reference, generated from the commands' own help.

``python -m biasprobe_cli.reference docs/cli.md`` rewrites it; tests/test_docs.py checks it is fresh.
Typer's Markdown escapes quotes as HTML entities (``&#x27;``); Markdown needs none, so they are
turned back into characters."""

from __future__ import annotations

import html
import sys
from pathlib import Path


def render() -> str:
    """The Markdown reference of every ``biasprobe`` command."""
    import click
    import typer.main
    from biasprobe_cli.main import app
    from typer.cli import get_docs_for_click

    command = typer.main.get_command(app)
    context = click.Context(command, info_name="biasprobe", obj={})
    return html.unescape(get_docs_for_click(obj=command, ctx=context, name="biasprobe")).strip() + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m biasprobe_cli.reference docs/cli.md")
    Path(sys.argv[1]).write_text(render())
