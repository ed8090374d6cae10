"""``biasprobe demo``: the main job on the shipped checkpoints and images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from biasprobe_cli.options import OldK, deprecated_flag, resolve_device
from biasprobe_cli.output import Report

DEFAULT_FOLDER = Path("biasprobe-demo")


def demo(
    out: Annotated[
        Path,
        typer.Option(help="Folder for the stores, figures and index.md/.html: new, empty, or one an earlier demo "
                     "or report wrote."),
    ] = DEFAULT_FOLDER,
    per_split: Annotated[int, typer.Option(help="Test images per gap measurement.")] = 100,
    k: OldK = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Run every analysis on the shipped checkpoint zoo: gap, Jacobian GAHB metrics, locality, two-model test.

    Needs nothing beyond the repository (no downloads, no data packages). CPU-heavy: about an hour on a
    busy 2-core CPU (README gives the measured times); --device cuda on a GPU. Each of the four stages
    reports which checkpoint it is on, every file written gets a line, and the page records the wall time.
    """
    from biasprobe.demo import run_demo
    from biasprobe.validation import count, output_folder

    output_folder(out, "out")
    k = count(deprecated_flag("--k", "--per-split", k, per_split, 100), "per_split")

    index = run_demo(out, k=k, device=str(resolve_device(device)))
    Report().say(f"done: open {index}; the figures and stores are beside it")
