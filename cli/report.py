"""``biasprobe report``: render stores into figures and an index page, or run a named recipe (``paper``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup


class StoresByDefault(TyperGroup):
    """``biasprobe report A.zarr B.zarr`` is short for ``biasprobe report stores A.zarr B.zarr``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["stores", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=StoresByDefault,
    no_args_is_help=True,
    help="Render stores into figures (PNG and PDF) and an index page (Markdown and HTML): "
    "`biasprobe report STORE... [--out DIR]`, or a named recipe: `biasprobe report paper`.",
)


def echo_file(path: Path) -> None:
    """The summary line of one written file."""
    typer.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")


@app.command("stores")
def stores(
    paths: Annotated[list[Path], typer.Argument(help="Stores (.zarr) written by biasprobe analyses.")],
    out: Annotated[
        Path, typer.Option(help="Report folder: new, empty, or one an earlier report wrote (its other files stay).")
    ] = Path("report"),
    title: Annotated[str, typer.Option(help="Title of the index page.")] = "biasprobe report",
) -> None:
    """Render each store's figures by its analysis (gap, jacobian, locality, memorization, compare) and an
    index page with the figures inline and each store's provenance (checkpoint, sha256, version, command).

    `biasprobe report A.zarr B.zarr` is the same as `biasprobe report stores A.zarr B.zarr`; name a store
    `./paper` if it is called paper. Nothing is computed: figures come from the stores alone.
    """
    import biasprobe as bp

    result = bp.report(paths, out, title=title, progress=True, on_file=echo_file)
    figures = sum(1 for path in result.files if path.suffix == ".png")
    typer.echo(f"report of {len(paths)} store(s), {figures} figure(s): open {result.html}")
