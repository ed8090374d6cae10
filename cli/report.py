"""``biasprobe report``: render stores into figures and an index page, or run a named recipe (``paper``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from biasprobe_cli.help import CONTEXT, MARKUP, CommandGroup
from biasprobe_cli.options import OldK


class StoresByDefault(CommandGroup):
    """``biasprobe report A.zarr B.zarr`` is short for ``biasprobe report stores A.zarr B.zarr``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["stores", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    rich_markup_mode=MARKUP,
    context_settings=CONTEXT,
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
    paths: Annotated[list[Path], typer.Argument(help="Stores (NAME.zarr folders or NAME.zarr.zip files) written by biasprobe analyses.")],
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


@app.command("paper")
def paper(
    zoo: Annotated[list[Path] | None, typer.Option(help="Zoo folder with manifest.json (see docs/reports.md); give "
                                                 "it again for several, in order of precedence: each family comes "
                                                 "from the first that has it. Default: data/zoo; data/zoo/v2 then "
                                                 "data/zoo under --science 3.")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder; its stores/ subfolder caches the analyses (the "
                                             "repository's reports/paper/stores is read too, never written). "
                                             "Default: reports/paper; reports/paper-v3 under --science 3, so that "
                                             "the committed v2 page and its stores stay.")] = None,
    recompute: Annotated[bool, typer.Option(help="Recompute every store from the checkpoints (GPU advised).")] = False,
    per_split: Annotated[int | None, typer.Option(help="Images per split for the gap (default 50, 300 under "
                                                  "--science 3; the paper's K is 300; part of the stores' cache "
                                                  "key).")] = None,
    k: OldK = None,
    only: Annotated[str | None, typer.Option(help="Render only these items, e.g. fig2,fig6 (keys: fig1, fig2, "
                                                  "fig3, fig4, fig6, table2, table3, twins, memorizers), into a "
                                                  "page of their own: a folder holding other items is "
                                                  "refused.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (for stores that must be computed).")] = "auto",
    models: Annotated[str | None, typer.Option(help="Find or compute only these zoo models' stores (comma-separated "
                                               "names) into OUT/stores and write no page: a zoo's stores in parts, "
                                               "e.g. on a GPU machine holding some of the weights. Copy the files "
                                               "into the page folder's stores/ afterwards; the page takes them as "
                                               "its own.")] = None,
    science: Annotated[int, typer.Option(min=2, max=3, help="2: the committed page (v2 measurement and rules); 3: "
                                         "science v3 (docs/methods/claims.md): the paper's gap (K = 300), D's Jacobian "
                                         "for every family, GAHB surveys over images, σ and draws, and the v3 rules "
                                         "beside the v2 outcomes (its stores want a GPU: --device cuda).")] = 2,
) -> None:
    """An et al.'s Figs. 1, 2, 3, 4, 6, 7, 8 and Tables 2, 3, Kadkhodaie et al.'s two-model figure, and the memorizer
    checks of the N = 10 models, from a zoo.

    Finds the zoo's model for every cell each figure needs, reuses the cached store of each analysis (same
    checkpoint sha256 and parameters) or computes it, and draws from the stores. The cache is the report
    folder's stores/ and, read-only, the stores committed in reports/paper/stores, whatever `--out` is; the
    first line says how many stores are cached and how many will be computed. What the zoo lacks is
    listed by name on the page; nothing is drawn without its models. The page opens with how far each model
    is trained (steps, loss change over the last 20 %, plateau or not). `--zoo data/checkpoints` runs it on
    the small shipped zoo.
    """
    from dataclasses import replace

    from biasprobe_cli.options import deprecated_flag, resolve_device

    from biasprobe.reports.paper import Settings, paper_items, paper_report, paper_stores
    from biasprobe.reports.paper.settings import V3

    per_split = deprecated_flag("--k", "--per-split", k, per_split, None)
    settings = V3 if science == 3 else Settings()
    zoo = zoo or ([Path("data/zoo/v2"), Path("data/zoo")] if science == 3 else [Path("data/zoo")])
    out = out if out is not None else Path("reports/paper-v3" if science == 3 else "reports/paper")
    settings = settings if per_split is None else replace(settings, k=per_split)
    items = paper_items(only.split(",") if only else None, version=settings.version)
    if models is not None:
        names = [name.strip() for name in models.split(",") if name.strip()]
        paths = paper_stores(zoo, out, names, recompute=recompute, device=str(resolve_device(device)),
                             settings=settings, items=items, progress=True, on_file=echo_file)
        typer.echo(f"paper stores: {len(paths)} of {', '.join(names)} in {Path(out) / 'stores'} (no page written; "
                   "stores found in the read-only cache are not copied there)")
        return
    result = paper_report(zoo, out, recompute=recompute, device=str(resolve_device(device)), settings=settings,
                          items=items, progress=True, on_file=echo_file)
    typer.echo(f"paper report: open {result.html}")
