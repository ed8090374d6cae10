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
    full: Annotated[
        bool, typer.Option(help="The long version: more images and noise levels, every Jacobian dense (tens of "
                           "minutes on 2 cores).")
    ] = False,
    per_split: Annotated[
        int | None, typer.Option(help="Test images per gap measurement (default 20, 100 with --full).")
    ] = None,
    k: OldK = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="torch CPU threads; default: the cores other jobs leave idle (cores less the "
                                 "whole cores the load average says are busy, at least 1).")
    ] = None,
) -> None:
    """Run every analysis on the shipped checkpoint zoo: gap, Jacobian GAHB verdicts, locality, two-model test.

    Needs nothing beyond the repository (no downloads, no data packages). The quick version (the default)
    takes about three minutes on an idle 2-core CPU (README and docs/benchmarks.md give the measured
    times); --full runs the long one; --device cuda uses a GPU. The Jacobian verdicts are those of
    `biasprobe jacobian` (memorization diagnostics from each checkpoint's training set, three σ). One
    line follows the whole demo with the time left, each of the four stages reports which checkpoint
    it is on, every file written gets a line, and the page says what was run and how long it took.
    """
    from biasprobe.demo import FULL, QUICK, idle_cores, run_demo
    from biasprobe.validation import count, output_folder

    output_folder(out, "out")
    plan = FULL if full else QUICK
    per_split = deprecated_flag("--k", "--per-split", k, per_split, None)
    k = plan.gap_images if per_split is None else count(per_split, "per_split")

    threads = idle_cores() if threads is None else count(threads, "threads")
    index = run_demo(out, plan=plan, k=k, device=str(resolve_device(device)), threads=threads)
    Report().say(f"done: open {index}; the figures and stores are beside it")
