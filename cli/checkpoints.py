"""``biasprobe info`` and ``biasprobe new``: inspect and create checkpoints."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Annotated

import typer
from biasprobe_cli.options import (
    Arch,
    OldOutput,
    checkpoint_option,
    checkpoint_to_write,
    parse_arch,
    parse_windows,
)
from biasprobe_cli.output import Json, Report

FAMILY_NAMES = "unet-bf, unet-ddpm, dit"
"""The names of ``biasprobe.models.FAMILIES``, written out so that --help need not load torch
(tests/cli/test_command_line.py keeps them in step)."""


def info(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file (or folder) to describe.")],
    arch: Arch = None,
    as_json: Json = False,
) -> None:
    """Describe a checkpoint: family, size, conventions, schedule, attention windows, format, sha256."""
    import biasprobe as bp
    from biasprobe.denoiser import file_sha256
    from biasprobe.formats import detect_format

    denoiser = bp.load(checkpoint, arch=parse_arch(arch))
    summary = denoiser.describe()
    schedule = summary.get("schedule")
    windows = summary.get("attention_windows") or []
    space = summary.get("space", "pixel")
    rows = {
        "file": str(checkpoint),
        "format": detect_format(checkpoint),
        "sha256": file_sha256(checkpoint),
        "family": summary.get("family", "?"),
        "parameters": f"{summary['parameters']:,}",
        "image shape (C, H, W)": str(tuple(summary["image_shape"])),
        "parameterization": summary["parameterization"],
        "space": space,
        # latents are taken as they are: only pixel models have a native range
        **({"native range": {"unit": "[0, 1]", "signed": "[-1, 1]"}[summary["native_range"]]} if space == "pixel" else {}),
        "conditioning": summary["conditioning"],
        "schedule": (f"{schedule['kind']}, {schedule['steps']} steps" if schedule else "none (blind)"),
        "attention layers": str(len(windows)),
        "windows per layer": ", ".join("global" if w is None else f"{w}×{w}" for w in windows) or "-",
        "config": json.dumps(summary.get("config", {})),
    }
    training = summary.get("training") or {}
    for key, value in training.items():
        rows[f"training.{key}"] = str(value)
    done, planned = training.get("steps_done"), training.get("steps")
    if isinstance(done, int) and isinstance(planned, int) and 0 <= done < planned:
        rows["trained"] = (f"UNFINISHED: {done:,} of its {planned:,} planned steps ({done / planned:.0%}); its results "
                           "describe a model still in training")
    elif isinstance(done, int) and isinstance(planned, int):
        rows["trained"] = f"finished: all {planned:,} planned steps"
    if as_json:
        report = Report(as_json=True)
        report.set(**{key: rows[key] for key in ("file", "format", "sha256")}, description=summary,
                   **({"unfinished": rows["trained"].startswith("UNFINISHED")} if "trained" in rows else {}))
        report.finish()
        return
    width = max(map(len, rows))
    for key, value in rows.items():  # long values wrap under themselves at 80 columns; one word (a hash) stays whole
        typer.echo(textwrap.fill(value, 80, initial_indent=f"{key:<{width}}  ", subsequent_indent=" " * (width + 2),
                                 break_long_words=False, break_on_hyphens=False))


def new(
    family: Annotated[str, typer.Argument(help=f"Model family: {FAMILY_NAMES}.")],
    checkpoint: checkpoint_option("Where to write the checkpoint (.pt, .pth or .safetensors).") = None,
    preset: Annotated[
        str | None, typer.Option(help="Size preset: xs, s, small or tiny for dit; default or tiny for unet-ddpm; default, small or tiny for unet-bf.")
    ] = None,
    windows: Annotated[
        str | None,
        typer.Option(help="DiT only: k×k attention windows of the first layers, e.g. 3,5,7,9,11,13; later layers stay global."),
    ] = None,
    qk_norm: Annotated[
        bool, typer.Option(help="DiT only: RMS-normalise each head's queries and keys (learned gains), as zoo v2's DiTs.")
    ] = False,
    image_size: Annotated[int, typer.Option(help="Image height and width in pixels.")] = 32,
    channels: Annotated[
        int | None, typer.Option(help="Image channels (1 grey, 3 colour); default 1 for unet-bf, 3 otherwise.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file at --checkpoint.")] = False,
    output: OldOutput = None,
) -> None:
    """Write a freshly initialised checkpoint: an untrained network is a real control for every analysis."""
    import torch

    from biasprobe.checkpoints import SUFFIXES, Checkpoint, save_checkpoint
    from biasprobe.models import from_preset
    from biasprobe.validation import output_file

    output = checkpoint_to_write(checkpoint, output)
    output_file(output, "checkpoint", suffixes=SUFFIXES, overwrite=overwrite)
    torch.manual_seed(seed)
    network, image_shape = from_preset(family, preset, image_size=image_size, channels=channels,
                                       windows=parse_windows(windows), qk_norm=qk_norm)
    training = {"steps": 0, "seed": seed, "preset": preset, "note": "untrained (biasprobe new)"}
    checkpoint = Checkpoint.from_network(network, image_shape, training)
    save_checkpoint(checkpoint, output, overwrite=overwrite)
    parameters = sum(p.numel() for p in network.parameters())
    Report().wrote(output, f"untrained {family}, preset {preset or 'the first'}, {parameters:,} parameters")
