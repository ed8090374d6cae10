"""How ``--help`` reads: click's plain layout, the flags in one column and their help wrapped beside it
in about 46 of 80 columns (no type placeholders such as ``<bool>`` after a flag), and every command of
a group listed with its whole first paragraph, wrapped rather than cut with ``...``."""

from __future__ import annotations

import inspect

from typer.core import TyperGroup

MARKUP = None
"""The ``rich_markup_mode`` of every Typer application: plain click help (rich's option table left a
20-character column for the help at 80 columns)."""


CONTEXT = {"max_content_width": 1_000}
"""The ``context_settings`` of every Typer application: help wraps at the terminal's width (click stops at
80 columns by default)."""


class CommandGroup(TyperGroup):
    """A command group whose ``--help`` lists each command with its whole first paragraph."""

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.short_help or " ".join(inspect.cleandoc(command.help or "").split("\n\n")[0].split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
