"""Entry point: the Typer application and the one-line error handling around it."""

from __future__ import annotations

import sys
import traceback

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


@app.callback()
def options(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error (for bug reports)."),
) -> None:
    """Measure why diffusion denoisers generalize."""


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


def _debugging(argv: list[str]) -> bool:
    """Whether ``--debug`` came before the command (where the application's callback takes it)."""
    commands = {command.name for command in app.registered_commands}
    position = next((i for i, arg in enumerate(argv) if arg in commands), len(argv))
    return "--debug" in argv[:position]


def main() -> None:
    """Run the app; problems a user can fix become one line on stderr and exit status 1, a bug one line
    and exit status 2 (``biasprobe --debug ...`` adds the traceback)."""
    debug = _debugging(sys.argv[1:])
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        typer.secho("Interrupted; nothing was left half-written.", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - every error ends as one line; the traceback on request
        if debug:
            traceback.print_exc()
        if isinstance(err, BiasprobeError):
            message, code = err.render(FLAGS), 1
        elif isinstance(err, (OSError, MemoryError)):  # the system refused: disk full, permissions, memory
            message, code = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__, 1
        else:
            reason = str(err).splitlines()[0] if str(err) else ""
            message = (f"internal error ({type(err).__name__}: {reason}); this is a bug in biasprobe: rerun with "
                       "`biasprobe --debug ...` and report the traceback")
            code = 2
        typer.secho(f"Error: {message}", fg=typer.colors.RED, err=True)
        sys.exit(code)
