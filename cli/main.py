"""Entry point: the Typer application and the one-line handling of errors, warnings and Ctrl-C.

The command modules import torch, scipy and xarray inside their functions, so ``biasprobe --help``
and ``biasprobe --version`` start in well under a second."""

from __future__ import annotations

import sys
import traceback
import warnings
from typing import Annotated

import typer
from biasprobe_cli import checkpoints, demo, generalization, jacobian, locality, report, sweep
from biasprobe_cli import train as training
from biasprobe_cli.help import CONTEXT, MARKUP, CommandGroup
from biasprobe_cli.options import FLAGS

from biasprobe import __version__
from biasprobe.errors import BiasprobeError

INTERRUPTED = "Interrupted; nothing was left half-written."


class Interrupted(Exception):
    """Ctrl-C inside a command (Typer would turn KeyboardInterrupt into a silent exit 130)."""


class Commands(CommandGroup):
    """The command group, with Ctrl-C passed on as :class:`Interrupted`."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted from None


app = typer.Typer(
    name="biasprobe",
    cls=Commands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=MARKUP,
    context_settings=CONTEXT,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"biasprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error (for bug reports).")] = False,
) -> None:
    """Measure why diffusion denoisers generalize: Jacobian eigenbases (GAHB), attention locality,
    memorization. Every analysis writes a zarr store; figures are drawn from stores."""


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


def _warn_in_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (an eigensolver short of its tolerance, ...) as one ``Warning:`` line, naming
    flags where the library's warning names parameters."""
    from biasprobe.errors import BiasprobeWarning
    from biasprobe.progress import note

    note(f"Warning: {message.render(FLAGS) if isinstance(message, BiasprobeWarning) else message}")


def _debugging(argv: list[str]) -> bool:
    """Whether ``--debug`` came before the command (where the application's callback takes it)."""
    commands = {command.name for command in app.registered_commands}
    position = next((i for i, arg in enumerate(argv) if arg in commands), len(argv))
    return "--debug" in argv[:position]


def main() -> None:
    """Run the app; problems a user can fix become one line on stderr and exit status 1, a bug one line
    and exit status 2 (``biasprobe --debug ...`` adds the traceback)."""
    debug = _debugging(sys.argv[1:])
    shown = warnings.showwarning
    warnings.showwarning = _warn_in_one_line
    try:
        app(standalone_mode=True)
    except (Interrupted, KeyboardInterrupt):
        typer.secho(INTERRUPTED, err=True)
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
    finally:
        warnings.showwarning = shown
