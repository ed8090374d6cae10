"""Entry point: the Typer application and the one-line error handling around it."""

from __future__ import annotations

import sys

import typer
from biasprobe_cli import checkpoints, demo, generalization, jacobian, locality, report, sweep
from biasprobe_cli import train as training
from biasprobe_cli.options import FLAGS

from biasprobe.errors import BiasprobeError

app = typer.Typer(
    name="biasprobe",
    help="Measure why diffusion denoisers generalize: Jacobian eigenbases (GAHB), attention locality, "
    "memorization. Every analysis writes a zarr store; figures are drawn from stores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("info")(checkpoints.info)
app.command("new")(checkpoints.new)
app.command("jacobian")(jacobian.jacobian)
app.command("locality")(locality.locality)
app.command("train")(training.train)
app.command("gap")(generalization.gap)
app.command("sample")(generalization.sample)
app.command("compare")(generalization.compare)
app.command("demo")(demo.demo)
app.add_typer(sweep.app, name="sweep")
app.add_typer(report.app, name="report")


def main() -> None:
    """Run the app; problems a user can fix become one line on stderr and exit status 1."""
    try:
        app(standalone_mode=True)
    except BiasprobeError as err:
        typer.secho(f"Error: {err.render(FLAGS)}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("Interrupted; nothing was left half-written.", err=True)
        sys.exit(130)
